package sqlite_test

import (
	"strings"
	"testing"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/queuesql"
)

// The outbox list's key filter searches the partial key index by key on
// SQLite too, instead of walking every row of the queue.
func TestKeyFilterUsesTheKeyIndex(t *testing.T) {
	_, db := open(t)
	for _, q := range []string{
		`WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 20000)
		 INSERT INTO canal_queue_items (public_id, queue, kind, item_key, payload, state, created_us, updated_us, finished_us)
		 SELECT 'm' || n, 'outbox', 't', CASE WHEN n % 10 = 0 THEN 'key-' || (n % 500) ELSE '' END, '{}', 'done', n, n, n FROM g`,
		`ANALYZE`,
	} {
		if err := db.Exec(q).Error; err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []queue.ListQuery{
		{Filter: queue.Filter{Queue: "outbox", Key: "key-70"}, Limit: 51},
		{Filter: queue.Filter{Queue: "outbox", Key: "key-70", Kind: "t", States: []queue.State{queue.StateDone}}, Before: 15000, Limit: 51},
	} {
		stmt, args, err := queuesql.ListSQL(q)
		if err != nil {
			t.Fatal(err)
		}
		var rows []struct{ Detail string }
		if err := db.Raw(`EXPLAIN QUERY PLAN `+stmt, args...).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		var plan []string
		for _, r := range rows {
			plan = append(plan, r.Detail)
		}
		p := strings.Join(plan, "\n")
		if !strings.Contains(p, "USING INDEX canal_queue_items_key (queue=? AND item_key=?") {
			t.Errorf("%+v: the key filter does not search the key index:\n%s", q.Filter, p)
		}
	}
}
