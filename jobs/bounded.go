package jobs

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Policy is what a Bounded channel does with a new item when it is full.
type Policy int

// Full-channel policies, as in .NET's BoundedChannelFullMode.
const (
	// Wait blocks the sender until there is room or its context ends
	// (backpressure); a sender that gives up gets ErrFull.
	Wait Policy = iota
	// DropNewest rejects the new item at once with ErrFull.
	DropNewest
	// DropOldest evicts the oldest queued item to make room; the evicted
	// item goes to the channel's evict callback so its owner can record it.
	DropOldest
)

func (p Policy) String() string {
	switch p {
	case Wait:
		return "wait"
	case DropNewest:
		return "drop-newest"
	case DropOldest:
		return "drop-oldest"
	}
	return fmt.Sprintf("policy(%d)", int(p))
}

// ParsePolicy reads "wait", "drop-newest" or "drop-oldest".
func ParsePolicy(s string) (Policy, error) {
	for _, p := range []Policy{Wait, DropNewest, DropOldest} {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: %q (want wait, drop-newest or drop-oldest)", ErrInvalidPolicy, s)
}

// ChanStats are a Bounded channel's counters at one moment.
type ChanStats struct {
	Len      int    `json:"len"`
	Cap      int    `json:"cap"`
	Policy   string `json:"policy"`
	Sent     uint64 `json:"sent"`
	Rejected uint64 `json:"rejected"` // new items refused: full (DropNewest, Wait past the deadline) or closed
	Evicted  uint64 `json:"evicted"`  // old items pushed out by DropOldest
}

// Bounded is a channel with a capacity, a full-channel policy and counters.
// The Go channel inside is never closed, so a late sender cannot panic;
// Close only stops intake, and the reader drains what is left (the
// tutorial's Complete()).
type Bounded[T any] struct {
	ch      chan T
	policy  Policy
	onEvict func(context.Context, T)
	// closing tells senders to stop; closed is closed once no sender can
	// add anything more. senders lets Close wait for a Send already past
	// its check of closing: it guards no data, only that handover.
	closing   chan struct{}
	closed    chan struct{}
	senders   sync.RWMutex
	closeOnce sync.Once
	sent      atomic.Uint64
	rejected  atomic.Uint64
	evicted   atomic.Uint64
}

// NewBounded returns a channel holding up to capacity items (at least 1).
// onEvict, used only by DropOldest, receives each evicted item with the
// sender's context; it must not block for long.
func NewBounded[T any](capacity int, policy Policy, onEvict func(context.Context, T)) *Bounded[T] {
	if capacity < 1 {
		capacity = 1
	}
	return &Bounded[T]{
		ch: make(chan T, capacity), policy: policy, onEvict: onEvict,
		closing: make(chan struct{}), closed: make(chan struct{}),
	}
}

// Send offers v according to the policy. It returns ErrClosed after Close,
// and ErrFull (wrapping ctx's error for Wait) when v was not taken.
func (b *Bounded[T]) Send(ctx context.Context, v T) error {
	b.senders.RLock()
	defer b.senders.RUnlock()
	select {
	case <-b.closing:
		b.rejected.Add(1)
		return ErrClosed
	default:
	}
	// Fast path for every policy: there is room.
	select {
	case b.ch <- v:
		b.sent.Add(1)
		return nil
	default:
	}
	switch b.policy {
	case DropNewest:
		b.rejected.Add(1)
		return ErrFull
	case DropOldest:
		for {
			select {
			case b.ch <- v:
				b.sent.Add(1)
				return nil
			default:
			}
			select {
			case old := <-b.ch:
				b.evicted.Add(1)
				if b.onEvict != nil {
					b.onEvict(ctx, old)
				}
			default: // a reader took one meanwhile; try again
			}
		}
	default: // Wait
		select {
		case b.ch <- v:
			b.sent.Add(1)
			return nil
		case <-b.closing:
			b.rejected.Add(1)
			return ErrClosed
		case <-ctx.Done():
			b.rejected.Add(1)
			return fmt.Errorf("%w: %w", ErrFull, ctx.Err())
		}
	}
}

// Recv waits for an item until ctx ends.
func (b *Bounded[T]) Recv(ctx context.Context) (T, error) {
	select {
	case v := <-b.ch:
		return v, nil
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// TryRecv takes an item if one is queued, without blocking.
func (b *Bounded[T]) TryRecv() (T, bool) {
	select {
	case v := <-b.ch:
		return v, true
	default:
		var zero T
		return zero, false
	}
}

// C is the receive side, for a select with other channels.
func (b *Bounded[T]) C() <-chan T { return b.ch }

// Close stops intake: later Sends get ErrClosed, and a Send waiting for
// room gives up. When Close returns no Send can add an item any more, so
// the reader can drain what is queued and know it has everything. Close may
// be called more than once.
func (b *Bounded[T]) Close() {
	b.closeOnce.Do(func() {
		close(b.closing)
		b.senders.Lock() // wait for Sends that were already past the check
		close(b.closed)
		b.senders.Unlock()
	})
}

// Closed is closed once Close has returned: drain with TryRecv, then stop.
func (b *Bounded[T]) Closed() <-chan struct{} { return b.closed }

// Len is the number of queued items.
func (b *Bounded[T]) Len() int { return len(b.ch) }

// Stats reports the counters.
func (b *Bounded[T]) Stats() ChanStats {
	return ChanStats{
		Len: len(b.ch), Cap: cap(b.ch), Policy: b.policy.String(),
		Sent: b.sent.Load(), Rejected: b.rejected.Load(), Evicted: b.evicted.Load(),
	}
}
