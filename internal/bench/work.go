package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canalhq/canal/jobs"
)

// kind is the work kind bench enqueues.
const kind = "bench.noop"

// loaders enqueue the backlog in parallel, as concurrent API requests would.
const loaders = 8

// benchWork enqueues n no-op work items before the processor runs (so they
// are a backlog in the store), then runs it until every item has run and
// its outcome is stored: the clock runs from Processor.Run's start until it
// returns after a graceful Shutdown.
func benchWork(ctx context.Context, t *target, o options, out *printer, log *slog.Logger) error {
	if err := jobs.Migrate(ctx, t.db); err != nil {
		return err
	}
	store, err := jobs.NewStore(t.db)
	if err != nil {
		return fmt.Errorf("jobs store: %w", err)
	}
	proc := jobs.NewProcessor(jobs.Config{
		Store: store, Workers: o.workers,
		// The whole backlog is accepted before Run, under the Wait policy.
		WorkCapacity: o.n,
		Instance:     "bench-" + randomHex(4),
		Logger:       log.With("component", "jobs"),
	})
	ran := newCounter(o.n)
	err = proc.RegisterKind(kind, func(_ context.Context, it jobs.WorkItem) error {
		ran.see(it.ID)
		return nil
	}, jobs.KindOptions{BreakerFailures: -1})
	if err != nil {
		return err
	}
	// Events are not read here; the processor drops and counts them.

	loadStart := time.Now()
	if err := enqueueBacklog(ctx, proc, o.n); err != nil {
		return err
	}
	load := time.Since(loadStart)

	ranAll, drained, err := runUntil(ctx, o, proc.Run, ran.all, proc.Shutdown)
	if err != nil {
		return err
	}
	printDrain(out, t, o.n, ran, load, ranAll, drained, drainNames{
		load: "load_items_per_s", count: "ran", done: "run_s", rate: "work_items_per_s",
	})
	return nil
}

func enqueueBacklog(ctx context.Context, proc *jobs.Processor, n int) error {
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range loaders {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				nw := jobs.NewWork{Kind: kind, Priority: jobs.Normal, Payload: json.RawMessage(`{"n":` + strconv.FormatInt(i, 10) + `}`)}
				if _, err := proc.Enqueue(ctx, nw); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("enqueue the backlog: %w", err)
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}
