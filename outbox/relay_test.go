package outbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

func TestRelayDeliversAndRecords(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		r := newRelay(t, db, testConfig())
		pub := &recorder{}
		r.RegisterDefault(pub)
		runRelay(t, r)

		ctx := WithTraceparent(context.Background(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		var id string
		err := r.Transaction(ctx, func(tx *gorm.DB) error {
			var err error
			id, err = Add(ctx, tx, Message{Topic: "order.placed", Key: "o-1", Payload: map[string]any{"amount": 42}, Headers: map[string]string{"x-a": "b"}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 10*time.Second, "message dispatched", func() bool { return statusOf(t, r, id) == StatusDispatched })

		got := pub.deliveries()
		if len(got) != 1 {
			t.Fatalf("deliveries = %d, want 1", len(got))
		}
		d := got[0]
		if d.ID != id || d.Topic != "order.placed" || d.Key != "o-1" || string(d.Payload) != `{"amount":42}` || d.Attempt != 1 {
			t.Errorf("delivery = %+v", d)
		}
		if d.Headers["traceparent"] == "" || d.Headers["x-a"] != "b" {
			t.Errorf("headers = %v", d.Headers)
		}
		rec := mustGet(t, r, id)
		if len(rec.AttemptLog) != 1 || rec.AttemptLog[0].Number != 1 || rec.AttemptLog[0].Error != "" || rec.DispatchedAt == nil {
			t.Errorf("record = %+v", rec)
		}
		if rec.CreatedAt.Location() != time.UTC || rec.DispatchedAt.Location() != time.UTC {
			t.Errorf("times not UTC: %v %v", rec.CreatedAt, rec.DispatchedAt)
		}
	})
}

func TestAddIsTransactional(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		r := newRelay(t, db, testConfig())
		var id string
		boom := errors.New("business rule failed")
		err := r.Transaction(context.Background(), func(tx *gorm.DB) error {
			var err error
			if id, err = Add(context.Background(), tx, Message{Topic: "t", Payload: 1}); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Transaction err = %v", err)
		}
		if _, err := r.Get(context.Background(), id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("rolled-back message: Get err = %v, want ErrNotFound", err)
		}
	})
}

// Messages of one key are published one at a time in commit order while
// different keys go in parallel.
func TestRelayOrdersPerKeyUnderParallelDispatch(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		cfg := testConfig()
		cfg.Workers = 8
		r := newRelay(t, db, cfg)

		const keys, perKey = 12, 25
		var (
			mu       sync.Mutex
			order    = map[string][]string{}
			inKey    = map[string]bool{}
			active   atomic.Int32
			peak     atomic.Int32
			overlaps atomic.Int32
		)
		r.RegisterDefault(PublisherFunc(func(ctx context.Context, d Delivery) error {
			mu.Lock()
			if inKey[d.Key] {
				overlaps.Add(1)
			}
			inKey[d.Key] = true
			mu.Unlock()
			n := active.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
			active.Add(-1)
			mu.Lock()
			order[d.Key] = append(order[d.Key], d.ID)
			inKey[d.Key] = false
			mu.Unlock()
			return nil
		}))
		var ks []string
		for i := range keys {
			ks = append(ks, fmt.Sprintf("k%02d", i))
		}
		// Commit the backlog first so that many keys are claimable at once.
		ids := addN(t, r, "ordered", ks, keys*perKey)
		runRelay(t, r)
		total := func() int {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, v := range order {
				n += len(v)
			}
			return n
		}
		testenv.Eventually(t, 60*time.Second, "all dispatched", func() bool { return total() == len(ids) })

		want := map[string][]string{}
		for i, id := range ids {
			want[ks[i%keys]] = append(want[ks[i%keys]], id)
		}
		mu.Lock()
		defer mu.Unlock()
		for k, w := range want {
			if !slices.Equal(order[k], w) {
				t.Errorf("key %s: published in order %v, committed %v", k, order[k], w)
			}
		}
		if o := overlaps.Load(); o != 0 {
			t.Errorf("%d publishes overlapped another of the same key", o)
		}
		if p := peak.Load(); p < 2 {
			t.Errorf("peak parallel publishes = %d, want > 1 (different keys go in parallel)", p)
		}
	})
}

