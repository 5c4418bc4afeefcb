package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
)

// TestControlWaitIsMeasured: a command sent before Run waits in the control
// channel until Run takes it; its wait, at least the time we held Run back,
// is in the queue stats' histogram.
func TestControlWaitIsMeasured(t *testing.T) {
	p := jobs.NewProcessor(jobs.Config{})
	if err := p.Register("report", time.Hour, false, noop); err != nil {
		t.Fatal(err)
	}
	if w := p.Queue().ControlWait; w.Count != 0 || len(w.Bounds) == 0 || len(w.Buckets) != len(w.Bounds) {
		t.Fatalf("before any command: %+v", w)
	}
	replied := make(chan error, 1)
	go func() {
		_, err := p.Status(context.Background(), "report")
		replied <- err
	}()
	testenv.Eventually(t, 60*time.Second, "the command is queued", func() bool { return p.Queue().Control.Len == 1 })
	const held = 50 * time.Millisecond
	time.Sleep(held)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := <-replied; err != nil {
		t.Fatal(err)
	}
	w := p.Queue().ControlWait
	if w.Count != 1 || w.Sum < held.Seconds() || w.Sum > 60 { // an upper bound for sanity, not a speed
		t.Fatalf("one command held %s: %+v", held, w)
	}
	for i, b := range w.Bounds {
		want := uint64(0)
		if b >= w.Sum {
			want = 1
		}
		if w.Buckets[i] != want {
			t.Errorf("bucket ≤%gs = %d, want %d (wait %gs)", b, w.Buckets[i], want, w.Sum)
		}
	}
	if _, err := p.Status(context.Background(), "report"); err != nil {
		t.Fatal(err)
	}
	if w := p.Queue().ControlWait; w.Count != 2 {
		t.Errorf("after a second command: count %d", w.Count)
	}
}
