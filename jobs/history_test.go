package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/dialect"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// recordRuns stores n runs of job directly, oldest first, and returns them
// with their ids, newest first.
func recordRuns(t *testing.T, s jobs.Store, job string, n int) []jobs.JobRun {
	t.Helper()
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	runs := make([]jobs.JobRun, n)
	for i := range runs {
		runs[i] = jobs.JobRun{Job: job, At: base.Add(time.Duration(i) * time.Second), Duration: time.Duration(i+1) * time.Millisecond}
		if i%4 == 3 {
			runs[i].Error = fmt.Sprintf("boom %d", i)
		}
	}
	// Several batches, as the recorder writes them.
	for i := 0; i < n; i += 10 {
		if err := s.RecordRuns(context.Background(), runs[i:min(i+10, n)], nil); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ListRuns(context.Background(), job, 0, n+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%s: %d runs stored, want %d", job, len(got), n)
	}
	return got
}

func TestRunsPagedWithoutGapsOrRepeats(t *testing.T) {
	eachStore(t, func(t *testing.T, _ *gorm.DB, s jobs.Store) {
		want := recordRuns(t, s, "report", 25)
		recordRuns(t, s, "other", 3)
		if want[0].At.Location() != time.UTC || want[0].Error != "" || want[1].Error != "boom 23" || want[0].Duration != 25*time.Millisecond {
			t.Fatalf("newest run %+v", want[0])
		}
		p := jobs.NewProcessor(jobs.Config{Store: s})
		must(t, p.Register("report", time.Hour, false, noop))
		for _, limit := range []int{1, 7, 10, 25, 50} {
			t.Run(fmt.Sprint("limit", limit), func(t *testing.T) {
				var got []int64
				before, pages := int64(0), 0
				for {
					page, err := p.Runs(context.Background(), "report", before, limit)
					if err != nil {
						t.Fatal(err)
					}
					pages++
					if len(page.Runs) > limit {
						t.Fatalf("page of %d runs, limit %d", len(page.Runs), limit)
					}
					for _, r := range page.Runs {
						if r.Job != "report" {
							t.Fatalf("run of %q in report's history", r.Job)
						}
						got = append(got, r.ID)
					}
					if page.Next == 0 {
						break
					}
					before = page.Next
				}
				var ids []int64
				for _, r := range want {
					ids = append(ids, r.ID)
				}
				if !slices.Equal(got, ids) {
					t.Errorf("ids across pages %v, want %v", got, ids)
				}
				if wantPages := (25 + limit - 1) / limit; pages != wantPages && pages != wantPages+1 {
					t.Errorf("%d pages, want %d", pages, wantPages)
				}
			})
		}
	})
}

func TestRunsErrors(t *testing.T) {
	p := jobs.NewProcessor(jobs.Config{Store: newMemStore()})
	must(t, p.Register("report", time.Hour, false, noop))
	cases := []struct {
		name   string
		job    string
		before int64
		limit  int
		want   error
	}{
		{"unknown job", "nope", 0, 10, jobs.ErrUnknownJob},
		{"negative cursor", "report", -1, 10, jobs.ErrInvalidCursor},
		{"negative limit", "report", 0, -1, jobs.ErrInvalidLimit},
		{"limit too large", "report", 0, jobs.MaxPage + 1, jobs.ErrInvalidLimit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := p.Runs(context.Background(), c.job, c.before, c.limit); !errors.Is(err, c.want) {
				t.Errorf("Runs: %v, want %v", err, c.want)
			}
		})
	}
	page, err := p.Runs(context.Background(), "report", 0, 0)
	if err != nil || page.Runs == nil || len(page.Runs) != 0 {
		t.Errorf("empty history: %+v, %v", page, err)
	}
}

