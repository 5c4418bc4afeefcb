package postgres

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/queuesql"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// The claim's cost must not depend on table statistics or on the backlog:
// on a table of mostly finished rows that was never analysed (the planner
// then guesses), its plan walks the partial claim index in order under a
// LIMIT; no scan of every pending row, no sort of them.
func TestClaimPlanIgnoresStatisticsAndBacklog(t *testing.T) {
	d, db := migratedWith(t,
		`ALTER TABLE canal_queue_items SET (autovacuum_enabled = false)`,
		// 200 000 finished rows, then a backlog of 20 000 pending ones.
		`INSERT INTO canal_queue_items (public_id, queue, kind, payload, state, created_us, updated_us, finished_us)
		 SELECT 'd' || g, 'outbox', 't', '{}', 'done', g, g, g FROM generate_series(1, 200000) g`,
		`INSERT INTO canal_queue_items (public_id, queue, kind, priority, payload, state, created_us, updated_us)
		 SELECT 'p' || g, 'outbox', 't', g % 4, '{}', 'pending', g, g FROM generate_series(1, 20000) g`,
	)
	var analysed int
	db.Raw(`SELECT count(*) FROM pg_stats WHERE tablename = 'canal_queue_items' AND schemaname = current_schema()`).Scan(&analysed)
	if analysed != 0 {
		t.Fatal("the table has statistics: this test is about a table without them")
	}
	for _, priorities := range []int{1, 4} {
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			plan := explain(t, d, priorities, mode)
			if !strings.Contains(plan, "Index Scan using canal_queue_items_claim") {
				t.Errorf("%d priorities, %s: the claim does not walk the claim index:\n%s", priorities, mode, plan)
			}
			for _, bad := range []string{"Seq Scan on canal_queue_items", "Bitmap Heap Scan", "Bitmap Index Scan"} {
				if strings.Contains(plan, bad) {
					t.Errorf("%d priorities, %s: plan has %q:\n%s", priorities, mode, bad, plan)
				}
			}
			// Every walk of the index is bounded by a LIMIT right above it
			// (through the row lock), so no sort ever sees the backlog.
			lines := strings.Split(plan, "\n")
			for i, l := range lines {
				if !strings.Contains(l, "Index Scan using canal_queue_items_claim") {
					continue
				}
				if i < 2 || !strings.Contains(lines[i-1], "LockRows") || !strings.Contains(lines[i-2], "Limit") {
					t.Errorf("%d priorities, %s: index walk not under LockRows and Limit:\n%s", priorities, mode, plan)
				}
			}
		}
	}
}

func explain(t *testing.T, d *Driver, priorities int, mode string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := d.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SET plan_cache_mode = `+mode); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, `RESET plan_cache_mode`)
	q := d.claimSQL(priorities)
	if _, err := conn.ExecContext(ctx, `PREPARE claim_plan AS `+q); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, `DEALLOCATE claim_plan`)
	args := `'outbox', 'p', 10, 5, 100`
	if priorities > 1 {
		args += `, '{8,4,2,1}'`
	}
	rows, err := conn.QueryContext(ctx, `EXPLAIN EXECUTE claim_plan(`+args+`)`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

// sqlLog keeps every statement gorm runs, with its arguments in place.
type sqlLog struct {
	logger.Interface
	mu   sync.Mutex
	sqls []string
}

func (l *sqlLog) Trace(_ context.Context, _ time.Time, fc func() (string, int64), _ error) {
	s, _ := fc()
	l.mu.Lock()
	l.sqls = append(l.sqls, s)
	l.mu.Unlock()
}

// The dashboard's lists and counts stay on indexes after running items
// left the state and kind indexes: on a big table that was never analysed
// no statement the reader runs scans the table.
func TestListsAndCountsUseIndexes(t *testing.T) {
	ctx := context.Background()
	_, db := migratedWith(t,
		`ALTER TABLE canal_queue_items SET (autovacuum_enabled = false)`,
		`INSERT INTO canal_queue_items (public_id, queue, kind, payload, state, created_us, updated_us, finished_us)
		 SELECT 'd' || g, 'outbox', CASE WHEN g % 100 = 0 THEN 'rare' ELSE 't' END, '{}', 'done', g, g, g FROM generate_series(1, 200000) g`,
		`INSERT INTO canal_queue_items (public_id, queue, kind, payload, state, created_us, updated_us)
		 SELECT 'p' || g, 'outbox', 't', '{}', 'pending', g, g FROM generate_series(1, 20000) g`,
		`INSERT INTO canal_queue_items (public_id, queue, kind, payload, state, owner, lease_until_us, created_us, updated_us)
		 SELECT 'r' || g, 'outbox', CASE WHEN g % 2 = 0 THEN 'rare' ELSE 't' END, '{}', 'running', 'p', g, g, g FROM generate_series(1, 500) g`,
	)
	log := &sqlLog{Interface: logger.Discard}
	r := queuesql.Reader{DB: db.Session(&gorm.Session{Logger: log})}
	for _, f := range []queue.Filter{
		{Queue: "outbox", Kind: "rare"},
		{Queue: "outbox", Kind: "rare", States: []queue.State{queue.StateRunning, queue.StateDone}},
		{Queue: "outbox", Kind: "rare", States: []queue.State{queue.StateRunning}},
		{Queue: "outbox", States: []queue.State{queue.StateDone}},
		{Queue: "outbox", States: []queue.State{queue.StateDead, queue.StateDropped}},
		{Queue: "outbox", States: []queue.State{queue.StateRunning}},
	} {
		log.sqls = nil
		items, err := r.List(ctx, queue.ListQuery{Filter: f, Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(items); i++ {
			if items[i].ID >= items[i-1].ID {
				t.Fatalf("%+v: list not newest first", f)
			}
		}
		if f.Kind == "rare" && len(f.States) != 1 {
			// Both parts answer: running "rare" items are the newest.
			if len(items) != 50 || items[0].State != queue.StateRunning {
				t.Fatalf("%+v: %d items, first %s: want 50 led by running ones", f, len(items), items[0].State)
			}
		}
		if _, err := r.CountUpTo(ctx, nil, f, 1000); err != nil {
			t.Fatal(err)
		}
		for _, s := range log.sqls {
			var plan []string
			if err := db.Raw(`EXPLAIN ` + s).Scan(&plan).Error; err != nil {
				t.Fatal(err)
			}
			p := strings.Join(plan, "\n")
			// Walking the public-id index (or the table) for the queue
			// reads every item of it: a kind's rows are reached through
			// the kind index, or a state's own (the lease index when
			// running), whichever the planner finds cheaper.
			if strings.Contains(p, "Seq Scan on canal_queue_items") || strings.Contains(p, "canal_queue_items_public") {
				t.Errorf("%+v: %s\nreads more than its index:\n%s", f, s, p)
			}
		}
	}
	n, err := r.CountUpTo(ctx, nil, queue.Filter{Queue: "outbox", Kind: "rare"}, 100000)
	if err != nil || n != 2000+250 {
		t.Fatalf("count of rare: %d %v, want 2250 (2 000 done, 250 running)", n, err)
	}
}

// migratedWith is a migrated schema of the test's own, filled by stmts.
func migratedWith(t *testing.T, stmts ...string) (*Driver, *gorm.DB) {
	t.Helper()
	db := testenv.Postgres(t)
	d, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, q := range stmts {
		if err := db.Exec(q).Error; err != nil {
			t.Fatal(err)
		}
	}
	return d, db
}
