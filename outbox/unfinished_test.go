package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// A publisher that hangs past its lease, ignoring its context, has its
// attempt cut short as if the process had died. The message is then sent
// alone; each cut while alone counts as a failure, and after MaxAttempts of
// them it is dead without one more send. The messages out with it the
// first time lose nothing, and the relay does not stall behind the hung
// workers. Leases run on a clock the test moves, so load cannot expire one.
func TestAttemptsCutShortCountTowardsDead(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		clock := newFakeClock()
		cfg := testConfig()
		cfg.Clock = clock.Now
		cfg.MaxAttempts = 3
		found := &logWatch{msg: logSuspectsFound, seen: make(chan struct{})}
		cfg.Logger = slog.New(found)
		r := newRelay(t, db, cfg)
		var sends atomic.Int32
		release := make(chan struct{})
		r.Register("hang", PublisherFunc(func(context.Context, Delivery) error {
			sends.Add(1)
			<-release // past PublishTimeout and the lease
			return errors.New("hung")
		}))
		ok := &recorder{}
		r.Register("ok", ok)
		stuck := addN(t, r, "hang", nil, 1)[0]
		okIDs := addN(t, r, "ok", nil, 3)
		stop := runRelay(t, r)
		var freeOnce sync.Once
		free := func() { freeOnce.Do(func() { close(release) }) }
		t.Cleanup(free) // before the relay's stop, which waits for the hung send
		sent := func(n int32) {
			t.Helper()
			testenv.Eventually(t, time.Minute, fmt.Sprintf("send %d of the hanging message", n), func() bool { return sends.Load() >= n })
		}
		sent(1)
		// Delivered and recorded: the clock jumps past every lease next.
		testenv.Eventually(t, time.Minute, "the others delivered", func() bool {
			for _, id := range okIDs {
				if statusOf(t, r, id) != StatusDispatched {
					return false
				}
			}
			return ok.count() == 3
		})

		// The lease ends; once the relay has found the suspect, the hung
		// worker is waited for PublishTimeout, then it goes out alone.
		clock.Advance(cfg.Lease + time.Second)
		select {
		case <-found.seen:
		case <-time.After(time.Minute):
			t.Fatal("the relay never found the suspect")
		}
		clock.Advance(cfg.PublishTimeout + time.Second)
		sent(2)
		// Each lease over, it goes alone again, a counted failure each time.
		for n := int32(3); n <= 4; n++ {
			clock.Advance(cfg.Lease + time.Second)
			sent(n)
		}
		clock.Advance(cfg.Lease + time.Second)
		testenv.Eventually(t, time.Minute, "the hanging message goes dead", func() bool {
			return statusOf(t, r, stuck) == StatusDead
		})
		free()
		stop()

		// Once with the others (not counted), then MaxAttempts times alone.
		if n := sends.Load(); n != 4 {
			t.Errorf("the hanging message was sent %d times, want 1 + MaxAttempts (3) and not once more", n)
		}
		if ok.count() != 3 {
			t.Errorf("%d other messages delivered, want 3", ok.count())
		}
		rec := mustGet(t, r, stuck)
		if rec.Attempts != 4 || rec.Failures != 3 || rec.LastError != unfinishedText {
			t.Errorf("dead message: %d attempts, %d failures, last error %q; want 4, 3 and the lease's", rec.Attempts, rec.Failures, rec.LastError)
		}
		if len(rec.AttemptLog) != 4 {
			t.Fatalf("attempt log has %d entries, want 4: %+v", len(rec.AttemptLog), rec.AttemptLog)
		}
		for i, a := range rec.AttemptLog {
			if a.Number != i+1 || !a.Unfinished {
				t.Errorf("attempt %d: %+v, want number %d cut short", i, a, i+1)
			}
		}
	})
}

// The attempt log shows every number the claims counted: recorded ones as
// they were, missing ones as cut short, and not the one under way (an
// inflight message whose lease holds; past it, that one was cut too).
func TestAttemptLogFillsCutAttempts(t *testing.T) {
	rows := []queue.Attempt{{Number: 1, Error: "503"}, {Number: 3}}
	now := time.Now()
	later, earlier := now.Add(time.Second), now.Add(-time.Second)
	tests := []struct {
		status Status
		n      int
		lease  *time.Time
		want   []bool // unfinished, per entry
	}{
		{StatusDispatched, 3, nil, []bool{false, true, false}},
		{StatusInflight, 4, &later, []bool{false, true, false}},
		{StatusInflight, 4, &earlier, []bool{false, true, false, true}},
		{StatusPending, 4, nil, []bool{false, true, false, true}},
		{StatusPending, 0, nil, []bool{}},
	}
	for _, tc := range tests {
		got := attemptLog(Record{Status: tc.status, Attempts: tc.n, LeaseUntil: tc.lease}, rows, now)
		if len(got) != len(tc.want) {
			t.Errorf("%s with %d attempts: %d entries, want %d", tc.status, tc.n, len(got), len(tc.want))
			continue
		}
		for i, a := range got {
			if a.Number != i+1 || a.Unfinished != tc.want[i] {
				t.Errorf("%s with %d attempts: entry %d = %+v, want number %d unfinished %v", tc.status, tc.n, i, a, i+1, tc.want[i])
			}
		}
	}
}

