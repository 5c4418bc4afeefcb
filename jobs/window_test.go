package jobs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"gorm.io/gorm"
)

// TestWindowCountsStoredHistoryPerBucket stores runs and finished work at
// known times and reads them back per bucket, on every database: what a
// restarted dashboard shows for its last minutes.
func TestWindowCountsStoredHistoryPerBucket(t *testing.T) {
	eachStore(t, func(t *testing.T, _ *gorm.DB, s jobs.Store) {
		ctx := context.Background()
		since := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
		at := func(sec float64) time.Time { return since.Add(time.Duration(sec * float64(time.Second))) }
		runs := []jobs.JobRun{
			{Job: "report", At: at(-1)},                 // before the window
			{Job: "report", At: at(0)},                  // bucket 0
			{Job: "report", At: at(4.9), Error: "boom"}, // bucket 0
			{Job: "sync", At: at(12), Error: "timeout"}, // bucket 2
			{Job: "report", At: at(29)},                 // bucket 5
			{Job: "report", At: at(30), Error: "after"}, // past the window
		}
		if err := s.RecordRuns(ctx, runs, nil); err != nil {
			t.Fatal(err)
		}
		for i, w := range []struct {
			state jobs.WorkState
			sec   float64
		}{{jobs.WorkDone, 1}, {jobs.WorkDone, 6}, {jobs.WorkFailed, 7}, {jobs.WorkDone, 31}, {jobs.WorkPending, 2}} {
			fin := at(w.sec)
			it := jobs.WorkItem{ID: fmt.Sprintf("w%d", i), Kind: "email", State: w.state, Attempts: 3, MaxAttempts: 3,
				CreatedAt: since.Add(-time.Minute), UpdatedAt: fin, RunAt: fin, LastError: "smtp down"}
			if w.state != jobs.WorkPending {
				it.FinishedAt = &fin
			}
			if err := jobs.ImportWork(ctx, s, it); err != nil {
				t.Fatal(err)
			}
		}
		p := jobs.NewProcessor(jobs.Config{Store: s})
		w, err := p.Window(ctx, since, 5*time.Second, 6, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name      string
			got, want []int64
		}{
			{"runs", w.Runs, []int64{2, 0, 1, 0, 0, 1}},
			{"run failures", w.RunFailures, []int64{1, 0, 1, 0, 0, 0}},
			{"work done", w.WorkDone, []int64{1, 1, 0, 0, 0, 0}},
			{"work failed", w.WorkFailed, []int64{0, 1, 0, 0, 0, 0}},
		} {
			if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
				t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
			}
		}
		if len(w.RecentRunFailures) != 2 || w.RecentRunFailures[0].Job != "sync" || w.RecentRunFailures[1].Error != "boom" {
			t.Errorf("recent failed runs = %+v, want sync then report's boom", w.RecentRunFailures)
		}
		if len(w.RecentWorkFailed) != 1 || w.RecentWorkFailed[0].ID != "w2" {
			t.Errorf("recent failed work = %+v, want w2", w.RecentWorkFailed)
		}
	})
}
