package queuetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/canalhq/canal/internal/queue"
	"gorm.io/gorm"
)

func uniqueItem(id, key string, states ...queue.State) queue.NewItem {
	it := item(id, "")
	it.UniqueKey, it.UniqueStates = key, states
	return it
}

// insertErr inserts items in one transaction of their own and returns its error.
func insertErr(d queue.Driver, db *gorm.DB, items ...queue.NewItem) error {
	return db.Transaction(func(tx *gorm.DB) error {
		_, err := queue.Insert(context.Background(), d, tx, q, t0, items...)
		return err
	})
}

// wantDuplicate checks that err is ErrDuplicate naming holder.
func wantDuplicate(t *testing.T, err error, holder string) {
	t.Helper()
	var dup *queue.DuplicateError
	if !errors.Is(err, queue.ErrDuplicate) || !errors.As(err, &dup) || dup.PublicID != holder || dup.ID == 0 {
		t.Fatalf("got %v, want ErrDuplicate naming %s", err, holder)
	}
}

func wantMissing(t *testing.T, d queue.Driver, id string) {
	t.Helper()
	if _, err := d.Get(context.Background(), q, id); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("item %s: %v, want ErrNotFound", id, err)
	}
}

// A unique key is held while its item waits or runs, and free once the
// item is done (the default states), or held while done too when asked.
func testUniqueKey(t *testing.T, d queue.Driver, db *gorm.DB) {
	insert(t, d, db, uniqueItem("a", "u"))
	a := get(t, d, "a")
	if a.UniqueKey != "u" || !slices.Equal(a.UniqueStates, queue.UniqueOpen()) {
		t.Fatalf("stored unique key %q states %v", a.UniqueKey, a.UniqueStates)
	}
	wantDuplicate(t, insertErr(d, db, uniqueItem("b", "u")), "a")
	wantMissing(t, d, "b")
	// Another queue, another key space; another key, no conflict.
	if err := db.Transaction(func(tx *gorm.DB) error {
		_, err := queue.Insert(context.Background(), d, tx, "other", t0, uniqueItem("b", "u"))
		return err
	}); err != nil {
		t.Fatalf("same key in another queue: %v", err)
	}
	insert(t, d, db, uniqueItem("c", "v"))

	running := claim(t, d, "p", 10) // a and c run: still held
	wantDuplicate(t, insertErr(d, db, uniqueItem("b2", "u")), "a")
	for _, it := range running {
		complete(t, d, it, queue.StateDone, false)
	}
	insert(t, d, db, uniqueItem("b3", "u")) // a is done: the key is free again

	// Unique across done items too.
	withDone := append(queue.UniqueOpen(), queue.StateDone)
	insert(t, d, db, uniqueItem("d", "w", withDone...))
	got := claim(t, d, "p", 10)
	for _, it := range got {
		complete(t, d, it, queue.StateDone, false)
	}
	wantDuplicate(t, insertErr(d, db, uniqueItem("e", "w", withDone...)), "d")
	// Default states of a later item do not cover the done holder's row,
	// but the holder's own states do: the key stays taken.
	wantDuplicate(t, insertErr(d, db, uniqueItem("f", "w")), "d")

	for _, bad := range []queue.NewItem{
		uniqueItem("g", "x", queue.StatePending), // must include every open state
		uniqueItem("g", "x", append(queue.UniqueOpen(), "nope")...),
		uniqueItem("g", "", queue.UniqueOpen()...), // states without a key
	} {
		if err := insertErr(d, db, bad); !errors.Is(err, queue.ErrInvalidItem) {
			t.Fatalf("unique states %v key %q: %v, want ErrInvalidItem", bad.UniqueStates, bad.UniqueKey, err)
		}
	}
}

// A duplicate inside the caller's transaction leaves that transaction
// usable (no aborted transaction on PostgreSQL): the caller's other
// writes commit.
func testUniqueInCallerTx(t *testing.T, d queue.Driver, db *gorm.DB) {
	ctx := context.Background()
	err := db.Transaction(func(tx *gorm.DB) error {
		if _, err := queue.Insert(ctx, d, tx, q, t0, uniqueItem("a", "u")); err != nil {
			return err
		}
		_, err := queue.Insert(ctx, d, tx, q, t0, uniqueItem("b", "u"))
		wantDuplicate(t, err, "a")
		_, err = queue.Insert(ctx, d, tx, q, t0, item("c", ""))
		return err
	})
	if err != nil {
		t.Fatalf("transaction: %v", err)
	}
	get(t, d, "a")
	get(t, d, "c")
	wantMissing(t, d, "b")
	// A rolled-back holder holds nothing.
	boom := errors.New("rolled back")
	_ = db.Transaction(func(tx *gorm.DB) error {
		if _, err := queue.Insert(ctx, d, tx, q, t0, uniqueItem("r", "rk")); err != nil {
			t.Fatalf("insert: %v", err)
		}
		return boom
	})
	insert(t, d, db, uniqueItem("r2", "rk"))
}

// Of many concurrent inserters of one key, exactly one writes an item; the
// others are told which.
func testUniqueConcurrent(t *testing.T, d queue.Driver, db *gorm.DB) {
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = insertErr(d, db, uniqueItem(fmt.Sprintf("i%d", i), "same")) })
	}
	wg.Wait()
	var winner string
	for i, err := range errs {
		if err == nil {
			if winner != "" {
				t.Fatalf("two items took the key: %s and i%d", winner, i)
			}
			winner = fmt.Sprintf("i%d", i)
		}
	}
	if winner == "" {
		t.Fatalf("no inserter won: %v", errs)
	}
	for _, err := range errs {
		if err != nil {
			wantDuplicate(t, err, winner)
		}
	}
}

// A retry by hand that would put a second item into a key's unique states
// is refused; RetryDead leaves such an item dead and retries the rest.
func testUniqueRetry(t *testing.T, d queue.Driver, db *gorm.DB) {
	ctx := context.Background()
	insert(t, d, db, uniqueItem("a", "u"), uniqueItem("x", "free"))
	for _, it := range claim(t, d, "p", 10) {
		complete(t, d, it, queue.StateDead, false) // dead is not a default unique state
	}
	insert(t, d, db, uniqueItem("b", "u"))
	_, err := d.Retry(ctx, q, "a", us(3e9))
	wantDuplicate(t, err, "b")
	n, err := d.RetryDead(ctx, q, "", us(3e9))
	if err != nil || n != 1 {
		t.Fatalf("retry dead: %d, %v; want 1 (x)", n, err)
	}
	if a := get(t, d, "a"); a.State != queue.StateDead {
		t.Fatalf("a is %s, want dead", a.State)
	}
	if x := get(t, d, "x"); x.State != queue.StatePending {
		t.Fatalf("x is %s, want pending", x.State)
	}
	// Once b is done, a may run again.
	for _, it := range claim(t, d, "p", 10) {
		complete(t, d, it, queue.StateDone, false)
	}
	if it, err := d.Retry(ctx, q, "a", us(3e9)); err != nil || it.State != queue.StatePending {
		t.Fatalf("retry a: %+v, %v", it.State, err)
	}
}
