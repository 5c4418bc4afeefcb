package outage

import (
	"bytes"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// step is one observation: a call begun at began (seconds on the test's
// clock) that ended at end with err.
type step struct {
	began, end int
	err        error
}

func TestMonitorLogsEachOutageOnce(t *testing.T) {
	refused := fmt.Errorf("claim: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED})
	shutdown := &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}
	syntax := &pgconn.PgError{Code: "42601", Message: "syntax error"}
	tests := []struct {
		name               string
		steps              []step
		wantDown, wantUp   int
		wantAvailable      bool
		wantReturned       int // errors handed back for the caller to log
		wantReasonContains string
	}{
		{name: "all fine", steps: []step{{0, 1, nil}, {1, 2, nil}}, wantAvailable: true},
		{
			name:  "one outage, many loops and polls",
			steps: []step{{0, 1, nil}, {1, 2, refused}, {2, 3, refused}, {2, 3, shutdown}, {3, 4, refused}, {4, 5, nil}, {5, 6, nil}},
			// one line each way, however many failures
			wantDown: 1, wantUp: 1, wantAvailable: true,
		},
		{
			name: "stale results change nothing",
			// a call begun before the outage was seen succeeds after it;
			// a call begun before the recovery fails after it.
			steps:    []step{{1, 2, refused}, {1, 3, nil}, {4, 5, nil}, {3, 6, io.ErrUnexpectedEOF}, {7, 8, nil}},
			wantDown: 1, wantUp: 1, wantAvailable: true,
		},
		{
			name:     "two outages",
			steps:    []step{{1, 2, refused}, {3, 4, nil}, {5, 6, shutdown}, {6, 7, refused}},
			wantDown: 2, wantUp: 1, wantAvailable: false, wantReasonContains: "57P01",
		},
		{
			name:          "a query's own error is the caller's, not an outage",
			steps:         []step{{1, 2, syntax}, {2, 3, syntax}, {3, 4, context.Canceled}},
			wantAvailable: true, wantReturned: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			m := New(slog.New(slog.NewTextHandler(&buf, nil)))
			base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var now time.Time
			m.now = func() time.Time { return now }
			changes, cancel := m.Subscribe()
			defer cancel()
			returned, notified := 0, 0
			for _, s := range tt.steps {
				now = base.Add(time.Duration(s.end) * time.Second)
				if m.Observe(base.Add(time.Duration(s.began)*time.Second), s.err) != nil {
					returned++
				}
				select {
				case <-changes:
					notified++
				default:
				}
			}
			log := buf.String()
			if got := strings.Count(log, "msg=\""+LogUnavailable+"\""); got != tt.wantDown {
				t.Errorf("%q logged %d times, want %d:\n%s", LogUnavailable, got, tt.wantDown, log)
			}
			if got := strings.Count(log, "msg=\""+LogAvailable+"\""); got != tt.wantUp {
				t.Errorf("%q logged %d times, want %d:\n%s", LogAvailable, got, tt.wantUp, log)
			}
			if tt.wantUp > 0 && !strings.Contains(log, "outage=") {
				t.Errorf("recovery line without the outage's length:\n%s", log)
			}
			if notified != tt.wantDown+tt.wantUp {
				t.Errorf("subscriber told %d times, want %d", notified, tt.wantDown+tt.wantUp)
			}
			if returned != tt.wantReturned {
				t.Errorf("%d errors returned to log, want %d", returned, tt.wantReturned)
			}
			st := m.Status()
			if st.Available != tt.wantAvailable || !strings.Contains(st.Reason, tt.wantReasonContains) {
				t.Errorf("status = %+v, want available %v, reason with %q", st, tt.wantAvailable, tt.wantReasonContains)
			}
		})
	}
}

func TestMonitorSettled(t *testing.T) {
	m := New(slog.New(slog.DiscardHandler))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return now }
	if !m.Settled(time.Minute) {
		t.Fatal("a database that never failed is settled")
	}
	m.Observe(now, driver.ErrBadConn)
	if m.Settled(0) {
		t.Fatal("an unavailable database is not settled")
	}
	now = now.Add(time.Second)
	m.Observe(now, nil)
	now = now.Add(9 * time.Second)
	if m.Settled(10 * time.Second) {
		t.Fatal("settled 9 s after the recovery, want 10 s")
	}
	now = now.Add(time.Second)
	if !m.Settled(10 * time.Second) {
		t.Fatal("not settled 10 s after the recovery")
	}
	var none *Monitor
	if !none.Settled(time.Hour) || none.Observe(now, io.EOF) != io.EOF {
		t.Fatal("a nil monitor is always settled and hands every error back")
	}
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{context.Canceled, false},
		{errors.New("UNIQUE constraint failed"), false},
		{&pgconn.PgError{Code: "23505"}, false},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), false}, // slow, not away
		{fmt.Errorf("x: %w", driver.ErrBadConn), true},
		{io.ErrUnexpectedEOF, true},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("complete: %w", &pgconn.PgError{Code: "57P01"}), true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&net.OpError{Op: "read", Err: syscall.ECONNRESET}, true},
		{&pgconn.PgError{Code: "57P03"}, true},
		{errors.New("failed to connect to `user=postgres database=test`: dial error"), true},
	}
	for _, tt := range tests {
		if got := Unavailable(tt.err); got != tt.want {
			t.Errorf("Unavailable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestBackoffGrowsToItsCapAndResets(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	// full[i] is the i-th wait before jitter; each wait is in [full/2, full].
	full := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, f := range full {
		f *= time.Millisecond
		if d := b.Next(); d < f/2 || d > f {
			t.Errorf("wait %d = %s, want between %s and %s", i, d, f/2, f)
		}
	}
	if b.Failures() != len(full) {
		t.Errorf("failures = %d, want %d", b.Failures(), len(full))
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Errorf("after Reset, wait = %s, want at most 100ms", d)
	}
	var zero Backoff
	for range 20 {
		if d := zero.Next(); d > 5*time.Second {
			t.Fatalf("zero Backoff waited %s, past its 5 s cap", d)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if (&Backoff{Min: time.Hour}).Wait(ctx) {
		t.Error("Wait on an ended context returned true")
	}
}
