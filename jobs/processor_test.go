package jobs_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

func noop(context.Context) error { return nil }

func TestCommandsReplyWithStatusOrTypedError(t *testing.T) {
	p := jobs.NewProcessor(jobs.Config{})
	var runs atomic.Int64
	if err := p.Register("report", time.Hour, true, func(context.Context) error { runs.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := p.Register("cleanup", time.Hour, false, noop); err != nil {
		t.Fatal(err)
	}
	running(t, p)
	ctx := context.Background()

	tests := []struct {
		name        string
		do          func() (jobs.Status, error)
		wantErr     error
		wantRunning bool
	}{
		{"status of a running job", func() (jobs.Status, error) { return p.Status(ctx, "report") }, nil, true},
		{"start a running job", func() (jobs.Status, error) { return p.Start(ctx, "report") }, jobs.ErrAlreadyRunning, false},
		{"stop a running job", func() (jobs.Status, error) { return p.Stop(ctx, "report") }, nil, false},
		{"stop a stopped job", func() (jobs.Status, error) { return p.Stop(ctx, "report") }, jobs.ErrNotRunning, false},
		{"start a stopped job", func() (jobs.Status, error) { return p.Start(ctx, "cleanup") }, nil, true},
		{"unknown job", func() (jobs.Status, error) { return p.Status(ctx, "nope") }, jobs.ErrUnknownJob, false},
		{"unknown job start", func() (jobs.Status, error) { return p.Start(ctx, "nope") }, jobs.ErrUnknownJob, false},
		{"interval too small", func() (jobs.Status, error) { return p.SetInterval(ctx, "report", time.Millisecond) }, jobs.ErrInvalidInterval, false},
		{"interval on unknown job", func() (jobs.Status, error) { return p.SetInterval(ctx, "nope", time.Second) }, jobs.ErrUnknownJob, false},
		{"set interval", func() (jobs.Status, error) { return p.SetInterval(ctx, "cleanup", 2*time.Second) }, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := tc.do()
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && st.Running != tc.wantRunning {
				t.Errorf("running = %v, want %v (%+v)", st.Running, tc.wantRunning, st)
			}
		})
	}

	st, err := p.Status(ctx, "cleanup")
	if err != nil || st.Interval != 2*time.Second || st.NextRun == nil {
		t.Fatalf("cleanup after set interval: %+v, %v", st, err)
	}
	list, err := p.List(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "report" || list[1].Name != "cleanup" {
		t.Fatalf("List = %+v, %v", list, err)
	}

	// Trigger runs a stopped job once now.
	if _, err := p.Trigger(ctx, "report"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, "triggered run is counted", func() bool {
		st, _ := p.Status(ctx, "report")
		return runs.Load() == 1 && st.Executions == 1 && st.LastRun != nil
	})
}

func TestRunsRecordFailuresAndIntervals(t *testing.T) {
	p := jobs.NewProcessor(jobs.Config{MinInterval: time.Millisecond})
	var n atomic.Int64
	err := p.Register("flaky", 5*time.Millisecond, true, func(context.Context) error {
		if n.Add(1)%2 == 0 {
			return errors.New("boom")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Register("panics", 5*time.Millisecond, true, func(context.Context) error { panic("oops") }); err != nil {
		t.Fatal(err)
	}
	running(t, p)
	testenv.Eventually(t, wait, "flaky runs, succeeding and failing", func() bool {
		st, _ := p.Status(context.Background(), "flaky")
		return st.Executions >= 4 && st.Failures >= 2 && st.NextRun != nil
	})
	testenv.Eventually(t, wait, "a panic is a failed run", func() bool {
		st, _ := p.Status(context.Background(), "panics")
		return st.Failures >= 1 && st.LastError == "panic: oops"
	})
}

// A command the processor fails on reaches its caller as an error (the
// tutorial's TrySetException): here the store refuses to save.
func TestCommandFailureReachesCaller(t *testing.T) {
	s := &failingSave{memStore: newMemStore()}
	p := jobs.NewProcessor(jobs.Config{Store: s})
	if err := p.Register("report", time.Hour, false, noop); err != nil {
		t.Fatal(err)
	}
	running(t, p)
	_, err := p.Start(context.Background(), "report")
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("Start = %v, want the store's error", err)
	}
	st, _ := p.Status(context.Background(), "report")
	if st.Running {
		t.Fatal("a start that could not be saved must not run the job")
	}
}

var errDiskFull = errors.New("disk full")

type failingSave struct{ *memStore }

func (failingSave) SaveJob(context.Context, jobs.JobState) error { return errDiskFull }

func TestControlChannelPolicies(t *testing.T) {
	tests := []struct {
		name      string
		policy    jobs.Policy
		wantFirst error // the queued command's answer
		wantNew   error // the command that finds the channel full
	}{
		{"wait: new caller gives up at its deadline", jobs.Wait, nil, jobs.ErrFull},
		{"drop newest: new caller refused", jobs.DropNewest, nil, jobs.ErrFull},
		{"drop oldest: queued caller evicted", jobs.DropOldest, jobs.ErrDropped, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := jobs.NewProcessor(jobs.Config{ControlCapacity: 1, ControlPolicy: tc.policy})
			if err := p.Register("report", time.Hour, false, noop); err != nil {
				t.Fatal(err)
			}
			// Not running yet, so the first command stays queued.
			first := make(chan error, 1)
			go func() { _, err := p.Status(context.Background(), "report"); first <- err }()
			testenv.Eventually(t, wait, "first command queued", func() bool { return p.Queue().Control.Len == 1 })

			deadline := wait // only Wait needs its deadline to pass
			if tc.policy == jobs.Wait {
				deadline = 50 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			newDone := make(chan error, 1)
			go func() { _, err := p.Status(ctx, "report"); newDone <- err }()
			if tc.wantNew != nil {
				if err := <-newDone; !errors.Is(err, tc.wantNew) {
					t.Fatalf("new command = %v, want %v", err, tc.wantNew)
				}
			}
			if tc.wantFirst != nil {
				if err := <-first; !errors.Is(err, tc.wantFirst) {
					t.Fatalf("queued command = %v, want %v", err, tc.wantFirst)
				}
			}
			running(t, p)
			if tc.wantFirst == nil {
				if err := <-first; err != nil {
					t.Fatalf("queued command = %v", err)
				}
			}
			if tc.wantNew == nil {
				if err := <-newDone; err != nil {
					t.Fatalf("new command = %v", err)
				}
			}
			st := p.Queue().Control
			if st.Rejected+st.Evicted != 1 {
				t.Errorf("control stats %+v: want one refused or evicted command counted", st)
			}
		})
	}
}

// Shutdown answers every command already queued before it stops (the
// tutorial's Complete()), and refuses new ones with ErrClosed.
func TestShutdownDrainsControlChannel(t *testing.T) {
	for range 20 {
		gate := &gatedStore{memStore: newMemStore(), release: make(chan struct{})}
		p := jobs.NewProcessor(jobs.Config{Store: gate})
		if err := p.Register("report", time.Hour, false, noop); err != nil {
			t.Fatal(err)
		}
		runDone := make(chan error, 1)
		go func() { runDone <- p.Run(context.Background()) }()
		// Run is held in restore; queue commands, then ask for shutdown.
		const n = 5
		answers := make(chan error, n)
		for range n {
			go func() { _, err := p.Status(context.Background(), "report"); answers <- err }()
		}
		testenv.Eventually(t, wait, "commands queued", func() bool { return p.Queue().Control.Len == n })
		shut := make(chan error, 1)
		go func() { shut <- p.Shutdown(context.Background()) }()
		close(gate.release)
		for range n {
			if err := <-answers; err != nil {
				t.Fatalf("queued command answered %v, want its status", err)
			}
		}
		if err := <-shut; err != nil {
			t.Fatal(err)
		}
		if err := <-runDone; err != nil {
			t.Fatal(err)
		}
		if _, err := p.Status(context.Background(), "report"); !errors.Is(err, jobs.ErrClosed) {
			t.Fatalf("command after shutdown = %v, want ErrClosed", err)
		}
	}
}

// A Shutdown that comes before Run (as when both are started at once and
// Shutdown wins the race) still stops it: Run answers the commands queued
// until then and returns, rather than running until its context ends.
func TestShutdownBeforeRunStopsRun(t *testing.T) {
	p := jobs.NewProcessor(jobs.Config{})
	var runs atomic.Int64
	must(t, p.Register("report", 100*time.Millisecond, true, func(context.Context) error { runs.Add(1); return nil }))
	answer := make(chan error, 1)
	go func() { _, err := p.Status(context.Background(), "report"); answer <- err }()
	testenv.Eventually(t, wait, "command queued", func() bool { return p.Queue().Control.Len == 1 })
	must(t, p.Shutdown(context.Background()))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- p.Run(ctx) }()
	select {
	case err := <-runDone:
		must(t, err)
	case <-time.After(wait):
		cancel()
		<-runDone
		t.Fatal("Run after Shutdown kept running until its context ended")
	}
	if err := <-answer; err != nil {
		t.Fatalf("queued command answered %v, want its status", err)
	}
	if n := runs.Load(); n != 0 {
		t.Errorf("job ran %d times after Shutdown", n)
	}
}

type gatedStore struct {
	*memStore
	release chan struct{}
}

func (g *gatedStore) LoadJobs(ctx context.Context) ([]jobs.JobState, error) {
	<-g.release
	return g.memStore.LoadJobs(ctx)
}

func TestEventsSnapshotAndDrops(t *testing.T) {
	p := jobs.NewProcessor(jobs.Config{})
	for _, name := range []string{"a", "b"} {
		if err := p.Register(name, time.Hour, name == "a", noop); err != nil {
			t.Fatal(err)
		}
	}
	c := collect(t, p)
	running(t, p)
	testenv.Eventually(t, wait, "snapshot with every job", func() bool {
		s := c.all(jobs.EventSnapshot)
		return len(s) == 1 && len(s[0].Jobs) == 2 && s[0].Jobs[0].Name == "a" && s[0].Queue != nil
	})
	if _, err := p.Stop(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, "stop published", func() bool {
		for _, e := range c.all(jobs.EventJobStopped) {
			if e.Job.Name == "a" && !e.Job.Running {
				return true
			}
		}
		return false
	})

	// Nobody reads this one: publishing must not block and drops are counted.
	q := jobs.NewProcessor(jobs.Config{EventCapacity: 1})
	if err := q.Register("x", time.Hour, false, noop); err != nil {
		t.Fatal(err)
	}
	running(t, q)
	for range 5 {
		if _, err := q.Trigger(context.Background(), "x"); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, wait, "dropped events counted", func() bool { return q.Queue().EventsDropped >= 3 })
}

func TestJobStateSurvivesRestart(t *testing.T) {
	eachStore(t, func(t *testing.T, _ *gorm.DB, s jobs.Store) {
		start := func() (*jobs.Processor, func()) {
			p := jobs.NewProcessor(jobs.Config{Store: s})
			for _, name := range []string{"report", "cleanup", "idle"} {
				if err := p.Register(name, time.Hour, name != "idle", noop); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() { done <- p.Run(context.Background()) }()
			return p, func() {
				if err := p.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
		}
		ctx := context.Background()
		p, stop := start()
		if _, err := p.Stop(ctx, "report"); err != nil {
			t.Fatal(err)
		}
		if _, err := p.SetInterval(ctx, "cleanup", 7*time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Start(ctx, "idle"); err != nil {
			t.Fatal(err)
		}
		stop()

		p, stop = start()
		defer stop()
		list, err := p.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]struct {
			running  bool
			interval time.Duration
		}{"report": {false, time.Hour}, "cleanup": {true, 7 * time.Second}, "idle": {true, time.Hour}}
		for _, st := range list {
			w := want[st.Name]
			if st.Running != w.running || st.Interval != w.interval {
				t.Errorf("%s after restart: running=%v interval=%s, want %v %s", st.Name, st.Running, st.Interval, w.running, w.interval)
			}
		}
	})
}

func TestHealth(t *testing.T) {
	p := jobs.NewProcessor(jobs.Config{Store: sqliteStore(t), Workers: 1, WorkCapacity: 20})
	release := make(chan struct{})
	must(t, p.RegisterKind("slow", func(ctx context.Context, _ jobs.WorkItem) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}, jobs.KindOptions{}))
	if h := p.Health(); h.Status != jobs.HealthDown {
		t.Fatalf("before Run: %+v", h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	testenv.Eventually(t, wait, "ok once running", func() bool { return p.Health().Status == jobs.HealthOK })

	enqueue(t, p, "slow", jobs.Normal, `{}`)
	testenv.Eventually(t, wait, "the worker is busy", func() bool { return p.Queue().Busy == 1 })
	// The engine claims up to 16 ahead of the busy worker (fetch-ahead);
	// what it cannot take waits in the table: the backlog.
	for range 16 + 18 {
		enqueue(t, p, "slow", jobs.Normal, `{}`)
	}
	var h jobs.Health
	testenv.Eventually(t, wait, "degraded by a nearly full backlog", func() bool {
		h = p.Health()
		return h.Status == jobs.HealthDegraded && len(h.Reasons) == 1 && h.Reasons[0] == "work backlog 18/20"
	})
	if h.Queue.Breakers["slow"] != "closed" {
		t.Fatalf("breakers %v", h.Queue.Breakers)
	}
	close(release)
	testenv.Eventually(t, wait, "ok once drained", func() bool { return p.Health().Status == jobs.HealthOK })
	cancel()
	must(t, <-done)
	if h := p.Health(); h.Status != jobs.HealthDown {
		t.Fatalf("after Run: %+v", h)
	}
}

// Triggering a stopped job runs it once; triggers that arrive while that
// run is in progress are coalesced, as they are for a running job, rather
// than starting one concurrent run per request.
func TestTriggerOfStoppedJobIsCoalesced(t *testing.T) {
	p := jobs.NewProcessor(jobs.Config{})
	release := make(chan struct{})
	var runs, inFlight, most atomic.Int64
	must(t, p.Register("report", time.Hour, false, func(ctx context.Context) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		runs.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}))
	running(t, p)
	ctx := context.Background()
	for range 20 {
		if _, err := p.Trigger(ctx, "report"); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, wait, "the triggered run starts", func() bool { return runs.Load() >= 1 })
	close(release)
	testenv.Eventually(t, wait, "the run is counted", func() bool {
		st, _ := p.Status(ctx, "report")
		return st.Executions >= 1 && inFlight.Load() == 0
	})
	if m := most.Load(); m != 1 {
		t.Fatalf("%d runs of one job at once, want 1", m)
	}
	// Once the run is over, a new trigger runs it again.
	if _, err := p.Trigger(ctx, "report"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, "a later trigger runs again", func() bool {
		st, _ := p.Status(ctx, "report")
		return st.Executions >= 2
	})
}

// Intervals are kept in whole milliseconds: a finer one would answer one
// value now and come back as another after a restart.
func TestIntervalNeedsWholeMilliseconds(t *testing.T) {
	p := jobs.NewProcessor(jobs.Config{Store: newMemStore()})
	if err := p.Register("bad", 1500*time.Microsecond+time.Second, true, noop); !errors.Is(err, jobs.ErrInvalidInterval) {
		t.Fatalf("Register with 1.0015s = %v, want ErrInvalidInterval", err)
	}
	must(t, p.Register("report", time.Hour, false, noop))
	running(t, p)
	if _, err := p.SetInterval(context.Background(), "report", 250*time.Millisecond+500*time.Microsecond); !errors.Is(err, jobs.ErrInvalidInterval) {
		t.Fatalf("SetInterval 250.5ms = %v, want ErrInvalidInterval", err)
	}
	st, err := p.SetInterval(context.Background(), "report", 250*time.Millisecond)
	if err != nil || st.Interval != 250*time.Millisecond {
		t.Fatalf("SetInterval 250ms = %+v, %v", st, err)
	}
}

// A Shutdown whose deadline has already passed when Run could take it still
// stops Run: before, the request could be abandoned and Run ran for ever.
func TestShutdownWithExpiredDeadlineStopsRun(t *testing.T) {
	for range 20 {
		p := jobs.NewProcessor(jobs.Config{})
		done := make(chan error, 1)
		go func() { done <- p.Run(context.Background()) }()
		<-p.Events() // Run has started: its first snapshot is out
		expired, cancel := context.WithCancel(context.Background())
		cancel()
		_ = p.Shutdown(expired)
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("Run did not stop after a Shutdown whose deadline had passed")
		}
	}
}