func TestRelayRetriesThenDeadLetters(t *testing.T) {
	tests := []struct {
		name      string
		policy    DeadPolicy
		nextFlows bool // does the next message of the dead one's key get through?
	}{
		{"block key", BlockKey, false},
		{"set aside", SetAside, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dialects(t, func(t *testing.T, db *gorm.DB) {
				cfg := testConfig()
				cfg.MaxAttempts = 3
				cfg.DeadPolicies = map[string]DeadPolicy{"pay": tc.policy}
				r := newRelay(t, db, cfg)
				var broken atomic.Bool
				broken.Store(true)
				pub := &recorder{fail: func(d Delivery) error {
					if broken.Load() && string(d.Payload) == `"poison"` {
						return MessageError(errors.New("receiver said no"))
					}
					return nil
				}}
				r.Register("pay", pub)

				var poison, next, other string
				err := r.Transaction(context.Background(), func(tx *gorm.DB) error {
					var err error
					if poison, err = Add(context.Background(), tx, Message{Topic: "pay", Key: "acct-1", Payload: "poison"}); err != nil {
						return err
					}
					if next, err = Add(context.Background(), tx, Message{Topic: "pay", Key: "acct-1", Payload: "next"}); err != nil {
						return err
					}
					other, err = Add(context.Background(), tx, Message{Topic: "pay", Key: "acct-2", Payload: "other"})
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				runRelay(t, r)
				testenv.Eventually(t, 20*time.Second, "poison dead", func() bool { return statusOf(t, r, poison) == StatusDead })
				testenv.Eventually(t, 20*time.Second, "other key dispatched", func() bool { return statusOf(t, r, other) == StatusDispatched })

				rec := mustGet(t, r, poison)
				if rec.Attempts != 3 || len(rec.AttemptLog) != 3 || rec.LastError != "receiver said no" || rec.BlocksKey == tc.nextFlows {
					t.Fatalf("dead record = %+v", rec)
				}
				for i, a := range rec.AttemptLog {
					if a.Number != i+1 || a.Error != "receiver said no" || a.StartedAt.IsZero() {
						t.Errorf("attempt %d = %+v", i, a)
					}
				}
				if tc.nextFlows {
					testenv.Eventually(t, 20*time.Second, "next dispatched past the set-aside message", func() bool { return statusOf(t, r, next) == StatusDispatched })
				} else {
					// The other key was claimed after the dead one died or
					// at the same time; a claim after both proves next was
					// held back: add one more message and wait for it.
					late := addN(t, r, "pay", []string{"acct-3"}, 1)[0]
					testenv.Eventually(t, 20*time.Second, "late dispatched", func() bool { return statusOf(t, r, late) == StatusDispatched })
					if st := statusOf(t, r, next); st != StatusPending {
						t.Fatalf("next of a blocking dead message is %s, want pending", st)
					}
				}

				// A retry by hand delivers it with a fresh budget.
				broken.Store(false)
				if _, err := r.Retry(context.Background(), poison); err != nil {
					t.Fatalf("Retry: %v", err)
				}
				testenv.Eventually(t, 20*time.Second, "retried poison dispatched", func() bool { return statusOf(t, r, poison) == StatusDispatched })
				testenv.Eventually(t, 20*time.Second, "next dispatched", func() bool { return statusOf(t, r, next) == StatusDispatched })
				if rec := mustGet(t, r, poison); rec.Attempts != 4 || len(rec.AttemptLog) != 4 {
					t.Errorf("after retry: attempts = %d, log = %d, want 4", rec.Attempts, len(rec.AttemptLog))
				}
				var order []string
				for _, d := range pub.deliveries() {
					if d.Key == "acct-1" {
						order = append(order, string(d.Payload))
					}
				}
				want := []string{`"poison"`, `"next"`}
				if tc.nextFlows {
					want = []string{`"next"`, `"poison"`}
				}
				if !slices.Equal(order, want) {
					t.Errorf("acct-1 delivered %v, want %v", order, want)
				}
			})
		})
	}
}

// A process that claimed a message and died leaves a lease; once it expires
// another relay delivers the message.
func TestRelayReclaimsExpiredLease(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		clock := newFakeClock()
		cfg := testConfig()
		cfg.Clock = clock.Now
		r := newRelay(t, db, cfg)
		pub := &recorder{}
		r.RegisterDefault(pub)
		crashed := addN(t, r, "t", []string{"k"}, 1)[0]

		// The dead process: it claims with its own token and never finishes.
		now := clock.Now()
		rows, err := r.drv.Claim(context.Background(), queue.ClaimRequest{Queue: queueName, Owner: "dead-process",
			NowUS: now.UnixMicro(), LeaseUS: now.Add(cfg.Lease).UnixMicro(), Limit: 10})
		if err != nil || len(rows) != 1 || rows[0].PublicID != crashed {
			t.Fatalf("claim = %v, %v", rows, err)
		}
		runRelay(t, r)

		// A later keyless message is claimed and dispatched while the lease
		// holds: proof that a claim ran and skipped the leased one.
		probe := addN(t, r, "t", nil, 1)[0]
		testenv.Eventually(t, 60*time.Second, "probe dispatched", func() bool { return statusOf(t, r, probe) == StatusDispatched })
		if st := statusOf(t, r, crashed); st != StatusInflight {
			t.Fatalf("leased message is %s before its lease expired, want inflight", st)
		}

		clock.Advance(cfg.Lease + time.Second)
		testenv.Eventually(t, 60*time.Second, "crashed message redelivered", func() bool { return statusOf(t, r, crashed) == StatusDispatched })
		rec := mustGet(t, r, crashed)
		// Attempt 1 died with its process: the log shows it cut short, and
		// as it was out with others (a batch), it is no failure.
		if rec.Attempts != 2 || rec.Failures != 0 || len(rec.AttemptLog) != 2 ||
			!rec.AttemptLog[0].Unfinished || rec.AttemptLog[1].Number != 2 || rec.AttemptLog[1].Unfinished {
			t.Errorf("record = %+v", rec)
		}
		// The dead process cannot overwrite what the live relay recorded.
		ok, err := r.drv.Complete(context.Background(), []queue.Outcome{{ID: rows[0].ID, Owner: "dead-process", Attempt: 1,
			Queue: queueName, Key: "k", State: queue.StatePending, NowUS: now.UnixMicro()}})
		if err != nil || ok[0] {
			t.Errorf("finish with a lost lease = %v, %v; want false, nil", ok, err)
		}
	})
}

