// Package outage tells one process's loops whether the database answers,
// so that a restart of PostgreSQL or a dropped connection is logged once
// and shown once, not once per loop and poll.
//
// Every loop that talks to the database reports each call's result to the
// process's one Monitor (Observe) and waits its own Backoff after a
// failure. The Monitor logs "database unavailable" on the first failure of
// an outage and "database available again", with the outage's length, on
// the first success after it; it tells subscribers (the dashboard's hub)
// of both, and /readyz reads its Status.
//
//	mon := outage.New(logger)
//	b := outage.Backoff{Min: time.Second, Max: 5 * time.Second}
//	for {
//		began := time.Now()
//		err := doSomething(ctx)
//		if err = mon.Observe(began, err); err != nil {
//			logger.Warn("something failed", "err", err) // not an outage: say so
//		}
//		... on a failure: if !b.Wait(ctx) { return }; on success: b.Reset()
//	}
package outage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// The two lines an outage logs, once each.
const (
	LogUnavailable = "database unavailable"
	LogAvailable   = "database available again"
)

// Status is what a Monitor knows now.
type Status struct {
	Available bool
	// Since is when the database became unavailable (when Available is
	// false), or when it was last seen back (zero if it never failed).
	Since time.Time
	// Reason is the error that began the outage, while unavailable.
	Reason string
}

// Monitor is one process's view of the database: available until a call
// fails with an error Unavailable recognises, then unavailable until one
// succeeds. Safe for concurrent use.
type Monitor struct {
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	st      Status
	changed time.Time // the last transition; observations begun before it are stale
	subs    map[chan struct{}]struct{}
}

// New returns a monitor that logs transitions to log (nil: slog.Default()).
func New(log *slog.Logger) *Monitor {
	if log == nil {
		log = slog.Default()
	}
	return &Monitor{log: log, now: time.Now, st: Status{Available: true}, subs: map[chan struct{}]struct{}{}}
}

// Observe records the result of a database call begun at began, and returns
// the error its caller should still log: nil for a success, a cancelled
// context and any outage error (the monitor logs the outage once), err
// itself otherwise. A result of a call begun before the last transition is
// stale (a query that failed on a connection broken before the database
// came back, or that succeeded just before it went away) and changes
// nothing. A nil Monitor changes nothing and returns err.
func (m *Monitor) Observe(began time.Time, err error) error {
	if m == nil {
		return err
	}
	down := Unavailable(err)
	if err != nil && !down {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	m.mu.Lock()
	if began.Before(m.changed) || m.st.Available == !down {
		m.mu.Unlock()
		if down {
			return nil
		}
		return err
	}
	now := m.now()
	was := m.st
	m.changed = now
	if down {
		m.st = Status{Available: false, Since: now, Reason: err.Error()}
	} else {
		m.st = Status{Available: true, Since: now}
	}
	for c := range m.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	m.mu.Unlock()
	if down {
		m.log.Warn(LogUnavailable, "err", err)
	} else {
		m.log.Info(LogAvailable, "outage", now.Sub(was.Since).Round(time.Millisecond))
	}
	return nil
}

// Status is the database's state as last observed; a nil Monitor's is
// always available.
func (m *Monitor) Status() Status {
	if m == nil {
		return Status{Available: true}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

// Subscribe returns a channel that receives a value after each transition
// (coalesced: read Status for the state), until cancel is called.
func (m *Monitor) Subscribe() (changes <-chan struct{}, cancel func()) {
	c := make(chan struct{}, 1)
	if m == nil {
		return c, func() {}
	}
	m.mu.Lock()
	m.subs[c] = struct{}{}
	m.mu.Unlock()
	return c, func() {
		m.mu.Lock()
		delete(m.subs, c)
		m.mu.Unlock()
	}
}

// Settled reports whether the database has been available for at least d
// since its last outage (or never failed): a rescuer of expired leases
// waits for it, so that after an outage every live process renews its
// leases before any of them is taken for dead.
func (m *Monitor) Settled(d time.Duration) bool {
	st := m.Status()
	return st.Available && (st.Since.IsZero() || m.now().Sub(st.Since) >= d)
}

// Unavailable reports whether err says the database cannot be reached or
// is not serving (refused, failed or dropped connections, a server shutting
// down or starting up), as opposed to an error in the call itself (a
// constraint, a syntax error), which retrying would not fix. A call that
// merely ran past its deadline is not an outage: a busy database is slow,
// not away, and a probe's short deadline must not raise the banner.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && !ne.Timeout() {
		return true
	}
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		code := st.SQLState()
		// 08: connection exception; 57P01-03: admin or crash shutdown,
		// cannot connect now (starting up or shutting down); 53300: too
		// many connections.
		return strings.HasPrefix(code, "08") || code == "57P01" || code == "57P02" || code == "57P03" || code == "53300"
	}
	// Errors that lost their type on the way (a driver's own wording).
	msg := err.Error()
	for _, s := range []string{"conn closed", "connection refused", "connection reset", "broken pipe",
		"unexpected EOF", "server closed the connection", "failed to connect", "bad connection"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// Backoff is one loop's wait between failed calls: Min, doubling after each
// failure up to Max, each with jitter (between half and all of it) so that
// many loops and processes do not retry in step. The zero value waits
// 250 ms up to 5 s. Not safe for concurrent use: one loop owns it.
type Backoff struct {
	Min, Max time.Duration
	n        int
}

// Next returns the wait before the next try and counts a failure.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 250 * time.Millisecond
	}
	if hi <= 0 {
		hi = 5 * time.Second
	}
	d := lo
	for i := 0; i < b.n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	b.n++
	return d/2 + rand.N(d/2+1)
}

// Failures is how many failures in a row Next has counted.
func (b *Backoff) Failures() int { return b.n }

// Reset starts again from Min after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Wait sleeps Next(); false if ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
