package sqlite

import (
	"context"
	"strings"
	"testing"

	"github.com/canalhq/canal/testenv"
)

// TestKeyedWritesSearchOnlyOpenAndHeldRows: inserting a keyed item looks up
// the key's open rows, and completing one looks up those and the key's
// next held row, through the partial indexes made for them, not through
// every row the key or the queue ever had. The planner took the key index
// (done rows included) and the state index (every held row of the queue),
// so each Add and each completion slowed as a key's history grew.
func TestKeyedWritesSearchOnlyOpenAndHeldRows(t *testing.T) {
	db := testenv.SQLite(t)
	d, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	// One busy key with a long history and a backlog, as a soak leaves it.
	if err := db.Exec(`WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 5000)
		INSERT INTO canal_queue_items (public_id, queue, kind, item_key, payload, state, created_us, updated_us)
		SELECT 'm' || n, 'outbox', 't', 'customer:1', '{}', CASE WHEN n % 2 = 0 THEN 'done' ELSE 'held' END, n, n FROM g`).Error; err != nil {
		t.Fatal(err)
	}
	// An insert's "is the key open?" first: only the key's open rows.
	var insert []struct{ Detail string }
	if err := db.Raw(`EXPLAIN QUERY PLAN SELECT `+openKey, "outbox", "customer:1").Scan(&insert).Error; err != nil {
		t.Fatalf("plan: %v", err)
	}
	var insertPlan []string
	openKeyed := false
	for _, r := range insert {
		insertPlan = append(insertPlan, r.Detail)
		openKeyed = openKeyed || strings.HasPrefix(r.Detail, "SEARCH o ") && strings.Contains(r.Detail, "canal_queue_items_open_key (queue=? AND item_key=?")
	}
	if !openKeyed {
		t.Errorf("an insert does not search the key's open rows (canal_queue_items_open_key) by key:\n%s", strings.Join(insertPlan, "\n"))
	}

	var rows []struct{ Detail string }
	if err := db.Raw(`EXPLAIN QUERY PLAN `+promoteSQL, `[{"q":"outbox","k":"customer:1"}]`, 1).Scan(&rows).Error; err != nil {
		t.Fatalf("plan: %v", err)
	}
	var plan []string
	found := map[string]bool{}
	for _, r := range rows {
		plan = append(plan, r.Detail)
		for alias, index := range map[string]string{"o": "canal_queue_items_open_key", "h": "canal_queue_items_held"} {
			if strings.HasPrefix(r.Detail, "SEARCH "+alias+" ") && strings.Contains(r.Detail, index+" (queue=? AND item_key=?") {
				found[alias] = true
			}
		}
	}
	if !found["o"] || !found["h"] {
		t.Errorf("promote does not search the key's open rows (canal_queue_items_open_key) and its head (canal_queue_items_held) by key:\n%s", strings.Join(plan, "\n"))
	}
}
