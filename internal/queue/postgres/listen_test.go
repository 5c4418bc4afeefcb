package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/postgres"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// A commit in one connection wakes a listener on another at once, naming
// the queue; a rolled-back insert wakes nobody.
func TestListenWakesOnCommit(t *testing.T) {
	db := testenv.Postgres(t)
	d, err := postgres.New(db)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	woke := make(chan string, 10)
	listening := make(chan error, 1)
	go func() { listening <- d.Listen(ctx, func(q string) { woke <- q }) }()
	time.Sleep(300 * time.Millisecond) // LISTEN is in place
	insert := func(commit bool) {
		_ = db.Transaction(func(tx *gorm.DB) error {
			if _, err := queue.Insert(ctx, d, tx, "outbox", time.Now(), queue.NewItem{PublicID: time.Now().String(), Kind: "k"}); err != nil {
				t.Fatal(err)
			}
			if !commit {
				return context.Canceled
			}
			return nil
		})
	}
	insert(false)
	select {
	case q := <-woke:
		t.Fatalf("woken (%s) by a rolled-back insert", q)
	case <-time.After(200 * time.Millisecond):
	}
	insert(true)
	select {
	case q := <-woke:
		if q != "outbox" {
			t.Fatalf("woken for %q", q)
		}
	case err := <-listening:
		t.Fatalf("Listen returned: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up after a commit")
	}
	cancel()
	select {
	case <-listening:
	case <-time.After(5 * time.Second):
		t.Fatal("Listen did not return after its context ended")
	}
}