func TestPruneKeepsNewestRuns(t *testing.T) {
	eachStore(t, func(t *testing.T, _ *gorm.DB, s jobs.Store) {
		cases := []struct {
			keep, batch int
			wantDeleted int64
		}{
			{keep: 40, batch: 4, wantDeleted: 0},
			{keep: 10, batch: 4, wantDeleted: 20}, // several statements
			{keep: 10, batch: 100, wantDeleted: 0},
			{keep: 3, batch: 100, wantDeleted: 7},
		}
		all := recordRuns(t, s, "a", 30)
		other := recordRuns(t, s, "b", 5)
		for _, c := range cases {
			n, err := s.PruneRuns(context.Background(), "a", c.keep, c.batch)
			if err != nil {
				t.Fatal(err)
			}
			if n != c.wantDeleted {
				t.Errorf("keep %d: deleted %d, want %d", c.keep, n, c.wantDeleted)
			}
			got, err := s.ListRuns(context.Background(), "a", 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			want := all[:min(c.keep, len(all))]
			if !slices.EqualFunc(got, want, func(a, b jobs.JobRun) bool { return a.ID == b.ID }) {
				t.Errorf("keep %d: kept %d runs, not the newest %d", c.keep, len(got), len(want))
			}
		}
		got, _ := s.ListRuns(context.Background(), "b", 0, 100)
		if len(got) != len(other) {
			t.Errorf("pruning a touched b: %d runs left of %d", len(got), len(other))
		}
	})
}

// TestRunsAndCountersSurviveRestart runs a recurring job (and a manual
// trigger) on one processor, stops it, and reads the history and counters
// from a second processor on the same database.
func TestRunsAndCountersSurviveRestart(t *testing.T) {
	eachStore(t, func(t *testing.T, _ *gorm.DB, s jobs.Store) {
		var calls atomic.Int64
		handler := func(context.Context) error {
			if calls.Add(1)%3 == 0 {
				return errors.New("every third run fails")
			}
			return nil
		}
		p := jobs.NewProcessor(jobs.Config{Store: s, RunHistory: 1000})
		must(t, p.Register("tick", 100*time.Millisecond, true, handler))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		if _, err := p.Trigger(context.Background(), "tick"); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, wait, "five runs recorded", func() bool {
			runs, err := s.ListRuns(context.Background(), "tick", 0, 100)
			return err == nil && len(runs) >= 5
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		runs, err := s.ListRuns(context.Background(), "tick", 0, jobs.MaxPage)
		if err != nil {
			t.Fatal(err)
		}
		var failures int64
		manual := 0
		for _, r := range runs {
			if r.Error != "" {
				failures++
				if !strings.Contains(r.Error, "every third") {
					t.Errorf("run error %q", r.Error)
				}
			}
			if r.Manual {
				manual++
			}
		}
		if manual != 1 {
			t.Errorf("%d manual runs recorded, want 1", manual)
		}
		// A run that ends as Run stops is not applied: at most one.
		if n := int64(len(runs)); n > calls.Load() || n < calls.Load()-1 {
			t.Errorf("%d runs recorded, handler called %d times", len(runs), calls.Load())
		}

		// The same job registered stopped: counters come back, and since no
		// one pressed start or stop, registration still decides it runs not.
		q := jobs.NewProcessor(jobs.Config{Store: s})
		must(t, q.Register("tick", time.Hour, false, noop))
		running(t, q)
		st, err := q.Status(context.Background(), "tick")
		if err != nil {
			t.Fatal(err)
		}
		if st.Executions != int64(len(runs)) || st.Failures != failures {
			t.Errorf("after restart %d executions, %d failures; want %d, %d", st.Executions, st.Failures, len(runs), failures)
		}
		if st.Running || st.Interval != time.Hour {
			t.Errorf("after restart running %v every %s; want registration's stopped, 1h", st.Running, st.Interval)
		}
		if st.LastRun == nil || !st.LastRun.Equal(runs[0].At) || st.LastError != runs[0].Error {
			t.Errorf("last run %v %q, want %v %q", st.LastRun, st.LastError, runs[0].At, runs[0].Error)
		}
		page, err := q.Runs(context.Background(), "tick", 0, 0)
		if err != nil || len(page.Runs) != min(len(runs), jobs.DefaultPage) {
			t.Errorf("history after restart: %d runs, %v", len(page.Runs), err)
		}
	})
}

func TestSavedStateStillWinsWithCounters(t *testing.T) {
	eachStore(t, func(t *testing.T, _ *gorm.DB, s jobs.Store) {
		p := jobs.NewProcessor(jobs.Config{Store: s})
		must(t, p.Register("tick", time.Hour, false, noop))
		running(t, p)
		if _, err := p.Start(context.Background(), "tick"); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Trigger(context.Background(), "tick"); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, wait, "a run recorded", func() bool {
			runs, err := s.ListRuns(context.Background(), "tick", 0, 1)
			return err == nil && len(runs) == 1
		})
		saved, err := s.LoadJobs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(saved) != 1 || !saved[0].Saved || !saved[0].Running || saved[0].Interval != time.Hour || saved[0].Executions < 1 {
			t.Errorf("saved %+v", saved)
		}
	})
}

// workFixture stores items of kinds a and b in every state, with creation
// times that tie in pairs, and returns them newest first.
func workFixture(t *testing.T, s jobs.Store, n int) []jobs.WorkItem {
	t.Helper()
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	states := []jobs.WorkState{jobs.WorkPending, jobs.WorkRunning, jobs.WorkRetrying, jobs.WorkDone, jobs.WorkFailed, jobs.WorkDropped}
	var all []jobs.WorkItem
	for i := range n {
		at := base.Add(time.Duration(i/2) * time.Millisecond) // ties: the id decides
		it := jobs.WorkItem{
			ID: fmt.Sprintf("ID%03d", i), Kind: []string{"a", "b"}[i%3%2], Priority: jobs.Normal,
			State: states[i%len(states)], Attempts: i % 3, MaxAttempts: 5, LastError: "e" + fmt.Sprint(i),
			CreatedAt: at, UpdatedAt: at, RunAt: at,
		}
		if err := jobs.ImportWork(context.Background(), s, it); err != nil {
			t.Fatal(err)
		}
		all = append(all, it)
	}
	slices.SortFunc(all, func(a, b jobs.WorkItem) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return all
}

func TestListWorkPagesFiltersAndCounts(t *testing.T) {
	eachStore(t, func(t *testing.T, _ *gorm.DB, s jobs.Store) {
		all := workFixture(t, s, 40)
		p := jobs.NewProcessor(jobs.Config{Store: s})
		filters := []jobs.WorkFilter{
			{},
			{State: jobs.WorkFailed},
			{Kind: "a"},
			{State: jobs.WorkDone, Kind: "b"},
			{Kind: "none"},
		}
		for _, f := range filters {
			var want []string
			counts := map[jobs.WorkState]int{}
			for _, it := range all {
				if f.Kind == "" || it.Kind == f.Kind {
					counts[it.State]++
				}
				if (f.State == "" || it.State == f.State) && (f.Kind == "" || it.Kind == f.Kind) {
					want = append(want, it.ID)
				}
			}
			for _, limit := range []int{1, 3, 7, 100} {
				t.Run(fmt.Sprintf("%s/%s/limit%d", f.State, f.Kind, limit), func(t *testing.T) {
					var got []string
					var before jobs.WorkCursor
					for range 100 {
						page, err := p.ListWork(context.Background(), f, before, limit)
						if err != nil {
							t.Fatal(err)
						}
						for _, it := range page.Items {
							if it.Payload != nil {
								t.Errorf("list carries the payload of %s", it.ID)
							}
							got = append(got, it.ID)
						}
						if page.Next == "" {
							break
						}
						if before, err = jobs.ParseWorkCursor(page.Next); err != nil {
							t.Fatal(err)
						}
					}
					if !slices.Equal(got, want) {
						t.Errorf("ids across pages %v\nwant %v", got, want)
					}
				})
			}
			got, err := p.CountWork(context.Background(), f.Kind)
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range []jobs.WorkState{jobs.WorkPending, jobs.WorkRunning, jobs.WorkRetrying, jobs.WorkDone, jobs.WorkFailed, jobs.WorkDropped} {
				if got[st] != (jobs.Count{N: counts[st]}) {
					t.Errorf("kind %q: count %s = %+v, want %d", f.Kind, st, got[st], counts[st])
				}
			}
		}

		// Bounded: past the limit a count says "more", it does not count on.
		bounded, err := s.CountWork(context.Background(), "", 3)
		if err != nil {
			t.Fatal(err)
		}
		if bounded[jobs.WorkFailed] != (jobs.Count{N: 3, More: true}) {
			t.Errorf("bounded count %+v, want 3 and more", bounded[jobs.WorkFailed])
		}
	})
}

func TestListWorkErrors(t *testing.T) {
	p := jobs.NewProcessor(jobs.Config{Store: newMemStore()})
	cases := []struct {
		name  string
		f     jobs.WorkFilter
		limit int
		want  error
	}{
		{"unknown state", jobs.WorkFilter{State: "lost"}, 10, jobs.ErrInvalidState},
		{"negative limit", jobs.WorkFilter{}, -5, jobs.ErrInvalidLimit},
		{"limit too large", jobs.WorkFilter{}, jobs.MaxPage + 1, jobs.ErrInvalidLimit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := p.ListWork(context.Background(), c.f, jobs.WorkCursor{}, c.limit); !errors.Is(err, c.want) {
				t.Errorf("ListWork: %v, want %v", err, c.want)
			}
		})
	}
	for _, bad := range []string{"x", "12", "_ID", "-3_ID", "0_ID", "12_", "12_a\x00b"} {
		if _, err := jobs.ParseWorkCursor(bad); !errors.Is(err, jobs.ErrInvalidCursor) {
			t.Errorf("ParseWorkCursor(%q): %v, want ErrInvalidCursor", bad, err)
		}
	}
	c := jobs.WorkCursor{CreatedUS: 1763805600000000, ID: "ABC"}
	if got, err := jobs.ParseWorkCursor(c.String()); err != nil || got != c {
		t.Errorf("round trip %q: %+v, %v", c.String(), got, err)
	}
	if _, err := jobs.NewProcessor(jobs.Config{}).ListWork(context.Background(), jobs.WorkFilter{}, jobs.WorkCursor{}, 0); !errors.Is(err, jobs.ErrNoStore) {
		t.Errorf("without a store: %v", err)
	}
}

// TestMigrateKeepsOldJobRowsSaved: rows written before the counters
// existed were all saved by SaveJob, so their state still wins.
func TestMigrateKeepsOldJobRowsSaved(t *testing.T) {
	for _, d := range dbs {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t)
			must(t, db.Exec(`CREATE TABLE canal_jobs (name varchar(200) PRIMARY KEY, running boolean NOT NULL, interval_ms bigint NOT NULL, updated_us bigint NOT NULL)`).Error)
			must(t, db.Exec(`INSERT INTO canal_jobs VALUES ('tick', ?, 7000, 1)`, true).Error)
			must(t, jobs.Migrate(context.Background(), db))
			s, err := jobs.NewStore(db)
			must(t, err)
			saved, err := s.LoadJobs(context.Background())
			must(t, err)
			if len(saved) != 1 || !saved[0].Saved || !saved[0].Running || saved[0].Interval != 7*time.Second || saved[0].Executions != 0 {
				t.Errorf("old row after migration: %+v", saved)
			}
		})
	}
}

