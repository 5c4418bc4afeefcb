package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"gorm.io/gorm"
)

// Windowed history: what the dashboard counts over its last minutes (runs,
// failed runs, work done and failed) read from the store, so a restarted
// process shows the same figures it showed before.

// Window is the jobs' history in fixed buckets from Since: bucket i covers
// [Since + i·Bucket, Since + (i+1)·Bucket).
type Window struct {
	Since       time.Time
	Bucket      time.Duration
	Runs        []int64 // job runs started, failed ones included
	RunFailures []int64
	WorkDone    []int64 // work items finished done
	WorkFailed  []int64 // work items out of attempts
	// The newest failures in the window, newest first, at most the limit
	// asked for of each.
	RecentRunFailures []JobRun
	RecentWorkFailed  []WorkItem
}

// Window counts runs and finished work per bucket over n buckets from
// since, and returns up to recent of the newest failed runs and items. It
// reads the store directly (ErrNoStore without one).
func (p *Processor) Window(ctx context.Context, since time.Time, bucket time.Duration, n, recent int) (Window, error) {
	if bucket <= 0 || n <= 0 {
		return Window{}, fmt.Errorf("jobs window: bucket %s and count %d must be positive", bucket, n)
	}
	gs, ok := p.cfg.Store.(gormStore)
	if !ok {
		return Window{}, ErrNoStore
	}
	w, err := gs.window(ctx, since.UnixMicro(), bucket.Microseconds(), n, recent)
	if err != nil {
		return Window{}, fmt.Errorf("jobs window: %w", err)
	}
	w.Since, w.Bucket = since.UTC(), bucket
	return w, nil
}

// migrateWindow adds the index the runs' range query walks; the work
// items are counted by the engine (CountByFinish, LatestFinished) over its
// own indexes of done and dead items by finish time.
func migrateWindow(ctx context.Context, db *gorm.DB) error {
	err := db.WithContext(ctx).Exec(`CREATE INDEX IF NOT EXISTS canal_job_runs_started ON canal_job_runs (started_us)`).Error
	if err != nil {
		return fmt.Errorf("migrate jobs window index: %w", err)
	}
	return nil
}

func (s gormStore) window(ctx context.Context, from, width int64, n, recent int) (Window, error) {
	w := Window{Runs: make([]int64, n), RunFailures: make([]int64, n), WorkDone: make([]int64, n), WorkFailed: make([]int64, n)}
	until := from + int64(n)*width
	db := s.db.WithContext(ctx)
	var runs []struct {
		B      int64 `gorm:"column:b"`
		Failed bool  `gorm:"column:failed"`
		N      int64 `gorm:"column:n"`
	}
	if err := db.Raw(`SELECT (started_us - ?) / ? AS b, COALESCE(error, '') <> '' AS failed, COUNT(*) AS n
		FROM canal_job_runs WHERE started_us >= ? AND started_us < ?
		GROUP BY 1, 2`, from, width, from, until).Scan(&runs).Error; err != nil {
		return Window{}, fmt.Errorf("runs: %w", err)
	}
	for _, r := range runs {
		if r.B >= 0 && r.B < int64(n) {
			w.Runs[r.B] += r.N
			if r.Failed {
				w.RunFailures[r.B] += r.N
			}
		}
	}
	for _, st := range []struct {
		state queue.State
		into  []int64
	}{{queue.StateDone, w.WorkDone}, {queue.StateDead, w.WorkFailed}} {
		counts, err := s.drv.CountByFinish(ctx, queue.Filter{Queue: workQueue, States: []queue.State{st.state}}, from, width, n)
		if err != nil {
			return Window{}, fmt.Errorf("work %s: %w", st.state, err)
		}
		copy(st.into, counts)
	}
	if recent > 0 {
		var rr []runRow
		if err := db.Where("started_us >= ? AND started_us < ? AND error <> ''", from, until).
			Order("started_us DESC").Limit(recent).Find(&rr).Error; err != nil {
			return Window{}, fmt.Errorf("recent failed runs: %w", err)
		}
		for _, r := range rr {
			w.RecentRunFailures = append(w.RecentRunFailures, r.run())
		}
		items, err := s.drv.LatestFinished(ctx, queue.Filter{Queue: workQueue, States: []queue.State{queue.StateDead},
			FinishedFrom: from, FinishedBefore: until}, recent)
		if err != nil {
			return Window{}, fmt.Errorf("recent failed work: %w", err)
		}
		for _, it := range items {
			wi := toWork(it)
			wi.Payload = nil
			w.RecentWorkFailed = append(w.RecentWorkFailed, wi)
		}
	}
	return w, nil
}
