package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// ErrSimulated is the failure the demo email publisher makes up.
var ErrSimulated = errors.New("email: simulated SMTP failure")

// Email is the demo's publisher: it pretends to send an email, taking about
// Latency and failing with ErrSimulated at FailureRate, so the dashboard shows
// retries and the occasional dead letter. It sends nothing.
type Email struct {
	latency  time.Duration
	failRate float64
	log      *slog.Logger

	mu  sync.Mutex // rand.Rand is not safe for concurrent workers
	rnd *rand.Rand
}

// NewEmail returns a demo email publisher. latency is the mean simulated send
// time (uniform in [latency/2, 3·latency/2]); failRate is in [0, 1]; rnd makes
// tests deterministic (nil: seeded from the runtime).
func NewEmail(latency time.Duration, failRate float64, rnd *rand.Rand, log *slog.Logger) *Email {
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if log == nil {
		log = slog.Default()
	}
	return &Email{latency: latency, failRate: failRate, rnd: rnd, log: log}
}

// Publish simulates sending d.
func (e *Email) Publish(ctx context.Context, d Delivery) error {
	e.mu.Lock()
	fail := e.rnd.Float64() < e.failRate
	var wait time.Duration
	if e.latency > 0 {
		wait = e.latency/2 + time.Duration(e.rnd.Int64N(int64(e.latency)+1))
	}
	e.mu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return fmt.Errorf("email: %w", ctx.Err())
		case <-t.C:
		}
	}
	if fail {
		return MessageError(ErrSimulated) // a bounce: the message's failure
	}
	e.log.Debug("demo email sent", "id", d.ID, "topic", d.Topic)
	return nil
}