// TestRecorderPrunesHistory runs a job fast with a tiny history: the
// recorder keeps each job's history near RunHistory, and the newest runs.
func TestRecorderPrunesHistory(t *testing.T) {
	eachStore(t, func(t *testing.T, _ *gorm.DB, s jobs.Store) {
		var calls atomic.Int64
		p := jobs.NewProcessor(jobs.Config{Store: s, RunHistory: 5, MinInterval: time.Millisecond})
		must(t, p.Register("fast", 2*time.Millisecond, true, func(context.Context) error { calls.Add(1); return nil }))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		// Each run starts through the leader's fence (one write), so 300
		// runs take a while on SQLite under -race.
		testenv.Eventually(t, 4*wait, "300 runs", func() bool { return calls.Load() >= 300 })
		cancel()
		must(t, <-done)
		runs, err := s.ListRuns(context.Background(), "fast", 0, jobs.MaxPage)
		must(t, err)
		saved, err := s.LoadJobs(context.Background())
		must(t, err)
		if len(saved) != 1 || saved[0].Executions > calls.Load() || saved[0].Executions < calls.Load()-1 {
			t.Fatalf("saved %+v, %d calls", saved, calls.Load())
		}
		// Pruned every few dozen runs: never far above the bound.
		if len(runs) < 5 || len(runs) > 5+100 {
			t.Errorf("%d runs kept of %d, want about 5", len(runs), calls.Load())
		}
		if !runs[0].At.Equal(*saved[0].LastRun) {
			t.Errorf("newest kept run at %v, last run %v", runs[0].At, saved[0].LastRun)
		}
	})
}

