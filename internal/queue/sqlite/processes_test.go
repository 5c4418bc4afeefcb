package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/queue"
)

// Process.List shows every process row with its version, this process as
// self, one that missed LostAfter heartbeats as lost, and no longer one
// lost for more than ListLostFor.
func TestProcessListMarksLost(t *testing.T) {
	d, _ := open(t)
	ctx := context.Background()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := queue.NewProcess(d, queue.ProcessConfig{Heartbeat: time.Second, Clock: func() time.Time { return now }, Version: "v9"})
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Stop(ctx) }()
	for _, r := range []queue.ProcessRow{
		{ID: "fresh", Host: "h", PID: 2, StartedUS: queue.US(now.Add(-time.Hour)), HeartbeatUS: queue.US(now.Add(-2 * time.Second)), Version: "v8"},
		{ID: "lost", Host: "h", PID: 3, StartedUS: queue.US(now.Add(-time.Hour)), HeartbeatUS: queue.US(now.Add(-6 * time.Second))},
		{ID: "gone", Host: "h", PID: 4, StartedUS: queue.US(now.Add(-72 * time.Hour)), HeartbeatUS: queue.US(now.Add(-25 * time.Hour))},
	} {
		if err := d.Heartbeat(ctx, r, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	list, err := p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]queue.ProcessInfo{}
	for _, pr := range list {
		got[pr.ID] = pr
	}
	if len(list) != 3 {
		t.Fatalf("listed %v, want this one, fresh and lost (not gone)", got)
	}
	if me := got[p.ID()]; !me.Self || me.Lost || me.Version != "v9" || !me.Heartbeat.Equal(now) {
		t.Fatalf("this process: %+v", me)
	}
	if f := got["fresh"]; f.Lost || f.Self || f.Version != "v8" || f.PID != 2 {
		t.Fatalf("fresh: %+v", f)
	}
	if l := got["lost"]; !l.Lost {
		t.Fatalf("lost: %+v, want lost after %d missed heartbeats", l, queue.LostAfter)
	}
}

// slowRescue is a driver whose rescue statement takes a while, as on a
// busy database.
type slowRescue struct {
	queue.Driver
	took time.Duration
	done chan struct{} // one send per rescue that completed
}

func (d slowRescue) Rescue(ctx context.Context, nowUS int64, limit int) (int64, error) {
	select {
	case <-time.After(d.took):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	n, err := d.Driver.Rescue(ctx, nowUS, limit)
	if err == nil {
		select {
		case d.done <- struct{}{}:
		default:
		}
	}
	return n, err
}

// A rescue that takes longer than a few rescue intervals still completes:
// its deadline is not derived from the polling interval (it was 10 of
// them, 200 ms at a 20 ms interval, so on a loaded machine every rescue
// was cut and expired leases stayed unrescued).
func TestRescueOutlivesItsInterval(t *testing.T) {
	d, _ := open(t)
	ctx := context.Background()
	slow := slowRescue{Driver: d, took: 400 * time.Millisecond, done: make(chan struct{}, 1)}
	p := queue.NewProcess(slow, queue.ProcessConfig{RescueInterval: 20 * time.Millisecond})
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Stop(ctx) }()
	select {
	case <-slow.done:
	case <-time.After(60 * time.Second):
		t.Fatal("no rescue completed in a minute: each was cut by its deadline")
	}
}
