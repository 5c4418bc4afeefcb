package jobs_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// A WatchOnly processor (a standalone dashboard) stores what it is given
// and reports the queue, but claims no item and runs no worker: the item
// waits for a processor that runs its kind, which runs it once.
func TestWatchOnlyProcessorClaimsNothing(t *testing.T) {
	eachStore(t, func(t *testing.T, _ *gorm.DB, s jobs.Store) {
		var watcherRan, workerRan atomic.Int64
		watcher := jobs.NewProcessor(jobs.Config{Store: s, Workers: 2, WatchOnly: true})
		must(t, watcher.RegisterKind("k", func(context.Context, jobs.WorkItem) error { watcherRan.Add(1); return nil }, jobs.KindOptions{}))
		running(t, watcher)
		it := enqueue(t, watcher, "k", jobs.Normal, `{}`)
		// The watcher's own reports count the item as waiting: it ran its
		// loop all along and never took the item.
		testenv.Eventually(t, wait, "the watcher reports the waiting item", func() bool {
			q := watcher.Queue()
			return q.Depths["normal"] == 1
		})
		if w := state(t, s, it.ID); w.State != jobs.WorkPending || watcherRan.Load() != 0 {
			t.Fatalf("watch-only: item %s, ran %d times; want pending, never run", w.State, watcherRan.Load())
		}
		if q := watcher.Queue(); q.Workers != 0 || q.Busy != 0 {
			t.Fatalf("watch-only queue %+v: want no worker", q)
		}

		worker := jobs.NewProcessor(jobs.Config{Store: s, Workers: 2})
		must(t, worker.RegisterKind("k", func(context.Context, jobs.WorkItem) error { workerRan.Add(1); return nil }, jobs.KindOptions{}))
		running(t, worker)
		waitState(t, s, it.ID, jobs.WorkDone)
		if watcherRan.Load() != 0 || workerRan.Load() != 1 {
			t.Fatalf("ran by the watcher %d, by the worker %d; want 0 and 1", watcherRan.Load(), workerRan.Load())
		}
	})
}
