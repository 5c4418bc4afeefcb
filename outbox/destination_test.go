package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// switchable is a destination that refuses every message while down, as a
// receiver that is away does (connection refused: a destination error).
type switchable struct {
	recorder
	down  atomic.Bool
	calls atomic.Int64 // every call, delivered or not
}

func newSwitchable() *switchable {
	s := &switchable{}
	s.fail = func(Delivery) error {
		if s.down.Load() {
			return errors.New("dial tcp 127.0.0.1:9: connect: connection refused")
		}
		return nil
	}
	return s
}

func (s *switchable) Publish(ctx context.Context, d Delivery) error {
	s.calls.Add(1)
	return s.recorder.Publish(ctx, d)
}

// byKey is what p delivered of each key, payloads in order of delivery.
func byKey(p *recorder) map[string][]string {
	out := map[string][]string{}
	for _, d := range p.deliveries() {
		out[d.Key] = append(out[d.Key], string(d.Payload))
	}
	return out
}

// wantByKey is addN's payloads per key in commit order.
func wantByKey(keys []string, n int) map[string][]string {
	out := map[string][]string{}
	for i := range n {
		k := keys[i%len(keys)]
		out[k] = append(out[k], fmt.Sprintf(`{"n":%d}`, i))
	}
	return out
}

// advancing moves clock by step every real tick until the test ends or
// stop is called: the relay's time runs fast, the breaker's (real) does
// not.
func advancing(t *testing.T, clock *fakeClock, step time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				clock.Advance(step)
			}
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

func outageConfig(clock *fakeClock) Config {
	cfg := testConfig()
	cfg.Clock = clock.Now
	// Leases never expire on the fast clock: nothing is rescued.
	cfg.Lease, cfg.PublishTimeout = 24*time.Hour, 5*time.Second
	cfg.MaxAttempts = 3 // an outage must spend none of them
	cfg.BackoffBase, cfg.BackoffMax = time.Second, time.Minute
	cfg.BreakerFailures = 3
	cfg.BreakerOpen = 50 * time.Millisecond
	return cfg
}

// A receiver down for 10 minutes (of the relay's clock) strands nothing:
// its messages wait without spending attempts, and once it is back every
// one arrives by itself, once, in key order. While it is down its breaker
// is open and it is hardly called.
func TestRelayWaitsOutADownDestination(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		clock := newFakeClock()
		cfg := outageConfig(clock)
		r := newRelay(t, db, cfg)
		pub := newSwitchable()
		r.RegisterDefault(Named("webhook", pub))
		pub.down.Store(true)
		keys := []string{"a", "b", "c"}
		const n = 30
		ids := addN(t, r, "orders", keys, n)
		runRelay(t, r)

		// Ten minutes of the relay's time, in jumps of 3 s.
		began, start := time.Now(), clock.Now()
		sawOpen := false
		for clock.Now().Sub(start) < 10*time.Minute {
			clock.Advance(3 * time.Second)
			time.Sleep(5 * time.Millisecond)
			for _, d := range r.Destinations() {
				sawOpen = sawOpen || (d.Name == "webhook" && d.State == BreakerOpen)
			}
		}
		downFor := time.Since(began)
		if !sawOpen {
			t.Errorf("the breaker of the down destination was never seen open: %+v", r.Destinations())
		}
		// Without a breaker each of the 3 heads would be tried at every
		// jump (200 of them); with it, about once per open period.
		if calls, most := pub.calls.Load(), int64(3*cfg.BreakerFailures)+3*int64(downFor/cfg.BreakerOpen)+10; calls > most {
			t.Errorf("%d calls to the down destination in %s, want at most %d (the breaker holds them)", calls, downFor.Round(time.Millisecond), most)
		}
		for _, id := range ids {
			rec := mustGet(t, r, id)
			if rec.Status == StatusDead || rec.Failures != 0 {
				t.Fatalf("after a 10-minute outage %s is %s with %d failures, want waiting with none", id, rec.Status, rec.Failures)
			}
		}

		pub.down.Store(false)
		advancing(t, clock, time.Second)
		back := time.Now()
		testenv.Eventually(t, 30*time.Second, "every message delivered after the outage", func() bool { return pub.count() == n })
		t.Logf("all %d delivered %s after the destination came back", n, time.Since(back).Round(time.Millisecond))
		if got, want := byKey(&pub.recorder), wantByKey(keys, n); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("delivered per key %v, want %v (each once, in commit order)", got, want)
		}
		testenv.Eventually(t, 10*time.Second, "all dispatched", func() bool {
			for _, id := range ids {
				if statusOf(t, r, id) != StatusDispatched {
					return false
				}
			}
			return true
		})
		for _, id := range ids {
			if rec := mustGet(t, r, id); rec.Attempts != 1 || rec.Failures != 0 {
				t.Errorf("%s: attempts %d, failures %d after the outage, want 1 and 0", id, rec.Attempts, rec.Failures)
			}
		}
		if d := r.Destinations(); len(d) != 1 || d[0].State != BreakerClosed {
			t.Errorf("destinations after the outage = %+v, want webhook closed", d)
		}
	})
}

