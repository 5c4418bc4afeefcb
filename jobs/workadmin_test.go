package jobs_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// Retry and delete by hand go through the control channel and answer with
// the item or a typed error; every attempt that ran is recorded.
func TestRetryDeleteAndAttemptsOfWork(t *testing.T) {
	eachStore(t, func(t *testing.T, _ *gorm.DB, s jobs.Store) {
		ctx := context.Background()
		p := jobs.NewProcessor(jobs.Config{Store: s, Workers: 2})
		var broken atomic.Bool
		broken.Store(true)
		must(t, p.RegisterKind("email", func(context.Context, jobs.WorkItem) error {
			if broken.Load() {
				return errors.New("smtp down")
			}
			return nil
		}, jobs.KindOptions{MaxAttempts: 2, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond, BreakerFailures: -1}))
		release := make(chan struct{})
		defer close(release)
		must(t, p.RegisterKind("slow", func(ctx context.Context, _ jobs.WorkItem) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}, jobs.KindOptions{}))
		at := time.Now().UTC().Add(-time.Minute)
		must(t, jobs.ImportWork(ctx, s, jobs.WorkItem{ID: "shed", Kind: "email", State: jobs.WorkDropped, MaxAttempts: 2,
			LastError: "evicted", CreatedAt: at, UpdatedAt: at, RunAt: at, FinishedAt: &at}))
		c := collect(t, p)
		running(t, p)

		failed := enqueue(t, p, "email", jobs.Normal, `{}`)
		waitState(t, s, failed.ID, jobs.WorkFailed)
		as, err := p.WorkAttempts(ctx, failed.ID)
		if err != nil || len(as) != 2 || as[0].Number != 1 || as[1].Error != "smtp down" || as[0].Started.IsZero() {
			t.Fatalf("attempts of the failed item: %+v %v", as, err)
		}

		if w, _ := p.Work(ctx, failed.ID); w.Attempts != 2 || w.Failures != 2 {
			t.Fatalf("failed item: %d attempts, %d failures; want 2 and 2", w.Attempts, w.Failures)
		}

		broken.Store(false)
		w, err := p.RetryWork(ctx, failed.ID)
		if err != nil || (w.State != jobs.WorkPending && w.State != jobs.WorkRunning && w.State != jobs.WorkDone) {
			t.Fatalf("RetryWork(failed) = %+v, %v", w, err)
		}
		// A fresh budget: the one attempt since the retry, and two before.
		if w := waitState(t, s, failed.ID, jobs.WorkDone); w.Attempts != 3 || w.Failures != 0 {
			t.Fatalf("retried item: %d attempts, %d failures; want 3 and 0", w.Attempts, w.Failures)
		} else if n, earlier := w.Round(); n != 1 || earlier != 2 {
			t.Fatalf("retried item's round: attempt %d, %d before; want 1 and 2", n, earlier)
		}
		if as, _ := p.WorkAttempts(ctx, failed.ID); len(as) != 3 || as[2].Error != "" {
			t.Fatalf("attempts after the retry: %+v", as)
		}
		if _, err := p.RetryWork(ctx, "shed"); err != nil {
			t.Fatalf("RetryWork(dropped): %v", err)
		}
		waitState(t, s, "shed", jobs.WorkDone)

		if _, err := p.RetryWork(ctx, failed.ID); !errors.Is(err, jobs.ErrWorkState) {
			t.Fatalf("RetryWork(done) = %v, want ErrWorkState", err)
		}
		busy := enqueue(t, p, "slow", jobs.Normal, `{}`)
		waitState(t, s, busy.ID, jobs.WorkRunning)
		if _, err := p.DeleteWork(ctx, busy.ID); !errors.Is(err, jobs.ErrWorkState) {
			t.Fatalf("DeleteWork(running) = %v, want ErrWorkState", err)
		}
		if w, err := p.DeleteWork(ctx, failed.ID); err != nil || w.ID != failed.ID {
			t.Fatalf("DeleteWork(done) = %+v, %v", w, err)
		}
		if _, err := p.Work(ctx, failed.ID); !errors.Is(err, jobs.ErrUnknownWork) {
			t.Fatalf("deleted item: %v", err)
		}
		if as, err := p.WorkAttempts(ctx, failed.ID); !errors.Is(err, jobs.ErrUnknownWork) || len(as) != 0 {
			t.Fatalf("attempts of a deleted item: %v %v", as, err)
		}
		// The dashboard follows both by hand actions live.
		testenv.Eventually(t, 60*time.Second, "work.requeued and work.deleted events", func() bool {
			return c.has(jobs.EventWorkRequeued) && c.has(jobs.EventWorkDeleted)
		})
		for _, id := range []string{"nope", "\xff"} {
			if _, err := p.RetryWork(ctx, id); !errors.Is(err, jobs.ErrUnknownWork) {
				t.Errorf("RetryWork(%q) = %v", id, err)
			}
			if _, err := p.DeleteWork(ctx, id); !errors.Is(err, jobs.ErrUnknownWork) {
				t.Errorf("DeleteWork(%q) = %v", id, err)
			}
		}
	})
}