// Pending work is several engine states (held and rescued items, and
// pending ones that have not failed): listed and counted as one.
func TestPendingWorkSpansEngineStates(t *testing.T) {
	eachStore(t, func(t *testing.T, db *gorm.DB, s jobs.Store) {
		ctx := context.Background()
		drv, err := dialect.For(db)
		if err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
		var items []queue.Item
		for i, st := range []queue.State{queue.StatePending, queue.StateHeld, queue.StateRescued, queue.StatePending, queue.StatePending, queue.StateHeld, queue.StateDone} {
			it := queue.Item{PublicID: fmt.Sprint("w", i), Kind: []string{"a", "b"}[i%2], Key: "k", State: st, CreatedAt: at, UpdatedAt: at}
			if i == 3 {
				it.Failures, it.Attempt = 1, 1 // waiting for its retry's backoff
			}
			items = append(items, it)
		}
		if err := drv.Import(ctx, "work", items); err != nil {
			t.Fatal(err)
		}
		p := jobs.NewProcessor(jobs.Config{Store: s})
		for _, tc := range []struct {
			f    jobs.WorkFilter
			want []string
		}{
			{jobs.WorkFilter{State: jobs.WorkPending}, []string{"w5", "w4", "w2", "w1", "w0"}},
			{jobs.WorkFilter{State: jobs.WorkPending, Kind: "b"}, []string{"w5", "w1"}},
			{jobs.WorkFilter{State: jobs.WorkRetrying}, []string{"w3"}},
		} {
			for _, limit := range []int{1, 2, 100} {
				var got []string
				var before jobs.WorkCursor
				for range 10 {
					page, err := p.ListWork(ctx, tc.f, before, limit)
					if err != nil {
						t.Fatal(err)
					}
					for _, it := range page.Items {
						got = append(got, it.ID)
					}
					if page.Next == "" {
						break
					}
					if before, err = jobs.ParseWorkCursor(page.Next); err != nil {
						t.Fatal(err)
					}
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("%+v limit %d: %v, want %v", tc.f, limit, got, tc.want)
				}
			}
			counts, err := p.CountWork(ctx, tc.f.Kind)
			if err != nil || counts[tc.f.State] != (jobs.Count{N: len(tc.want)}) {
				t.Errorf("%+v: count %+v, %v; want %d", tc.f, counts[tc.f.State], err, len(tc.want))
			}
		}
	})
}
