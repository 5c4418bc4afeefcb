package sqlite

import (
	"context"
	"strings"
	"testing"

	"github.com/canalhq/canal/testenv"
)

// Finding the holder of a unique key (after an insert that conflicted)
// searches the partial unique index by key, not the queue's rows.
func TestUniqueHolderUsesTheUniqueIndex(t *testing.T) {
	db := testenv.SQLite(t)
	d, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 20000)
		INSERT INTO canal_queue_items (public_id, queue, kind, payload, state, created_us, updated_us, unique_key, unique_states)
		SELECT 'u' || n, 'work', 't', '{}', CASE WHEN n % 2 = 0 THEN 'done' ELSE 'pending' END, n, n,
		  CASE WHEN n % 3 = 0 THEN 'key-' || n END, 15 FROM g`).Error; err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{holderSQL, holderOfSQL} {
		rows, err := d.db.QueryContext(ctx, `EXPLAIN QUERY PLAN `+stmt, "work", "key-3")
		if err != nil {
			t.Fatal(err)
		}
		var plan strings.Builder
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan.WriteString(detail + "\n")
		}
		rows.Close()
		if !strings.Contains(plan.String(), "canal_queue_items_unique") {
			t.Errorf("%s\ndoes not search the unique index:\n%s", stmt, plan.String())
		}
	}
}
