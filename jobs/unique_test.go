package jobs_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/canalhq/canal/jobs"
	"gorm.io/gorm"
)

func wantDuplicateOf(t *testing.T, err error, holder string) {
	t.Helper()
	var dup *jobs.DuplicateError
	if !errors.Is(err, jobs.ErrDuplicate) || !errors.As(err, &dup) || dup.ID != holder {
		t.Fatalf("got %v, want ErrDuplicate naming %s", err, holder)
	}
}

// Unique work: a second item with a held key is refused (in the caller's
// transaction too, which stays usable), the stored item shows its key and
// states, and the key is free again once the holder is done, unless done
// is one of its states.
func TestUniqueWork(t *testing.T) {
	eachStore(t, func(t *testing.T, db *gorm.DB, s jobs.Store) {
		ctx := context.Background()
		p := jobs.NewProcessor(jobs.Config{Store: s, Workers: 2})
		must(t, p.RegisterKind("report", func(context.Context, jobs.WorkItem) error { return nil }, jobs.KindOptions{}))
		nw := func(key string, states ...jobs.WorkState) jobs.NewWork {
			return jobs.NewWork{Kind: "report", Payload: []byte(`{}`), Unique: &jobs.UniqueOpts{Key: key, States: states}}
		}
		a, err := p.Enqueue(ctx, nw("daily-2026-12-05"))
		must(t, err)
		if a.UniqueKey != "daily-2026-12-05" || !slices.Equal(a.UniqueStates, jobs.DefaultUniqueStates()) {
			t.Fatalf("enqueued item: key %q states %v", a.UniqueKey, a.UniqueStates)
		}
		_, err = p.Enqueue(ctx, nw("daily-2026-12-05"))
		wantDuplicateOf(t, err, a.ID)

		// In the caller's transaction: refused, and the transaction goes on.
		var other jobs.WorkItem
		err = db.Transaction(func(tx *gorm.DB) error {
			_, err := p.EnqueueTx(ctx, tx, nw("daily-2026-12-05"))
			wantDuplicateOf(t, err, a.ID)
			other, err = p.EnqueueTx(ctx, tx, jobs.NewWork{Kind: "report"})
			return err
		})
		must(t, err)
		state(t, s, other.ID)

		stored := state(t, s, a.ID)
		if stored.UniqueKey != a.UniqueKey || !slices.Equal(stored.UniqueStates, jobs.DefaultUniqueStates()) {
			t.Fatalf("stored item: key %q states %v", stored.UniqueKey, stored.UniqueStates)
		}
		withDone := append(jobs.DefaultUniqueStates(), jobs.WorkDone)
		once, err := p.Enqueue(ctx, nw("once", withDone...))
		must(t, err)

		running(t, p)
		waitState(t, s, a.ID, jobs.WorkDone)
		waitState(t, s, once.ID, jobs.WorkDone)
		if _, err := p.Enqueue(ctx, nw("daily-2026-12-05")); err != nil {
			t.Fatalf("the key of a done item is free again: %v", err)
		}
		_, err = p.Enqueue(ctx, nw("once"))
		wantDuplicateOf(t, err, once.ID)
		if got := state(t, s, once.ID).UniqueStates; !slices.Equal(got, withDone) {
			t.Fatalf("stored states %v, want %v", got, withDone)
		}
	})
}

func TestUniqueWorkRejectsBadOptions(t *testing.T) {
	p := jobs.NewProcessor(jobs.Config{Store: sqliteStore(t)})
	must(t, p.RegisterKind("report", func(context.Context, jobs.WorkItem) error { return nil }, jobs.KindOptions{}))
	long := string(make([]byte, 256))
	for _, u := range []jobs.UniqueOpts{
		{Key: ""},
		{Key: long},
		{Key: "a\x00b"},
		{Key: "k", States: []jobs.WorkState{jobs.WorkPending, jobs.WorkRunning}}, // retrying missing
		{Key: "k", States: append(jobs.DefaultUniqueStates(), "asleep")},
	} {
		if _, err := p.Enqueue(context.Background(), jobs.NewWork{Kind: "report", Unique: &u}); !errors.Is(err, jobs.ErrInvalidUnique) {
			t.Errorf("unique %+v: %v, want ErrInvalidUnique", u, err)
		}
	}
}
