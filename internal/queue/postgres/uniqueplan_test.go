package postgres

import (
	"context"
	"strings"
	"testing"
)

// Finding the holder of a unique key (after an insert that conflicted)
// searches the partial unique index by key, not the queue's rows.
func TestUniqueHolderUsesTheUniqueIndex(t *testing.T) {
	d, _ := migratedWith(t,
		`INSERT INTO canal_queue_items (public_id, queue, kind, payload, state, created_us, updated_us, unique_key, unique_states)
		 SELECT 'u' || g, 'work', 't', '{}', CASE WHEN g % 2 = 0 THEN 'done' ELSE 'pending' END, g, g,
		   CASE WHEN g % 3 = 0 THEN 'key-' || g END, 15
		 FROM generate_series(1, 50000) g`,
		`ANALYZE canal_queue_items`,
	)
	ctx := context.Background()
	for _, stmt := range []string{holderSQL, strings.Replace(holderOfSQL, "$2", "'u3'", 1)} {
		stmt = strings.Replace(strings.Replace(stmt, "$2", "'key-3'", 1), "$1", "'work'", 1)
		rows, err := d.db.QueryContext(ctx, `EXPLAIN `+stmt)
		if err != nil {
			t.Fatal(err)
		}
		var plan strings.Builder
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				t.Fatal(err)
			}
			plan.WriteString(l + "\n")
		}
		rows.Close()
		if !strings.Contains(plan.String(), "canal_queue_items_unique") || strings.Contains(plan.String(), "Seq Scan") {
			t.Errorf("%s\ndoes not search the unique index:\n%s", stmt, plan.String())
		}
	}
}
