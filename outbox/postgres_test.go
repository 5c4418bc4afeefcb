package outbox

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// On PostgreSQL, seq is taken at insert; the advisory lock in insert makes a
// later adder of the same key wait, so seq order within a key is commit
// order. Without the lock B would insert and commit before A, with a higher
// seq than A, and the relay would dispatch A (lower seq) first.
func TestPostgresSameKeySeqFollowsCommitOrder(t *testing.T) {
	db := testenv.Postgres(t)
	ctx := context.Background()
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	key := "commit-order-" + time.Now().Format("150405.000000000")
	txA := db.Begin()
	idA, err := Add(ctx, txA, Message{Topic: "t", Key: key, Payload: "A"})
	if err != nil {
		t.Fatal(err)
	}
	type res struct {
		id  string
		err error
	}
	bDone := make(chan res, 1)
	go func() {
		var id string
		err := db.Transaction(func(tx *gorm.DB) error {
			var err error
			id, err = Add(ctx, tx, Message{Topic: "t", Key: key, Payload: "B"})
			return err
		})
		bDone <- res{id, err}
	}()
	// Wait until B either committed (no lock) or waits for the lock.
	var b *res
	testenv.Eventually(t, 10*time.Second, "B blocked or committed", func() bool {
		select {
		case r := <-bDone:
			b = &r
			return true
		default:
		}
		var waiting int64
		db.Raw(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND classid = ?::oid AND objid = hashtext(current_schema() || chr(31) || 'outbox' || chr(31) || ?)::oid AND objsubid = 2`,
			0x43414E51, key).Scan(&waiting) // the queue engine's key lock (internal/queue/postgres)
		return waiting > 0
	})
	commitA := time.Now()
	if err := txA.Commit().Error; err != nil {
		t.Fatal(err)
	}
	if b == nil {
		r := <-bDone
		b = &r
	} else {
		t.Errorf("B committed before A although A added to the key first (at %s)", commitA)
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	var seqA, seqB int64
	db.Raw(`SELECT id FROM canal_queue_items WHERE public_id = ?`, idA).Scan(&seqA)
	db.Raw(`SELECT id FROM canal_queue_items WHERE public_id = ?`, b.id).Scan(&seqB)
	if !(seqA < seqB) {
		t.Errorf("seq A=%d B=%d: commit order A, B", seqA, seqB)
	}
}

func TestStoreForRejectsOtherDialects(t *testing.T) {
	db := testenv.SQLite(t)
	db.Dialector = otherDialector{db.Dialector}
	if _, err := New(db, Config{}); !errors.Is(err, ErrDialect) {
		t.Fatalf("err = %v, want ErrDialect", err)
	}
}

type otherDialector struct{ gorm.Dialector }

func (otherDialector) Name() string { return "mysql" }
