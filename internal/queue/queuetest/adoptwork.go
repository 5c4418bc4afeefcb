package queuetest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/canalhq/canal/internal/queue"
	"gorm.io/gorm"
)

// AdoptWork checks the migration that adopts the work items of a Canal from
// before the queue engine: db is empty, schema is that Canal's exact
// canal_work_items DDL, and newDriver returns a driver on db, not migrated.
func AdoptWork(t *testing.T, db *gorm.DB, schema string, newDriver func() queue.Driver) {
	t.Helper()
	ctx := context.Background()
	for _, stmt := range strings.Split(schema, ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if err := db.Exec(stmt).Error; err != nil {
			t.Fatalf("old schema: %v", err)
		}
	}
	// One row per old state, as the old code wrote them (attempts counted
	// at claim; a running item's lease held by a process now gone).
	rows := []string{
		`('w-pending', 'email', 2, '{"n":1}', 'pending', 0, 5, NULL, '', 0, 100, 10, 10, 0, 0)`,
		`('w-retrying', 'email', 1, '{}', 'retrying', 2, 5, 'smtp down', '', 0, 900, 11, 20, 15, 0)`,
		`('w-running', 'report', 0, '', 'running', 1, 5, '', 'local', 99999, 100, 12, 30, 25, 0)`,
		`('w-done', 'email', 3, NULL, 'done', 1, 5, '', '', 0, 100, 13, 40, 35, 40)`,
		`('w-failed', 'email', 2, '{}', 'failed', 5, 5, 'always broken', '', 0, 100, 14, 50, 45, 50)`,
		`('w-dropped', 'email', 2, '{}', 'dropped', 0, 5, 'evicted', '', 0, 100, 15, 60, 0, 60)`,
	}
	if err := db.Exec(`INSERT INTO canal_work_items (id, kind, priority, payload, state, attempts, max_attempts,
  last_error, owner, lease_until_us, run_at_us, created_us, updated_us, started_us, finished_us) VALUES ` +
		strings.Join(rows, ", ")).Error; err != nil {
		t.Fatalf("old rows: %v", err)
	}
	d := newDriver()
	if err := d.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if err := d.Migrate(ctx); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	var n int64
	if err := db.Raw(`SELECT COUNT(*) FROM canal_queue_items WHERE queue = 'work'`).Scan(&n).Error; err != nil || n != int64(len(rows)) {
		t.Fatalf("adopted %d items (%v), want %d", n, err, len(rows))
	}
	want := []struct {
		id                 string
		state              queue.State
		attempt, failures  int
		lastError, payload string
		runAtUS            int64
		priority           int
	}{
		{"w-pending", queue.StatePending, 0, 0, "", `{"n":1}`, 100, 2},
		{"w-retrying", queue.StatePending, 2, 2, "smtp down", `{}`, 900, 1},
		{"w-running", queue.StateRescued, 1, 0, "", `null`, 0, 0},
		{"w-done", queue.StateDone, 1, 0, "", `null`, 0, 3},
		{"w-failed", queue.StateDead, 5, 5, "always broken", `{}`, 0, 2},
		{"w-dropped", queue.StateDropped, 0, 0, "evicted", `{}`, 0, 2},
	}
	var prev int64
	for _, w := range want {
		it, err := d.Get(ctx, "work", w.id)
		if err != nil {
			t.Fatalf("get %s: %v", w.id, err)
		}
		if it.State != w.state || it.Attempt != w.attempt || it.Failures != w.failures || it.LastError != w.lastError ||
			string(it.Payload) != w.payload || queue.US(it.RunAt) != w.runAtUS || it.Priority != w.priority ||
			it.Kind == "" || it.MaxAttempts != 5 || it.Owner != "" {
			t.Errorf("%s adopted as %+v", w.id, it)
		}
		if it.ID <= prev {
			t.Errorf("%s: id %d not in creation order", w.id, it.ID)
		}
		prev = it.ID
	}
	if it, _ := d.Get(ctx, "work", "w-done"); queue.US(it.FinishedAt) != 40 || queue.US(it.CreatedAt) != 13 {
		t.Errorf("done item's times: %+v", it)
	}
	// The old table is gone, and the adopted items run: the waiting ones
	// are claimable, the cut one goes as a suspect.
	if db.Migrator().HasTable("canal_work_items") {
		t.Error("canal_work_items still exists")
	}
	got, err := d.Claim(ctx, queue.ClaimRequest{Queue: "work", Owner: "p", NowUS: 1000, LeaseUS: 2000, Limit: 10, Weights: []int{8, 4, 2, 1}})
	if err != nil || len(got) != 2 {
		t.Fatalf("claim adopted: %d %v", len(got), err)
	}
	sus, err := d.ClaimRescued(ctx, queue.ClaimRequest{Queue: "work", Owner: "p", NowUS: 1000, LeaseUS: 2000, Limit: 1})
	if err != nil || len(sus) != 1 || sus[0].PublicID != "w-running" || sus[0].Attempt != 2 {
		t.Fatalf("claim rescued: %+v %v", sus, err)
	}
	if _, err := d.Get(ctx, "work", "nope"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
}
