package queue

import (
	"sync/atomic"
	"time"
)

// Event types a Client emits.
const (
	EventDone      = "done"       // an attempt succeeded
	EventRetry     = "retry"      // an attempt failed; another is due at Item.RunAt
	EventDead      = "dead"       // out of attempts, permanent, or given up unsent
	EventSnoozed   = "snoozed"    // put back without an attempt
	EventLeaseLost = "lease_lost" // the outcome was not written: another claim owns it
	EventSuspect   = "suspect"    // a rescued item is sent alone
)

// Event is a change a Client made. Item is the item as it now stands.
type Event struct {
	Type    string
	At      time.Time
	Item    Item
	Err     error         // the handler's, if any
	Latency time.Duration // creation to completion (done only)
}

// Emitter is the one event channel of a use (jobs, outbox): sends never
// block; when the reader falls behind, events are dropped and counted.
type Emitter[E any] struct {
	ch      chan E
	dropped atomic.Int64
}

// NewEmitter returns an emitter with a buffer of size (1024 if 0).
func NewEmitter[E any](size int) *Emitter[E] {
	if size <= 0 {
		size = 1024
	}
	return &Emitter[E]{ch: make(chan E, size)}
}

// Emit sends ev or counts it dropped.
func (e *Emitter[E]) Emit(ev E) {
	select {
	case e.ch <- ev:
	default:
		e.dropped.Add(1)
	}
}

// C is the channel; it is never closed.
func (e *Emitter[E]) C() <-chan E { return e.ch }

// Dropped is how many events were dropped.
func (e *Emitter[E]) Dropped() int64 { return e.dropped.Load() }