// A fan-out to two named destinations, one of them down: the other gets
// each message exactly once (the message keeps who has it), the down one
// gets each once when it is back, in key order, and the message page
// shows where it already went. Key order holds across the fan-out: a key's
// later messages wait for its first to reach both, while keyless ones
// reach the live destination at once.
func TestFanoutSendsOnceToEachDestination(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		clock := newFakeClock()
		cfg := outageConfig(clock)
		r := newRelay(t, db, cfg)
		up, cut := newSwitchable(), newSwitchable()
		r.Register("orders", Fanout(Named("amqp", up), Named("redis", cut)))
		cut.down.Store(true)
		keys := []string{"a", "b", ""}
		const n = 30
		ids := addN(t, r, "orders", keys, n)
		heads := map[string]bool{ids[0]: true, ids[1]: true}
		keyless := map[string]bool{}
		for i, id := range ids {
			if keys[i%len(keys)] == "" {
				keyless[id] = true
			}
		}
		runRelay(t, r)
		advancing(t, clock, 500*time.Millisecond)

		want := len(heads) + len(keyless)
		testenv.Eventually(t, 20*time.Second, "the live destination has the heads and the keyless", func() bool { return up.count() == want })
		// Many more rounds while the other is down.
		time.Sleep(20 * cfg.BreakerOpen)
		if got := up.count(); got != want {
			t.Fatalf("the live destination got %d deliveries during the cut, want %d (each once)", got, want)
		}
		for _, id := range ids {
			rec := mustGet(t, r, id)
			wantTo := []string(nil)
			if heads[id] || keyless[id] {
				wantTo = []string{"amqp"}
			}
			waiting := rec.Status == StatusPending || rec.Status == StatusInflight // claimed, to be given back
			if !waiting || !slices.Equal(rec.DeliveredTo, wantTo) || rec.Failures != 0 {
				t.Fatalf("%s during the cut: status %s, delivered to %v, failures %d; want waiting, %v, 0", id, rec.Status, rec.DeliveredTo, rec.Failures, wantTo)
			}
			if _, leak := rec.Headers[DeliveredMeta]; leak {
				t.Errorf("%s shows the delivery state among its headers", id)
			}
		}
		for _, d := range up.deliveries() {
			if _, leak := d.Headers[DeliveredMeta]; leak {
				t.Fatalf("a publisher saw the delivery state in the headers: %v", d.Headers)
			}
		}
		states := map[string]BreakerState{}
		for _, d := range r.Destinations() {
			states[d.Name] = d.State
		}
		if states["amqp"] != BreakerClosed || states["redis"] == BreakerClosed {
			t.Errorf("breakers during the cut = %v, want amqp closed and redis not", states)
		}

		cut.down.Store(false)
		testenv.Eventually(t, 30*time.Second, "the cut destination has every message", func() bool { return cut.count() == n })
		testenv.Eventually(t, 30*time.Second, "all dispatched", func() bool {
			for _, id := range ids {
				if statusOf(t, r, id) != StatusDispatched {
					return false
				}
			}
			return true
		})
		for name, p := range map[string]*switchable{"live": up, "cut": cut} {
			got, wantK := byKey(&p.recorder), wantByKey(keys, n)
			slices.Sort(got[""])
			slices.Sort(wantK[""]) // keyless: any order
			if fmt.Sprint(got) != fmt.Sprint(wantK) {
				t.Errorf("%s destination got %v, want %v (each once, keys in order)", name, got, wantK)
			}
		}
		if rec := mustGet(t, r, ids[0]); !slices.Equal(rec.DeliveredTo, []string{"amqp", "redis"}) {
			t.Errorf("delivered to %v, want [amqp redis]", rec.DeliveredTo)
		}
	})
}

