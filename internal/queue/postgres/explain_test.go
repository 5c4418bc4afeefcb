package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/canalhq/canal/testenv"
)

// The claim's cost must not depend on table statistics or on the backlog:
// on a table of mostly finished rows that was never analysed (the planner
// then guesses), its plan walks the partial claim index in order under a
// LIMIT; no scan of every pending row, no sort of them.
func TestClaimPlanIgnoresStatisticsAndBacklog(t *testing.T) {
	db := testenv.Postgres(t)
	d, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`ALTER TABLE canal_queue_items SET (autovacuum_enabled = false)`,
		// 200 000 finished rows, then a backlog of 20 000 pending ones.
		`INSERT INTO canal_queue_items (public_id, queue, kind, payload, state, created_us, updated_us, finished_us)
		 SELECT 'd' || g, 'outbox', 't', '{}', 'done', g, g, g FROM generate_series(1, 200000) g`,
		`INSERT INTO canal_queue_items (public_id, queue, kind, priority, payload, state, created_us, updated_us)
		 SELECT 'p' || g, 'outbox', 't', g % 4, '{}', 'pending', g, g FROM generate_series(1, 20000) g`,
	} {
		if err := db.Exec(q).Error; err != nil {
			t.Fatal(err)
		}
	}
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
	rows, err := conn.QueryContext(ctx, `EXPLAIN EXECUTE claim_plan('outbox', 'p', 10, 5, 100, '{8,4,2,1}')`)
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
