package postgres

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/queuesql"
)

// The outbox list's key filter reads one key's rows through the partial key
// index, in every plan the server may pick (custom or generic), on a table
// of mostly unkeyed rows: never a scan of every row of the queue.
func TestKeyFilterUsesTheKeyIndex(t *testing.T) {
	d, _ := migratedWith(t,
		// 100 000 unkeyed rows and 10 000 keyed ones over 1 000 keys.
		`INSERT INTO canal_queue_items (public_id, queue, kind, payload, state, created_us, updated_us, finished_us)
		 SELECT 'u' || g, 'outbox', 't', '{}', 'done', g, g, g FROM generate_series(1, 100000) g`,
		`INSERT INTO canal_queue_items (public_id, queue, kind, item_key, payload, state, created_us, updated_us, finished_us)
		 SELECT 'k' || g, 'outbox', 't', 'key-' || (g % 1000), '{}', CASE WHEN g % 10 = 0 THEN 'dead' ELSE 'done' END, g, g, g
		 FROM generate_series(1, 10000) g`,
		`ANALYZE canal_queue_items`,
	)
	for _, c := range []struct {
		name string
		q    queue.ListQuery
	}{
		{"key", queue.ListQuery{Filter: queue.Filter{Queue: "outbox", Key: "key-7"}, Limit: 51}},
		{"key and status", queue.ListQuery{Filter: queue.Filter{Queue: "outbox", Key: "key-7", States: []queue.State{queue.StateDead}}, Limit: 51}},
		{"key and topic, next page", queue.ListQuery{Filter: queue.Filter{Queue: "outbox", Key: "key-7", Kind: "t"}, Before: 109000, Limit: 51}},
	} {
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			plan := explainList(t, d, c.q, mode)
			// The key index, or for open states the open-key index: an
			// index searched by key either way.
			if !keySearch.MatchString(plan) {
				t.Errorf("%s, %s: the key filter does not search an index by key:\n%s", c.name, mode, plan)
			}
			if strings.Contains(plan, "Seq Scan") {
				t.Errorf("%s, %s: the key filter scans the table:\n%s", c.name, mode, plan)
			}
		}
	}
}

// keySearch is an index scan whose condition names the key.
var keySearch = regexp.MustCompile(`Index Scan( Backward)? using canal_queue_items_(key|open_key) .*\n\s+Index Cond: .*item_key = `)

// explainList is the plan of Reader.List's statement for q, prepared on
// one connection under plan_cache_mode mode.
func explainList(t *testing.T, d *Driver, q queue.ListQuery, mode string) string {
	t.Helper()
	ctx := context.Background()
	stmt, args, err := queuesql.ListSQL(q)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var b strings.Builder
	for _, r := range stmt {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	conn, err := d.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SET plan_cache_mode = `+mode); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, `RESET plan_cache_mode`)
	if _, err := conn.ExecContext(ctx, `PREPARE list_plan AS `+b.String()); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, `DEALLOCATE list_plan`)
	vals := make([]string, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			vals[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
		default:
			vals[i] = fmt.Sprint(v)
		}
	}
	rows, err := conn.QueryContext(ctx, `EXPLAIN EXECUTE list_plan(`+strings.Join(vals, ", ")+`)`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out strings.Builder
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		out.WriteString(l + "\n")
	}
	return out.String()
}
