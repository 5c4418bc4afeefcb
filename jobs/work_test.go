package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

func enqueue(t testing.TB, p *jobs.Processor, kind string, prio jobs.Priority, payload string) jobs.WorkItem {
	t.Helper()
	it, err := p.Enqueue(context.Background(), jobs.NewWork{Kind: kind, Priority: prio, Payload: json.RawMessage(payload)})
	if err != nil {
		t.Fatalf("Enqueue(%s): %v", kind, err)
	}
	return it
}

func waitState(t testing.TB, s jobs.Store, id string, want jobs.WorkState) jobs.WorkItem {
	t.Helper()
	var w jobs.WorkItem
	testenv.Eventually(t, wait, fmt.Sprintf("item %s reaches %s", id, want), func() bool {
		w = state(t, s, id)
		return w.State == want
	})
	return w
}

func TestWorkRunsRetriesAndFails(t *testing.T) {
	eachStore(t, func(t *testing.T, _ *gorm.DB, s jobs.Store) {
		p := jobs.NewProcessor(jobs.Config{Store: s, Workers: 3})
		var flakyCalls atomic.Int64
		opts := jobs.KindOptions{MaxAttempts: 3, BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, BreakerFailures: -1}
		must(t, p.RegisterKind("ok", func(_ context.Context, w jobs.WorkItem) error {
			var v map[string]int
			if err := json.Unmarshal(w.Payload, &v); err != nil || v["n"] != 7 {
				return fmt.Errorf("payload %s", w.Payload)
			}
			return nil
		}, opts))
		must(t, p.RegisterKind("flaky", func(context.Context, jobs.WorkItem) error {
			if flakyCalls.Add(1) < 3 {
				return errors.New("try again")
			}
			return nil
		}, opts))
		must(t, p.RegisterKind("broken", func(context.Context, jobs.WorkItem) error { return errors.New("always broken") }, opts))
		c := collect(t, p)
		running(t, p)

		ok := enqueue(t, p, "ok", jobs.Normal, `{"n":7}`)
		flaky := enqueue(t, p, "flaky", jobs.High, `{}`)
		broken := enqueue(t, p, "broken", jobs.Low, ``)

		if w := waitState(t, s, ok.ID, jobs.WorkDone); w.Attempts != 1 || w.FinishedAt == nil {
			t.Errorf("ok item: %+v", w)
		}
		if w := waitState(t, s, flaky.ID, jobs.WorkDone); w.Attempts != 3 || w.LastError != "" {
			t.Errorf("flaky item: attempts %d lastError %q, want 3 and none", w.Attempts, w.LastError)
		}
		if w := waitState(t, s, broken.ID, jobs.WorkFailed); w.Attempts != 3 || w.LastError != "always broken" {
			t.Errorf("broken item: attempts %d lastError %q", w.Attempts, w.LastError)
		}
		testenv.Eventually(t, wait, "events for every step", func() bool {
			return c.has(jobs.EventWorkQueued) && c.has(jobs.EventWorkStarted) && c.has(jobs.EventWorkRetried) &&
				c.has(jobs.EventWorkDone) && c.has(jobs.EventWorkFailed) && c.has(jobs.EventQueue)
		})
		q := p.Queue()
		if q.Process.Accepted != 3 || q.Process.Done != 2 || q.Process.Failed != 1 || q.Process.Retried != 4 {
			t.Errorf("queue counters %+v", q)
		}
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestEnqueueRejectsBadInput(t *testing.T) {
	p := jobs.NewProcessor(jobs.Config{Store: sqliteStore(t)})
	must(t, p.RegisterKind("email", func(context.Context, jobs.WorkItem) error { return nil }, jobs.KindOptions{}))
	tests := []struct {
		name string
		nw   jobs.NewWork
		want error
	}{
		{"unknown kind", jobs.NewWork{Kind: "fax"}, jobs.ErrUnknownKind},
		{"bad priority", jobs.NewWork{Kind: "email", Priority: 9}, jobs.ErrInvalidPriority},
		{"payload not JSON", jobs.NewWork{Kind: "email", Payload: json.RawMessage("{")}, jobs.ErrInvalidPayload},
		// PostgreSQL's text cannot hold it: a 400, not a 500 from the insert.
		{"payload not UTF-8", jobs.NewWork{Kind: "email", Payload: json.RawMessage("{\"a\":\"\xff\"}")}, jobs.ErrInvalidPayload},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := p.Enqueue(context.Background(), tc.nw); !errors.Is(err, tc.want) {
				t.Fatalf("Enqueue = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := jobs.NewProcessor(jobs.Config{}).Enqueue(context.Background(), jobs.NewWork{Kind: "x"}); !errors.Is(err, jobs.ErrNoStore) {
		t.Fatalf("Enqueue without a store = %v", err)
	}
}

// A full work queue refuses new items under Wait and DropNewest (they were
// never accepted) and, under DropOldest, records the evicted item as
// dropped in the store.
func TestWorkQueueFullPolicies(t *testing.T) {
	tests := []struct {
		policy  jobs.Policy
		wantErr error
	}{
		{jobs.Wait, context.DeadlineExceeded},
		{jobs.DropNewest, jobs.ErrFull},
		{jobs.DropOldest, nil},
	}
	for _, tc := range tests {
		t.Run(tc.policy.String(), func(t *testing.T) {
			s := sqliteStore(t)
			// Not running: nothing takes items off the queue.
			p := jobs.NewProcessor(jobs.Config{Store: s, WorkCapacity: 1, WorkPolicy: tc.policy})
			must(t, p.RegisterKind("email", func(context.Context, jobs.WorkItem) error { return nil }, jobs.KindOptions{}))
			first := enqueue(t, p, "email", jobs.Normal, `{}`)
			// Only Wait needs a deadline that runs out; the others answer at
			// once, and a loaded machine must not turn their answer into a
			// timeout.
			timeout := 10 * time.Second
			if tc.policy == jobs.Wait {
				timeout = 30 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			second, err := p.Enqueue(ctx, jobs.NewWork{Kind: "email", Priority: jobs.Normal})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !errors.Is(err, jobs.ErrFull) {
					t.Fatalf("second Enqueue = %v, want ErrFull and %v", err, tc.wantErr)
				}
				if second.ID != "" {
					t.Fatal("a refused item must not get an id")
				}
				if w := state(t, s, first.ID); w.State != jobs.WorkPending {
					t.Fatalf("first item %s, want pending", w.State)
				}
				if q := p.Queue(); q.Process.Rejected != 1 || q.Process.Accepted != 1 {
					t.Fatalf("counters %+v", q)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := state(t, s, first.ID)
			if w.State != jobs.WorkDropped || !strings.Contains(w.LastError, "drop-oldest") {
				t.Fatalf("evicted item: %s %q, want dropped with a reason", w.State, w.LastError)
			}
			if q := p.Queue(); q.Process.Evicted != 1 || q.Process.Accepted != 2 {
				t.Fatalf("counters %+v", q)
			}
		})
	}
}

// With one worker and a queue full of critical items, low items still get
// a turn long before the critical ones run out.
func TestPrioritiesWithoutStarvation(t *testing.T) {
	s := sqliteStore(t)
	p := jobs.NewProcessor(jobs.Config{Store: s, Workers: 1, WorkCapacity: 200})
	var (
		mu    sync.Mutex
		order []string
	)
	must(t, p.RegisterKind("k", func(_ context.Context, w jobs.WorkItem) error {
		mu.Lock()
		order = append(order, w.Priority.String())
		mu.Unlock()
		return nil
	}, jobs.KindOptions{}))
	for range 100 {
		enqueue(t, p, "k", jobs.Critical, `{}`)
	}
	for _, pr := range []jobs.Priority{jobs.High, jobs.Normal, jobs.Low, jobs.Low} {
		enqueue(t, p, "k", pr, `{}`)
	}
	running(t, p)
	testenv.Eventually(t, wait, "all items run", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == 104
	})
	firstLow := slices.Index(order, "low")
	lastCritical := len(order) - 1
	for order[lastCritical] != "critical" {
		lastCritical--
	}
	if firstLow < 0 || firstLow > 30 || firstLow > lastCritical {
		t.Fatalf("first low item ran at %d of %d (last critical at %d): low starves", firstLow, len(order), lastCritical)
	}
	if order[0] != "critical" {
		t.Fatalf("first run was %s, want critical", order[0])
	}
}

func TestCircuitBreakerOpensAndProbes(t *testing.T) {
	s := sqliteStore(t)
	p := jobs.NewProcessor(jobs.Config{Store: s, Workers: 1})
	var calls atomic.Int64
	var healthy atomic.Bool
	must(t, p.RegisterKind("smtp", func(context.Context, jobs.WorkItem) error {
		calls.Add(1)
		if healthy.Load() {
			return nil
		}
		return errors.New("smtp down")
	}, jobs.KindOptions{MaxAttempts: 1, BreakerFailures: 2, BreakerOpenFor: 2 * time.Second}))
	c := collect(t, p)
	running(t, p)
	a := enqueue(t, p, "smtp", jobs.Normal, `{}`)
	b := enqueue(t, p, "smtp", jobs.Normal, `{}`)
	waitState(t, s, a.ID, jobs.WorkFailed)
	waitState(t, s, b.ID, jobs.WorkFailed)
	// Two failures opened the breaker: the next item is held, not called.
	third := enqueue(t, p, "smtp", jobs.Normal, `{}`)
	testenv.Eventually(t, wait, "third item deferred by the open breaker", func() bool {
		for _, e := range c.all(jobs.EventWorkDeferred) {
			if e.Work.ID == third.ID && strings.Contains(e.Work.LastError, "circuit breaker open") {
				return true
			}
		}
		return false
	})
	if n := calls.Load(); n != 2 {
		t.Fatalf("handler called %d times while the breaker was open, want 2", n)
	}
	// After the open period a probe goes through; the service is back.
	healthy.Store(true)
	if w := waitState(t, s, third.ID, jobs.WorkDone); w.Attempts != 1 {
		t.Fatalf("deferrals must not use attempts: %d", w.Attempts)
	}
}

func TestRateLimitDefersWithoutFailing(t *testing.T) {
	s := sqliteStore(t)
	p := jobs.NewProcessor(jobs.Config{Store: s, Workers: 4})
	must(t, p.RegisterKind("resize", func(context.Context, jobs.WorkItem) error { return nil },
		jobs.KindOptions{Rate: 5, Burst: 1, MaxAttempts: 1}))
	c := collect(t, p)
	running(t, p)
	var items []jobs.WorkItem
	for range 6 {
		items = append(items, enqueue(t, p, "resize", jobs.Normal, `{}`))
	}
	for _, it := range items {
		if w := waitState(t, s, it.ID, jobs.WorkDone); w.Attempts != 1 {
			t.Fatalf("rate limiting used an attempt: %+v", w)
		}
	}
	if !c.has(jobs.EventWorkDeferred) {
		t.Fatal("6 items at 5/s with burst 1 must be deferred at least once")
	}
}

func TestShutdownDrainsWork(t *testing.T) {
	eachStore(t, func(t *testing.T, _ *gorm.DB, s jobs.Store) {
		p := jobs.NewProcessor(jobs.Config{Store: s, Workers: 2})
		must(t, p.RegisterKind("slowish", func(ctx context.Context, _ jobs.WorkItem) error {
			select {
			case <-time.After(5 * time.Millisecond):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}, jobs.KindOptions{}))
		done := make(chan error, 1)
		go func() { done <- p.Run(context.Background()) }()
		var items []jobs.WorkItem
		for range 20 {
			items = append(items, enqueue(t, p, "slowish", jobs.Normal, `{}`))
		}
		must(t, p.Shutdown(context.Background()))
		must(t, <-done)
		// A drain claims nothing more: the attempts in flight finish,
		// items claimed but not started go back to the table untouched
		// (the table is the queue; another process or the next start
		// runs them). Nothing is left running or counted as failed.
		for _, it := range items {
			if w := state(t, s, it.ID); w.State != jobs.WorkDone && (w.State != jobs.WorkPending || w.Attempts != 0) {
				t.Fatalf("item %s is %s with %d attempts after a drain with no deadline", it.ID, w.State, w.Attempts)
			}
		}
		if _, err := p.Enqueue(context.Background(), jobs.NewWork{Kind: "slowish"}); !errors.Is(err, jobs.ErrClosed) {
			t.Fatalf("Enqueue after shutdown = %v, want ErrClosed", err)
		}
		next := jobs.NewProcessor(jobs.Config{Store: s, Workers: 2})
		must(t, next.RegisterKind("slowish", func(context.Context, jobs.WorkItem) error { return nil }, jobs.KindOptions{}))
		running(t, next)
		for _, it := range items {
			waitState(t, s, it.ID, jobs.WorkDone)
		}
	})
}

// A drain that runs out of time leaves interrupted items pending, not
// running and not failed, and does not count the interrupted attempt.
func TestShutdownDeadlineLeavesItemsPending(t *testing.T) {
	eachStore(t, func(t *testing.T, _ *gorm.DB, s jobs.Store) {
		p := jobs.NewProcessor(jobs.Config{Store: s, Workers: 1})
		started := make(chan struct{}, 10)
		must(t, p.RegisterKind("stuck", func(ctx context.Context, _ jobs.WorkItem) error {
			started <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}, jobs.KindOptions{}))
		done := make(chan error, 1)
		go func() { done <- p.Run(context.Background()) }()
		a := enqueue(t, p, "stuck", jobs.Normal, `{}`)
		b := enqueue(t, p, "stuck", jobs.Normal, `{}`)
		<-started
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want the deadline", err)
		}
		must(t, <-done)
		for _, it := range []jobs.WorkItem{a, b} {
			if w := state(t, s, it.ID); w.State != jobs.WorkPending || w.Attempts != 0 {
				t.Fatalf("item %s: %s with %d attempts, want pending with 0", it.ID, w.State, w.Attempts)
			}
		}
	})
}

func TestPriorityNamesAndJSON(t *testing.T) {
	for _, p := range jobs.Priorities() {
		got, err := jobs.ParsePriority(p.String())
		if err != nil || got != p {
			t.Fatalf("ParsePriority(%q) = %v, %v", p, got, err)
		}
		b, err := json.Marshal(p)
		if err != nil || string(b) != `"`+p.String()+`"` {
			t.Fatalf("Marshal(%v) = %s, %v", p, b, err)
		}
		var back jobs.Priority
		if err := json.Unmarshal(b, &back); err != nil || back != p {
			t.Fatalf("Unmarshal(%s) = %v, %v", b, back, err)
		}
	}
	if p, err := jobs.ParsePriority(""); err != nil || p != jobs.Normal {
		t.Fatalf(`ParsePriority("") = %v, %v; want normal`, p, err)
	}
	if _, err := jobs.ParsePriority("urgent"); !errors.Is(err, jobs.ErrInvalidPriority) {
		t.Fatalf("ParsePriority(urgent) = %v", err)
	}
	if _, err := json.Marshal(jobs.Priority(9)); err == nil {
		t.Fatal("an invalid priority must not marshal")
	}
}

// Ids and errors that the database cannot hold as text (invalid UTF-8, NUL)
// are a client's unknown item and a stored, readable error, not a 500 or
// an item left running: PostgreSQL refuses such bytes.
func TestWorkTextTheDatabaseCannotHold(t *testing.T) {
	eachStore(t, func(t *testing.T, _ *gorm.DB, s jobs.Store) {
		p := jobs.NewProcessor(jobs.Config{Store: s, Workers: 1})
		must(t, p.RegisterKind("binary", func(context.Context, jobs.WorkItem) error {
			return errors.New("bad byte \xff and \x00 in the error")
		}, jobs.KindOptions{MaxAttempts: 1, BreakerFailures: -1}))
		running(t, p)
		for _, id := range []string{"\x00", "\xff", "abc\xc3"} {
			if _, err := p.Work(context.Background(), id); !errors.Is(err, jobs.ErrUnknownWork) {
				t.Errorf("Work(%q) = %v, want ErrUnknownWork", id, err)
			}
		}
		it := enqueue(t, p, "binary", jobs.Normal, "")
		w := waitState(t, s, it.ID, jobs.WorkFailed)
		if !strings.HasPrefix(w.LastError, "bad byte ") || strings.ContainsRune(w.LastError, 0) {
			t.Errorf("stored error %q", w.LastError)
		}
	})
}

// Items enqueued before Run are in the table already and run once each
// when the processor starts.
func TestItemsEnqueuedBeforeRunRunOnce(t *testing.T) {
	s := sqliteStore(t)
	p := jobs.NewProcessor(jobs.Config{Store: s, Workers: 1})
	var mu sync.Mutex
	runs := map[string]int{}
	must(t, p.RegisterKind("k", func(_ context.Context, w jobs.WorkItem) error {
		mu.Lock()
		runs[w.ID]++
		mu.Unlock()
		return nil
	}, jobs.KindOptions{}))
	a := enqueue(t, p, "k", jobs.Normal, `{}`)
	b := enqueue(t, p, "k", jobs.Normal, `{}`)
	running(t, p)
	for _, it := range []jobs.WorkItem{a, b} {
		if w := waitState(t, s, it.ID, jobs.WorkDone); w.Attempts != 1 {
			t.Errorf("item %s: %d attempts", it.ID, w.Attempts)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(runs) != 2 || runs[a.ID] != 1 || runs[b.ID] != 1 {
		t.Fatalf("runs %v, want each item once", runs)
	}
}
