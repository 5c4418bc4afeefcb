package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Message errors and destination errors.
//
// A publisher's error is either about the message (the receiver answered
// and refused this message: a webhook's 4xx other than 408 and 429, a
// payload the broker rejects) or about the destination (it is down, refuses
// connections, times out, answers 5xx). Only message errors spend the
// message's attempts and can make it dead. A destination error spends
// nothing: the message waits for the destination, and the destination's
// circuit breaker opens once it fails every message, so that its messages
// wait without being sent until one probe gets through. An error a
// publisher does not mark with MessageError is a destination error.

type messageError struct{ err error }

func (e messageError) Error() string { return e.err.Error() }
func (e messageError) Unwrap() error { return e.err }

// MessageError marks err as a failure of the message itself, one no wait
// for the destination can fix: the attempt counts, and after the topic's
// MaxAttempts such failures the message is dead. nil stays nil.
func MessageError(err error) error {
	if err == nil || IsMessageError(err) {
		return err
	}
	return messageError{err}
}

// IsMessageError reports whether err, or an error it wraps, came from
// MessageError.
func IsMessageError(err error) bool {
	var m messageError
	return errors.As(err, &m)
}

// ErrDestinationDown is the cause recorded on a message that waits because
// its destination's breaker is open (or probing): it was not sent.
var ErrDestinationDown = errors.New("outbox: destination down, waiting (breaker open)")

// Named gives p a stable name, which makes it a destination of its own: a
// circuit breaker per name, and, inside a Fanout, a delivery state per
// name kept with each message ("Already delivered to"), so that a message
// another destination failed is not sent again to this one. Names are
// short words ("amqp", "redis", "webhook"); give each destination one name
// for the life of its messages.
func Named(name string, p Publisher) Publisher {
	return &named{name: name, p: p}
}

type named struct {
	name string
	p    Publisher
	// auto: the relay named a registered publisher after its topic; it
	// stands aside (inner) once it turns out to hold named destinations.
	auto  bool
	inner atomic.Bool
}

// Name is the destination's name.
func (n *named) Name() string { return n.name }

func (n *named) Publish(ctx context.Context, d Delivery) error {
	a, _ := ctx.Value(attemptKey{}).(*attemptState)
	if a == nil || (n.auto && n.inner.Load()) {
		return n.p.Publish(ctx, d) // outside a relay, or a wrapper of named ones
	}
	return a.send(ctx, n, d)
}

// DeliveredMeta is the metadata field that holds, on a message, the names
// of the destinations that already have it, comma separated. Publishers
// never see it among the headers.
const DeliveredMeta = "canal:delivered"