// A message error spends attempts while the destination stays up: the
// message goes dead after its topic's budget (Budgets overriding
// MaxAttempts), and its destination's breaker stays closed.
func TestMessageErrorsSpendTheTopicsBudget(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		cfg := testConfig()
		cfg.MaxAttempts = 5
		cfg.BreakerFailures = 1 // a destination error would open it at once
		cfg.Budgets = map[string]Budget{"short": {MaxAttempts: 2}}
		cfg.DefaultDeadPolicy = SetAside
		r := newRelay(t, db, cfg)
		pub := &recorder{fail: func(d Delivery) error {
			if string(d.Payload) == `"bad"` {
				return MessageError(errors.New("webhook: 422 Unprocessable Entity"))
			}
			return nil
		}}
		r.RegisterDefault(Named("webhook", pub))
		var short, long, fine string
		err := r.Transaction(context.Background(), func(tx *gorm.DB) error {
			var err error
			if short, err = Add(context.Background(), tx, Message{Topic: "short", Payload: "bad"}); err != nil {
				return err
			}
			if long, err = Add(context.Background(), tx, Message{Topic: "long", Payload: "bad"}); err != nil {
				return err
			}
			fine, err = Add(context.Background(), tx, Message{Topic: "long", Payload: "fine"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		runRelay(t, r)
		testenv.Eventually(t, 20*time.Second, "both bad ones dead", func() bool {
			return statusOf(t, r, short) == StatusDead && statusOf(t, r, long) == StatusDead
		})
		for id, want := range map[string]int{short: 2, long: 5} {
			if rec := mustGet(t, r, id); rec.Failures != want || len(rec.AttemptLog) != want {
				t.Errorf("%s dead after %d failures (%d attempts logged), want %d", id, rec.Failures, len(rec.AttemptLog), want)
			}
		}
		testenv.Eventually(t, 10*time.Second, "the good one dispatched", func() bool { return statusOf(t, r, fine) == StatusDispatched })
		if d := r.Destinations(); len(d) != 1 || d[0].State != BreakerClosed {
			t.Errorf("destinations = %+v, want webhook closed: message errors say the destination is up", d)
		}
	})
}

func TestMessageErrorClassification(t *testing.T) {
	base := errors.New("x")
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{base, false},
		{MessageError(base), true},
		{fmt.Errorf("wrapped: %w", MessageError(base)), true},
		{errors.Join(base, MessageError(base)), true},
		{context.DeadlineExceeded, false},
	} {
		if got := IsMessageError(tc.err); got != tc.want {
			t.Errorf("IsMessageError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if MessageError(nil) != nil {
		t.Error("MessageError(nil) != nil")
	}
	if !errors.Is(MessageError(base), base) {
		t.Error("MessageError hides its cause from errors.Is")
	}
}

func TestBudgetsAreValidated(t *testing.T) {
	for _, b := range []Budget{{MaxAttempts: -1}, {BackoffBase: time.Hour, BackoffMax: time.Second}} {
		if _, err := New(testenv.SQLite(t), Config{Budgets: map[string]Budget{"t": b}}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("budget %+v: err = %v, want ErrInvalidConfig", b, err)
		}
	}
	c, err := Config{Budgets: map[string]Budget{"t": {MaxAttempts: 3}}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if b := c.budget("t"); b.MaxAttempts != 3 || b.BackoffMax != time.Hour {
		t.Errorf("budget of t = %+v, want 3 attempts and the default 1 h cap", b)
	}
	if b := c.budget("other"); b.MaxAttempts != 25 || b.BackoffBase != time.Second {
		t.Errorf("default budget = %+v, want 25 attempts from 1 s", b)
	}
}
