package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/canalhq/canal/internal/queue"
)

// Work items by hand: a retry or a delete is a command on the control
// channel, answered by the processor on its reply channel like a job's
// start or stop, so a dashboard button gets the item as it now stands or a
// typed error.

// RetryWork makes a failed or dropped work item run again now, with a
// fresh budget of attempts. ErrUnknownWork if there is none, ErrWorkState
// if it is not failed or dropped.
func (p *Processor) RetryWork(ctx context.Context, id string) (WorkItem, error) {
	r, err := p.send(ctx, command{kind: cmdRetryWork, name: id})
	return r.work, err
}

// DeleteWork removes a finished (done, failed or dropped) work item and its
// attempts, and returns it as it was. ErrUnknownWork if there is none,
// ErrWorkState if it is waiting or running.
func (p *Processor) DeleteWork(ctx context.Context, id string) (WorkItem, error) {
	r, err := p.send(ctx, command{kind: cmdDeleteWork, name: id})
	return r.work, err
}

// WorkAttempt is one recorded attempt of a work item.
type WorkAttempt struct {
	Number   int           `json:"number"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"-"`
	Error    string        `json:"error,omitempty"`
}

// WorkAttempts lists a work item's recorded attempts, oldest first (the
// engine writes one per attempt that ran; deferrals write none). It reads
// the store directly.
func (p *Processor) WorkAttempts(ctx context.Context, id string) ([]WorkAttempt, error) {
	if p.pool == nil {
		return nil, fmt.Errorf("work %q: %w", id, ErrUnknownWork)
	}
	it, err := p.pool.get(ctx, id)
	if err != nil {
		return nil, err
	}
	as, err := p.pool.drv.Attempts(ctx, it.ID)
	if err != nil {
		return nil, fmt.Errorf("work %q attempts: %w", id, err)
	}
	out := make([]WorkAttempt, len(as))
	for i, a := range as {
		out[i] = WorkAttempt{Number: a.Number, Started: a.Started, Duration: a.Duration, Error: a.Error}
	}
	return out, nil
}

// get reads the engine's item of a work item.
func (pl *pool) get(ctx context.Context, id string) (queue.Item, error) {
	if !storableID(id) {
		return queue.Item{}, fmt.Errorf("work %q: %w", id, ErrUnknownWork)
	}
	it, err := pl.drv.Get(ctx, workQueue, id)
	if errors.Is(err, queue.ErrNotFound) {
		return it, fmt.Errorf("work %q: %w", id, ErrUnknownWork)
	}
	if err != nil {
		return it, fmt.Errorf("work %q: %w", id, err)
	}
	return it, nil
}

// workCommand runs a retry or delete for the processor goroutine.
func (p *Processor) workCommand(ctx context.Context, cmd command) (WorkItem, error) {
	if p.pool == nil {
		return WorkItem{}, fmt.Errorf("%s %q: %w", cmd.kind, cmd.name, ErrNoStore)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pl := p.pool
	cur, err := pl.get(ctx, cmd.name)
	if err != nil {
		return WorkItem{}, fmt.Errorf("%s: %w", cmd.kind, err)
	}
	st := workState(cur)
	var it queue.Item
	switch cmd.kind {
	case cmdRetryWork:
		if st != WorkFailed && st != WorkDropped {
			return WorkItem{}, fmt.Errorf("retry work %q: %w: it is %s", cmd.name, ErrWorkState, st)
		}
		it, err = pl.drv.Retry(ctx, workQueue, cmd.name, queue.US(pl.now()))
	default:
		it, err = pl.drv.Delete(ctx, workQueue, cmd.name, []queue.State{queue.StateDone, queue.StateDead, queue.StateDropped, queue.StateCancelled})
	}
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return WorkItem{}, fmt.Errorf("%s %q: %w", cmd.kind, cmd.name, ErrUnknownWork)
	case errors.Is(err, queue.ErrState):
		return WorkItem{}, fmt.Errorf("%s %q: %w: it is %s", cmd.kind, cmd.name, ErrWorkState, st)
	case err != nil:
		return WorkItem{}, fmt.Errorf("%s %q: %w", cmd.kind, cmd.name, err)
	}
	w := toWork(it)
	ev := w // the event's own copy, without the payload: the caller gets w
	ev.Payload = nil
	if cmd.kind == cmdRetryWork {
		pl.events.publish(Event{Type: EventWorkRequeued, Work: &ev})
		pl.proc.Wake(workQueue)
	} else {
		pl.events.publish(Event{Type: EventWorkDeleted, Work: &ev})
	}
	return w, nil
}