// Stopping the relay lets the publish in flight finish and records it, so no
// lease is left to expire.
func TestRelayStopFinishesInflight(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		r := newRelay(t, db, testConfig())
		started, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		r.RegisterDefault(PublisherFunc(func(ctx context.Context, d Delivery) error {
			once.Do(func() { close(started) })
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}))
		id := addN(t, r, "t", nil, 1)[0]
		stop := runRelay(t, r)
		<-started
		stopped := make(chan struct{})
		go func() { stop(); close(stopped) }()
		close(release)
		<-stopped
		if st := statusOf(t, r, id); st != StatusDispatched {
			t.Fatalf("after stop: %s, want dispatched", st)
		}
	})
}

func TestRelayCleansUpDispatchedOnly(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		clock := newFakeClock()
		cfg := testConfig()
		cfg.Clock = clock.Now
		cfg.MaxAttempts = 1
		cfg.Retention = time.Hour
		cfg.CleanupInterval = 20 * time.Millisecond
		cfg.CleanupBatch = 3 // several batches
		r := newRelay(t, db, cfg)
		r.Register("ok", &recorder{})
		r.Register("bad", PublisherFunc(func(context.Context, Delivery) error { return MessageError(errors.New("no")) }))
		ok := addN(t, r, "ok", nil, 10)
		bad := addN(t, r, "bad", nil, 1)[0]
		runRelay(t, r)
		testenv.Eventually(t, 10*time.Second, "all final", func() bool {
			s, err := r.drv.Count(context.Background(), queueName, "", CountCap)
			return err == nil && s[queue.StateDone] == 10 && s[queue.StateDead] == 1
		})
		if _, err := r.Get(context.Background(), ok[0]); err != nil {
			t.Fatalf("dispatched message cleaned before its retention: %v", err)
		}
		clock.Advance(2 * time.Hour)
		testenv.Eventually(t, 10*time.Second, "dispatched cleaned", func() bool {
			p, err := r.List(context.Background(), ListFilter{Status: StatusDispatched})
			return err == nil && len(p.Items) == 0
		})
		if rec := mustGet(t, r, bad); rec.Status != StatusDead {
			t.Errorf("dead message: %+v", rec)
		}
	})
}

