package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/canalhq/canal/internal/queue"
)

// Windowed history: what the dashboard counts over its last minutes
// (dispatches, dead letters) read from the engine's table through its
// reader, so a restarted process shows the same figures it showed before.
// A dispatched or dead message's finish time is when it got there.

// Window is the outbox's history in fixed buckets from Since: bucket i
// covers [Since + i·Bucket, Since + (i+1)·Bucket).
type Window struct {
	Since      time.Time
	Bucket     time.Duration
	Dispatched []int64
	Dead       []int64
	// RecentDead are the newest messages that went dead in the window,
	// newest first, at most the limit asked for.
	RecentDead []Summary
	// DeadAt is when each of RecentDead went dead.
	DeadAt []time.Time
}

// Window counts dispatched and dead messages per bucket over n buckets from
// since, and returns up to recent of the newest dead ones.
func (r *Relay) Window(ctx context.Context, since time.Time, bucket time.Duration, n, recent int) (Window, error) {
	if bucket <= 0 || n <= 0 {
		return Window{}, fmt.Errorf("outbox window: bucket %s and count %d must be positive", bucket, n)
	}
	w := Window{Since: since.UTC(), Bucket: bucket}
	from, width := since.UnixMicro(), bucket.Microseconds()
	until := from + int64(n)*width
	fq := func(st queue.State, from int64) queue.Filter {
		return queue.Filter{Queue: queueName, States: []queue.State{st}, FinishedFrom: from, FinishedBefore: until}
	}
	var err error
	if w.Dispatched, err = r.drv.CountByFinish(ctx, fq(queue.StateDone, from), from, width, n); err != nil {
		return Window{}, fmt.Errorf("outbox window dispatched: %w", err)
	}
	if w.Dead, err = r.drv.CountByFinish(ctx, fq(queue.StateDead, from), from, width, n); err != nil {
		return Window{}, fmt.Errorf("outbox window dead: %w", err)
	}
	if recent > 0 {
		dead, err := r.drv.LatestFinished(ctx, fq(queue.StateDead, from), recent)
		if err != nil {
			return Window{}, fmt.Errorf("outbox window recent dead: %w", err)
		}
		for _, it := range dead {
			w.RecentDead = append(w.RecentDead, summary(it))
			w.DeadAt = append(w.DeadAt, it.FinishedAt)
		}
	}
	return w, nil
}