func parseDelivered(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// attemptState is one attempt's view of its destinations, carried by the
// context down to each named publisher, through any wrapper.
type attemptState struct {
	r *Relay

	mu        sync.Mutex
	delivered []string // before this attempt, from the message's metadata
	newly     []string // during it
	used      int      // named destinations that ran
	msgErr    bool     // a destination refused the message itself
	down      bool     // a destination is down or failed
	wait      time.Duration
}

type attemptKey struct{}

func (a *attemptState) send(ctx context.Context, n *named, d Delivery) error {
	a.mu.Lock()
	mark := a.used
	if !n.auto {
		a.used++
		if slices.Contains(a.delivered, n.name) || slices.Contains(a.newly, n.name) {
			a.mu.Unlock()
			return nil // sent at an earlier attempt
		}
	}
	a.mu.Unlock()

	b := a.r.breaker(n.name)
	done, err := b.cb.Allow()
	if err != nil {
		wait := a.r.cfg.BreakerOpen
		if errors.Is(err, gobreaker.ErrTooManyRequests) {
			wait = max(a.r.cfg.BreakerOpen/4, time.Millisecond) // a probe is out
		}
		a.failed(false, wait)
		return fmt.Errorf("%s: %w", n.name, ErrDestinationDown)
	}
	err = n.p.Publish(ctx, d)
	a.mu.Lock()
	holds := n.auto && a.used > mark
	a.mu.Unlock()
	if holds {
		// A publisher registered without a name that holds named
		// destinations: they have their own breakers.
		n.inner.Store(true)
		done(nil)
		a.r.forgetBreaker(n.name)
		return err
	}
	switch {
	case err == nil:
		done(nil)
		if !n.auto {
			a.mu.Lock()
			a.newly = append(a.newly, n.name)
			a.mu.Unlock()
		}
	case IsMessageError(err):
		done(nil) // the destination answered: it is up
		a.failed(true, 0)
	case ctx.Err() != nil && context.Cause(ctx) == context.Canceled:
		done(nil) // the relay is stopping: says nothing of the destination
		a.failed(false, a.r.cfg.BackoffBase)
	default:
		done(err)
		c := b.cb.Counts()
		a.failed(false, min(a.r.policy(d.Topic).Delay(int(max(1, c.ConsecutiveFailures))), a.r.cfg.BreakerOpen))
	}
	// Named in the error, unless it names itself already ("webhook: …").
	if err != nil && !n.auto && !strings.HasPrefix(err.Error(), n.name) {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	return err
}

func (a *attemptState) failed(message bool, wait time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if message {
		a.msgErr = true
		return
	}
	a.down = true
	a.wait = max(a.wait, wait)
}

// breaker is one destination's circuit breaker.
type breaker struct {
	name string
	cb   *gobreaker.TwoStepCircuitBreaker[struct{}]
}

func (r *Relay) breaker(name string) *breaker {
	r.bmu.Lock()
	defer r.bmu.Unlock()
	if b, ok := r.breakers[name]; ok {
		return b
	}
	b := &breaker{name: name, cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     r.cfg.BreakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(r.cfg.BreakerFailures)
		},
		OnStateChange: func(name string, from, to gobreaker.State) {
			switch to {
			case gobreaker.StateOpen:
				r.log.Warn("outbox: destination down: its messages wait, spending no attempt", "destination", name, "from", from.String())
			case gobreaker.StateClosed:
				r.log.Info("outbox: destination back: its messages go out", "destination", name)
				r.Wake()
			}
		},
	})}
	r.breakers[name] = b
	return b
}

func (r *Relay) forgetBreaker(name string) {
	r.bmu.Lock()
	defer r.bmu.Unlock()
	delete(r.breakers, name)
}

// BreakerState is a destination breaker's state: 0 closed (sending),
// 1 half-open (one probe out), 2 open (down: messages wait unsent).
type BreakerState int

// The breaker states, numbered as the canal_outbox_breaker_state gauge.
const (
	BreakerClosed   BreakerState = 0
	BreakerHalfOpen BreakerState = 1
	BreakerOpen     BreakerState = 2
)

func (s BreakerState) String() string {
	switch s {
	case BreakerHalfOpen:
		return "half-open"
	case BreakerOpen:
		return "open"
	}
	return "closed"
}

// Destination is one destination as this process's relay sees it.
type Destination struct {
	Name  string       `json:"name"`
	State BreakerState `json:"state"`
	// StateName is State in words: closed, half-open or open.
	StateName string `json:"stateName"`
	// ConsecutiveFailures are the destination failures since its last
	// success.
	ConsecutiveFailures uint32 `json:"consecutiveFailures"`
}

// Destinations are the destinations this process has sent to (or tried),
// by name: each with its breaker's state.
func (r *Relay) Destinations() []Destination {
	r.bmu.Lock()
	bs := make([]*breaker, 0, len(r.breakers))
	for _, b := range r.breakers {
		bs = append(bs, b)
	}
	r.bmu.Unlock()
	out := make([]Destination, 0, len(bs))
	for _, b := range bs {
		st := BreakerState(b.cb.State())
		out = append(out, Destination{Name: b.name, State: st, StateName: st.String(), ConsecutiveFailures: b.cb.Counts().ConsecutiveFailures})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