func TestRelayStatsAndEvents(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		cfg := testConfig()
		cfg.StatsInterval = time.Hour // only the one at start
		r := newRelay(t, db, cfg)
		r.RegisterDefault(&recorder{})
		addN(t, r, "t", nil, 2) // before Run: counted as pending by the first stats
		// The two "added" events are already in the channel.
		for _, want := range []string{EventAdded, EventAdded} {
			if ev := <-r.Events(); ev.Type != want || ev.Message == nil {
				t.Fatalf("event = %+v, want %s", ev, want)
			}
		}
		runRelay(t, r)
		seen := map[string]int{}
		var first *Stats
		timeout := time.After(20 * time.Second)
		for seen[EventDispatched] < 2 {
			select {
			case ev := <-r.Events():
				seen[ev.Type]++
				if ev.Type == EventStats && first == nil {
					first = ev.Stats
				}
			case <-timeout:
				t.Fatalf("events seen: %v", seen)
			}
		}
		if first == nil || first.Pending+first.Inflight+first.Dispatched != 2 {
			t.Fatalf("first stats = %+v, want the 2 messages counted", first)
		}
	})
}

func TestRelayEventsNeverBlock(t *testing.T) {
	db := testenv.SQLite(t)
	if err := Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.EventBuffer = 1 // nobody reads
	r := newRelay(t, db, cfg)
	pub := &recorder{}
	r.RegisterDefault(pub)
	runRelay(t, r)
	addN(t, r, "t", nil, 20)
	testenv.Eventually(t, 20*time.Second, "all dispatched with a full event channel", func() bool { return pub.count() == 20 })
	if r.events.Dropped() == 0 {
		t.Fatal("no event counted as dropped")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	db := testenv.SQLite(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"publish timeout not under lease", Config{Lease: time.Second, PublishTimeout: time.Second}},
		{"negative workers", Config{Workers: -1}},
		{"negative poll", Config{PollInterval: -time.Second}},
		{"backoff max under base", Config{BackoffBase: time.Minute, BackoffMax: time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(db, tc.cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestBackoffGrowsWithJitterAndCap(t *testing.T) {
	r := &Relay{cfg: Config{BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second}}
	tests := []struct {
		failures int
		lo, hi   time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{10, 500 * time.Millisecond, time.Second},
	}
	for _, tc := range tests {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := r.backoff(tc.failures)
			if d < tc.lo || d > tc.hi {
				t.Fatalf("backoff(%d) = %s, want in [%s, %s]", tc.failures, d, tc.lo, tc.hi)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("backoff(%d) has no jitter", tc.failures)
		}
	}
}

// A set-aside dead message retried by hand while a later message of its key
// is in flight waits for it: one message of a key at a time, always.
func TestRetriedSetAsideWaitsForInflightOfItsKey(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		cfg := testConfig()
		cfg.MaxAttempts = 1
		cfg.DefaultDeadPolicy = SetAside
		r := newRelay(t, db, cfg)
		release := make(chan struct{})
		var failFirst atomic.Bool
		failFirst.Store(true)
		var active, overlaps atomic.Int32
		pub := &recorder{fail: func(d Delivery) error {
			if d.Key == "" {
				return nil
			}
			if active.Add(1) > 1 {
				overlaps.Add(1)
			}
			defer active.Add(-1)
			if string(d.Payload) == `"first"` && failFirst.Load() {
				return MessageError(errors.New("no"))
			}
			if string(d.Payload) == `"second"` {
				<-release
			}
			return nil
		}}
		r.RegisterDefault(pub)
		var first, second string
		err := r.Transaction(context.Background(), func(tx *gorm.DB) error {
			var err error
			if first, err = Add(context.Background(), tx, Message{Topic: "t", Key: "K", Payload: "first"}); err != nil {
				return err
			}
			second, err = Add(context.Background(), tx, Message{Topic: "t", Key: "K", Payload: "second"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		runRelay(t, r)
		var releaseOnce sync.Once
		letGo := func() { releaseOnce.Do(func() { close(release) }) }
		t.Cleanup(letGo) // before the relay's stop, which waits for the publish
		testenv.Eventually(t, 10*time.Second, "second in flight past the dead first", func() bool {
			return statusOf(t, r, first) == StatusDead && statusOf(t, r, second) == StatusInflight
		})
		failFirst.Store(false)
		if _, err := r.Retry(context.Background(), first); err != nil {
			t.Fatal(err)
		}
		probe := addN(t, r, "t", nil, 1)[0]
		testenv.Eventually(t, 10*time.Second, "probe dispatched", func() bool { return statusOf(t, r, probe) == StatusDispatched })
		if st := statusOf(t, r, first); st != StatusPending {
			t.Fatalf("retried message is %s while its key has one in flight, want pending", st)
		}
		letGo()
		testenv.Eventually(t, 10*time.Second, "both dispatched", func() bool {
			return statusOf(t, r, first) == StatusDispatched && statusOf(t, r, second) == StatusDispatched
		})
		if n := overlaps.Load(); n != 0 {
			t.Errorf("%d overlapping publishes on one key", n)
		}
	})
}

// A publisher's error may quote bytes a receiver sent back (a webhook's
// response body) that PostgreSQL refuses in text: invalid UTF-8, NUL. The
// attempt must still be recorded, so the message counts its failures and goes
// dead, rather than failing the recording transaction and being sent again
// at every lease expiry, with every other message of its batch.
func TestRelayRecordsErrorsWithBytesTheDatabaseRefuses(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		cfg := testConfig()
		cfg.MaxAttempts = 2
		cfg.Lease, cfg.PublishTimeout = 2*time.Second, time.Second
		r := newRelay(t, db, cfg)
		r.Register("bad", PublisherFunc(func(context.Context, Delivery) error {
			return MessageError(errors.New("webhook: 422: " + strings.Repeat("é", 3000) + "\xff\x00 tail"))
		}))
		stop := runRelay(t, r)
		defer stop()
		id := addN(t, r, "bad", nil, 1)[0]
		testenv.Eventually(t, 5*time.Second, "dead after 2 attempts", func() bool {
			return statusOf(t, r, id) == StatusDead
		})
		rec := mustGet(t, r, id)
		if len(rec.AttemptLog) != 2 || !utf8.ValidString(rec.LastError) || strings.ContainsRune(rec.LastError, 0) ||
			len(rec.LastError) > queue.MaxText || !strings.HasPrefix(rec.LastError, "webhook: 422: é") {
			t.Errorf("attempts %d, last error %q…", len(rec.AttemptLog), rec.LastError[:min(40, len(rec.LastError))])
		}
	})
}