// addSuspects commits n messages of topic already inflight under an
// expired lease, as a process that claimed them and died leaves them. One
// transaction and no wake-up: no relay sees them pending first.
func addSuspects(t *testing.T, db *gorm.DB, topic string, n int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	err := db.Transaction(func(tx *gorm.DB) error {
		for i := range n {
			id, err := Add(ctx, tx, Message{Topic: topic, Payload: i})
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return tx.Exec(`UPDATE canal_queue_items SET state = 'running', lease_until_us = 1, attempt = 1, owner = 'dead-process'
  WHERE public_id IN ?`, ids).Error
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// Two suspects: the first one's publisher hangs (it ignores its context)
// past its lease. The second must not go out while the first is out under
// a live lease; the first, still the oldest suspect, is sent alone again
// instead. In the next life both are delivered and only the hanging one
// was charged. (Found by review: the second went out alongside.)
func TestSuspectsNeverOverlap(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		clock := newFakeClock()
		cfg := testConfig()
		cfg.Clock = clock.Now
		r1 := newRelay(t, db, cfg)
		frozen := make(chan struct{}) // the first life froze, then died
		var slowSends, okSends atomic.Int32
		r1.Register("slow", PublisherFunc(func(context.Context, Delivery) error {
			slowSends.Add(1)
			<-frozen
			return nil
		}))
		r1.Register("ok", PublisherFunc(func(context.Context, Delivery) error {
			okSends.Add(1)
			<-frozen
			return nil
		}))
		slow := addSuspects(t, db, "slow", 1)[0]
		innocent := addSuspects(t, db, "ok", 1)[0]

		ctx1, cancel1 := context.WithCancel(context.Background())
		done1 := make(chan struct{})
		go func() { _ = r1.Run(ctx1); close(done1) }()
		testenv.Eventually(t, time.Minute, "the first suspect sent alone", func() bool { return slowSends.Load() == 1 })
		time.Sleep(200 * time.Millisecond) // ten polls: the second must stay back
		clock.Advance(cfg.Lease + time.Second)
		testenv.Eventually(t, time.Minute, "the first suspect sent alone again", func() bool { return slowSends.Load() == 2 })
		time.Sleep(200 * time.Millisecond)
		cancel1() // this life claims nothing more: it is about to die
		if n := okSends.Load(); n != 0 {
			t.Errorf("the second suspect went out %d times while the first was out", n)
		}

		clock.Advance(cfg.Lease + time.Second) // the last lease is over
		r2 := newRelay(t, db, cfg)             // the next life
		r2.RegisterDefault(&recorder{})
		stop2 := runRelay(t, r2)
		testenv.Eventually(t, time.Minute, "both delivered", func() bool {
			return statusOf(t, r2, slow) == StatusDispatched && statusOf(t, r2, innocent) == StatusDispatched
		})
		stop2()
		close(frozen)
		<-done1
		if rec := mustGet(t, r2, innocent); rec.Failures != 0 {
			t.Errorf("the innocent message was charged %d failures (%q)", rec.Failures, rec.LastError)
		}
		if rec := mustGet(t, r2, slow); rec.Failures != 2 {
			t.Errorf("the hanging message was cut twice alone and charged %d failures, want 2", rec.Failures)
		}
	})
}

// logWatch is a slog handler that reports when a message is logged.
type logWatch struct {
	msg  string
	seen chan struct{}
	once sync.Once
}

func (w *logWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	if r.Message == w.msg {
		w.once.Do(func() { close(w.seen) })
	}
	return nil
}
func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *logWatch) WithGroup(string) slog.Handler      { return w }

// A worker held for ever by a publisher that ignores its context costs the
// suspects one PublishTimeout, counted from when they were found, not one
// each: on a clock stopped past that single wait, every suspect goes out.
// (Found by review: each suspect waited anew.)
func TestHungWorkerDelaysSuspectsOnce(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		clock := newFakeClock()
		cfg := testConfig()
		cfg.Clock = clock.Now
		found := &logWatch{msg: logSuspectsFound, seen: make(chan struct{})}
		cfg.Logger = slog.New(found)
		r := newRelay(t, db, cfg)
		hungStarted, forever := make(chan struct{}), make(chan struct{})
		defer close(forever)
		r.Register("hang", PublisherFunc(func(context.Context, Delivery) error { close(hungStarted); <-forever; return nil }))
		ok := &recorder{}
		r.Register("ok", ok)
		addN(t, r, "hang", nil, 1)
		runRelay(t, r)
		<-hungStarted

		ids := addSuspects(t, db, "ok", 6)
		select {
		case <-found.seen:
		case <-time.After(time.Minute):
			t.Fatal("the relay never found the suspects")
		}
		clock.Advance(cfg.PublishTimeout + time.Second)
		testenv.Eventually(t, time.Minute, "every suspect delivered without more time passing", func() bool {
			return ok.count() == len(ids)
		})
	})
}
