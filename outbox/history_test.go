package outbox

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// TestWindowCountsDispatchedAndDeadPerBucket has the engine finish
// messages as dispatched or dead at known times and reads them back per
// bucket.
func TestWindowCountsDispatchedAndDeadPerBucket(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		since := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
		r := newRelay(t, db, testConfig())
		finishAt := map[string]struct {
			state queue.State
			sec   int
		}{}
		var items []queue.NewItem
		for i, m := range []struct {
			state queue.State
			sec   int
		}{{queue.StateDone, -1}, {queue.StateDone, 0}, {queue.StateDone, 3}, {queue.StateDead, 4}, {queue.StateDead, 11},
			{queue.StateDone, 15}, {queue.StateDead, 16}} {
			id := fmt.Sprintf("m%d", i)
			finishAt[id] = m
			items = append(items, queue.NewItem{PublicID: id, Kind: "order.placed", Payload: []byte("{}"), CreatedAt: since.Add(-10 * time.Second)})
		}
		if err := db.Transaction(func(tx *gorm.DB) error {
			_, err := queue.Insert(ctx, r.drv, tx, queueName, since.Add(-10*time.Second), items...)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		claimed, err := r.drv.Claim(ctx, queue.ClaimRequest{Queue: queueName, Owner: "test", NowUS: since.Add(-5 * time.Second).UnixMicro(),
			LeaseUS: since.Add(time.Hour).UnixMicro(), Limit: len(items)})
		if err != nil || len(claimed) != len(items) {
			t.Fatalf("claimed %d of %d: %v", len(claimed), len(items), err)
		}
		for _, it := range claimed {
			m := finishAt[it.PublicID]
			at := since.Add(time.Duration(m.sec) * time.Second).UnixMicro()
			o := queue.Outcome{ID: it.ID, Owner: it.Owner, Attempt: it.Attempt, Queue: it.Queue, State: m.state,
				NowUS: at, StartedUS: at, Failures: 1, LastError: "refused", Error: "refused"}
			if ok, err := r.drv.Complete(ctx, []queue.Outcome{o}); err != nil || !ok[0] {
				t.Fatalf("complete %s: %v %v", it.PublicID, ok, err)
			}
		}
		addN(t, r, "order.placed", nil, 1) // pending: in no count

		w, err := r.Window(ctx, since, 5*time.Second, 3, 10)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(w.Dispatched) != "[2 0 0]" || fmt.Sprint(w.Dead) != "[1 0 1]" {
			t.Errorf("dispatched %v dead %v, want [2 0 0] and [1 0 1]", w.Dispatched, w.Dead)
		}
		if len(w.RecentDead) != 2 || w.RecentDead[0].ID != "m4" || w.RecentDead[1].ID != "m3" || !w.DeadAt[1].Equal(since.Add(4*time.Second)) {
			t.Errorf("recent dead %+v at %v, want m4 then m3 at +4s", w.RecentDead, w.DeadAt)
		}
		if _, err := r.Window(ctx, since, 0, 3, 10); err == nil {
			t.Error("a zero bucket was accepted")
		}
	})
}

// TestListFiltersByKey lists one key's messages only.
func TestListFiltersByKey(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		r := newRelay(t, db, testConfig())
		ids := addN(t, r, "order.placed", []string{"cust-1", "cust-2"}, 5)
		page, err := r.List(context.Background(), ListFilter{Key: "cust-2"})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) != 2 || page.Items[0].ID != ids[3] || page.Items[1].ID != ids[1] {
			t.Errorf("key cust-2 lists %+v, want messages 4 and 2, newest first", page.Items)
		}
	})
}

// The relay's figures (counts, dispatch rate, commit-to-dispatch latency)
// are read from the table: a process that sent nothing, or started after
// the sends, shows what the process that sent them showed.
func TestStatsAreClusterFigures(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		sender := newRelay(t, db, testConfig())
		rec := &recorder{}
		sender.Register("order.placed", rec)
		stopSender := runRelay(t, sender)
		addN(t, sender, "order.placed", nil, 6)
		testenv.Eventually(t, 10*time.Second, "six dispatched", func() bool {
			s, err := sender.Stats(ctx)
			return err == nil && s.Dispatched == 6
		})
		stopSender()

		// Another process, running but with nothing to send, and one
		// not running (it reads on demand).
		other := newRelay(t, db, testConfig())
		runRelay(t, other)
		idle := newRelay(t, db, testConfig())
		var a, b Stats
		// The running one's figures are its snapshots: wait for one.
		deadline := time.After(10 * time.Second)
		for a.Dispatched != 6 {
			select {
			case ev := <-other.Events():
				if ev.Type == EventStats && ev.Stats != nil {
					a = *ev.Stats
				}
			case <-deadline:
				t.Fatal("no snapshot of the other process")
			}
		}
		b, err := idle.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for name, s := range map[string]Stats{"running": a, "not running": b} {
			if s.DispatchRate != 6.0/60 || s.LatencyP50Ms <= 0 || s.LatencyP99Ms < s.LatencyP50Ms {
				t.Errorf("%s process: rate %v/s, p50 %v ms, p99 %v ms; want 0.1/s (the sender's six in the last minute) and its latencies",
					name, s.DispatchRate, s.LatencyP50Ms, s.LatencyP99Ms)
			}
		}
		if a.LatencyP99Ms != b.LatencyP99Ms || a.LatencyP50Ms != b.LatencyP50Ms {
			t.Errorf("two processes read different latencies: %+v and %+v", a, b)
		}
	})
}
