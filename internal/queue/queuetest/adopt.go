package queuetest

import (
	"context"
	"testing"

	"github.com/canalhq/canal/internal/queue"
	"gorm.io/gorm"
)

// Adopt checks that a database made by Canal before the queue engine keeps
// its outbox rows: schema is the exact DDL today's main created (a dump),
// rows are inserted as that code wrote them, then the driver migrates.
func Adopt(t *testing.T, db *gorm.DB, d queue.Driver, schema string) {
	t.Helper()
	ctx := context.Background()
	if err := db.Exec(schema).Error; err != nil {
		t.Fatalf("old schema: %v", err)
	}
	ins := `INSERT INTO canal_outbox_messages (seq, id, topic, msg_key, payload, headers, status, due_us, attempts, failures, last_error, blocks, claim_token, created_us, updated_us, dispatched_us)
VALUES (?, ?, 'orders', ?, '{"n":1}', '{"h":"v"}', ?, ?, ?, ?, ?, ?, ?, 1000, 2000, ?)`
	rows := []struct {
		seq                int64
		id, key, status    string
		due                int64
		attempts, failures int
		lastErr            string
		blocks             bool
		token              string
		dispatched         int64
	}{
		{1, "00000000-0000-7000-8000-000000000001", "K", "pending", 0, 0, 0, "", false, "", 0},
		{2, "00000000-0000-7000-8000-000000000002", "K", "pending", 0, 0, 0, "", false, "", 0},
		{3, "00000000-0000-7000-8000-000000000003", "", "dispatched", 3000, 1, 0, "", false, "", 3000},
		{4, "00000000-0000-7000-8000-000000000004", "D", "dead", 4000, 8, 8, "503", true, "", 0},
		{5, "00000000-0000-7000-8000-000000000005", "D", "pending", 0, 0, 0, "", false, "", 0},
		{6, "00000000-0000-7000-8000-000000000006", "", "inflight", 9000, 1, 0, "", false, "tok", 0},
	}
	for _, r := range rows {
		if err := db.Exec(ins, r.seq, r.id, r.key, r.status, r.due, r.attempts, r.failures, r.lastErr, r.blocks, r.token, r.dispatched).Error; err != nil {
			t.Fatalf("old row %d: %v", r.seq, err)
		}
	}
	if err := db.Exec(`INSERT INTO canal_outbox_attempts (message_id, number, started_us, duration_us, error) VALUES (?, 1, 2500, 40, '')`, rows[2].id).Error; err != nil {
		t.Fatalf("old attempt: %v", err)
	}
	if err := d.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	want := map[int64]queue.State{1: queue.StatePending, 2: queue.StateHeld, 3: queue.StateDone, 4: queue.StateDead, 5: queue.StateHeld, 6: queue.StateRescued}
	for _, r := range rows {
		it, err := d.Get(ctx, "outbox", r.id)
		if err != nil {
			t.Fatalf("message %d after migration: %v", r.seq, err)
		}
		if it.ID != r.seq || it.State != want[r.seq] || it.Kind != "orders" || it.Key != r.key || it.Attempt != r.attempts ||
			it.Failures != r.failures || it.LastError != r.lastErr || string(it.Payload) != `{"n":1}` || string(it.Meta) != `{"h":"v"}` {
			t.Errorf("message %d: %+v, want state %s", r.seq, it, want[r.seq])
		}
	}
	if it, _ := d.Get(ctx, "outbox", rows[3].id); !it.Blocks {
		t.Error("the dead message no longer blocks its key")
	}
	atts, err := d.Attempts(ctx, 3)
	if err != nil || len(atts) != 1 || atts[0].Duration.Microseconds() != 40 {
		t.Errorf("attempts of message 3: %+v %v", atts, err)
	}
	if db.Migrator().HasTable("canal_outbox_messages") || db.Migrator().HasTable("canal_outbox_attempts") {
		t.Error("old tables left behind")
	}
	// New ids continue after the adopted ones; the claim takes the heads.
	var ids []int64
	err = db.Transaction(func(tx *gorm.DB) error {
		ids, err = queue.Insert(ctx, d, tx, "outbox", t0, queue.NewItem{PublicID: "new", Kind: "orders", Key: "K"})
		return err
	})
	if err != nil || ids[0] <= 6 {
		t.Fatalf("insert after adoption: %v %v", ids, err)
	}
	got, err := d.Claim(ctx, queue.ClaimRequest{Queue: "outbox", Owner: "p", NowUS: us(0), LeaseUS: us(1e9), Limit: 10})
	if err != nil || len(got) != 1 || got[0].ID != 1 {
		t.Fatalf("claim after adoption: %v %v, want message 1 alone", publicIDs(got), err)
	}
	if st, _ := d.Get(ctx, "outbox", "new"); st.State != queue.StateHeld {
		t.Errorf("new message of key K is %s, want held behind the adopted ones", st.State)
	}
}
