package postgres_test

import (
	"context"
	_ "embed"
	"os"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/postgres"
	"github.com/canalhq/canal/internal/queue/queuetest"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

func open(t *testing.T) (queue.Driver, *gorm.DB) {
	db := testenv.Postgres(t)
	d, err := postgres.New(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return d, db
}

func TestConformance(t *testing.T) { queuetest.Run(t, open) }

func TestAdoptsTheOutboxOfOlderCanal(t *testing.T) {
	db := testenv.Postgres(t)
	d, err := postgres.New(db)
	if err != nil {
		t.Fatal(err)
	}
	schema, err := os.ReadFile("testdata/outbox_v0.sql")
	if err != nil {
		t.Fatal(err)
	}
	queuetest.Adopt(t, db, d, string(schema))
}

//go:embed testdata/work_v0.sql
var workV0 string

// A database made by Canal before the queue engine keeps its work items.
func TestAdoptWorkItems(t *testing.T) {
	db := testenv.Postgres(t)
	queuetest.AdoptWork(t, db, workV0, func() queue.Driver {
		d, err := postgres.New(db)
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

// A hand-made change that must promote keys waits while an inserter holds
// one, without holding another the inserter will want: an inserter adding
// to L then K and a RetryDead of dead items in K and L (which would lock K,
// then wait for L) must not deadlock; the change finishes once the
// inserter commits.
func TestRetryDeadWaitsForAnInserterWithoutDeadlock(t *testing.T) {
	d, db := open(t)
	ctx := context.Background()
	now := time.Now()
	for _, k := range []string{"K", "L"} {
		if _, err := queue.Insert(ctx, d, db, "q", now, queue.NewItem{PublicID: "dead-" + k, Kind: "k", Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := d.Claim(ctx, queue.ClaimRequest{Queue: "q", Owner: "p", NowUS: queue.US(now), LeaseUS: queue.US(now.Add(time.Hour)), Limit: 2})
	if err != nil || len(got) != 2 {
		t.Fatalf("claim: %v %v", got, err)
	}
	var outs []queue.Outcome
	for _, it := range got { // set aside: the keys go on
		outs = append(outs, queue.Outcome{ID: it.ID, Owner: "p", Attempt: 1, Queue: "q", Key: it.Key, State: queue.StateDead, NowUS: queue.US(now)})
	}
	if ok, err := d.Complete(ctx, outs); err != nil || !ok[0] || !ok[1] {
		t.Fatalf("dead: %v %v", ok, err)
	}
	tx := db.Begin()
	defer tx.Rollback()
	if _, err := queue.Insert(ctx, d, tx, "q", now, queue.NewItem{PublicID: "new-L", Kind: "k", Key: "L"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := d.RetryDead(ctx, "q", "", queue.US(now))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("retry finished while the inserter held a key: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := queue.Insert(ctx, d, tx, "q", now, queue.NewItem{PublicID: "new-K", Kind: "k", Key: "K"}); err != nil {
		t.Fatalf("the inserter's next key: %v", err)
	}
	if err := tx.Commit().Error; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("retry dead: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("retry dead still waiting after the inserter committed")
	}
	// Each retried item waits behind its key's open item, committed first.
	for _, k := range []string{"K", "L"} {
		if it, err := d.Get(ctx, "q", "dead-"+k); err != nil || it.State != queue.StateHeld {
			t.Errorf("retried dead-%s: %+v %v, want held behind new-%s", k, it.State, err, k)
		}
	}
}

// TestIdentifiersCompareAsBytes: the columns every hot index compares are
// in the "C" collation (migration 0009), whatever the database's own.
func TestIdentifiersCompareAsBytes(t *testing.T) {
	_, db := open(t)
	var rows []struct {
		Column    string
		Collation string
	}
	err := db.Raw(`SELECT a.attname AS "column", c.collname AS "collation"
FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
WHERE a.attrelid = 'canal_queue_items'::regclass AND a.attname IN ('queue', 'public_id', 'kind', 'item_key', 'state')
ORDER BY 1`).Scan(&rows).Error
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 5 {
		t.Fatalf("columns found: %+v, want 5", rows)
	}
	for _, r := range rows {
		if r.Collation != "C" {
			t.Errorf("%s has collation %q, want C", r.Column, r.Collation)
		}
	}
}
