package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/canalhq/canal/internal/outage"
)

// Page sizes of Runs and ListWork.
const (
	DefaultPage = 50
	MaxPage     = 500
	// CountLimit bounds each count of CountWork: past it a count says
	// "more" instead of scanning a big table.
	CountLimit = 10000
	// DefaultRunHistory is how many runs per job are kept by default.
	DefaultRunHistory = 1000
)

// JobRun is one recorded execution of a recurring job.
type JobRun struct {
	ID       int64         `json:"id"`
	Job      string        `json:"job"`
	At       time.Time     `json:"at"` // when it started, UTC
	Duration time.Duration `json:"-"`
	Error    string        `json:"error,omitempty"`
	// Manual: triggered by hand, not by the job's interval.
	Manual bool `json:"manual,omitempty"`
}

// MarshalJSON writes the duration in milliseconds, as Status does.
func (r JobRun) MarshalJSON() ([]byte, error) {
	type plain JobRun
	return json.Marshal(struct {
		plain
		DurationMS float64 `json:"durationMs"`
	}{plain(r), float64(r.Duration) / float64(time.Millisecond)})
}

// RunPage is one page of a job's runs, newest first.
type RunPage struct {
	Runs []JobRun `json:"runs"`
	// Next is the before cursor of the following page, 0 on the last.
	Next int64 `json:"next,omitempty"`
}

// WorkFilter selects work items; zero fields match everything.
type WorkFilter struct {
	State WorkState
	Kind  string
}

// WorkCursor is a position in the work list, which is ordered by creation
// time then id, newest first. The zero cursor is the first page.
type WorkCursor struct {
	CreatedUS int64
	ID        string
}

// IsZero reports whether c is the first page's cursor.
func (c WorkCursor) IsZero() bool { return c.CreatedUS == 0 && c.ID == "" }

// String is the cursor as it travels in URLs: "<microseconds>_<id>".
func (c WorkCursor) String() string {
	if c.IsZero() {
		return ""
	}
	return strconv.FormatInt(c.CreatedUS, 10) + "_" + c.ID
}

// ParseWorkCursor reads WorkCursor.String; "" is the first page.
func ParseWorkCursor(s string) (WorkCursor, error) {
	if s == "" {
		return WorkCursor{}, nil
	}
	us, id, ok := strings.Cut(s, "_")
	n, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || n <= 0 || id == "" || len(id) > 64 || !storableID(id) {
		return WorkCursor{}, fmt.Errorf("%w: %q", ErrInvalidCursor, s)
	}
	return WorkCursor{CreatedUS: n, ID: id}, nil
}

// WorkPage is one page of work items, newest first.
type WorkPage struct {
	Items []WorkItem `json:"items"`
	// Next is the before cursor of the following page, "" on the last.
	Next string `json:"next,omitempty"`
}

// Count is a bounded count: N is exact unless More says there are more
// than N (N is then CountLimit).
type Count struct {
	N    int  `json:"n"`
	More bool `json:"more,omitempty"`
}

// ValidWorkState reports whether s names a work state.
func ValidWorkState(s WorkState) bool {
	switch s {
	case WorkPending, WorkRunning, WorkRetrying, WorkDone, WorkFailed, WorkDropped:
		return true
	}
	return false
}

func pageLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return DefaultPage, nil
	case limit < 0 || limit > MaxPage:
		return 0, fmt.Errorf("%w: %d (want 1..%d)", ErrInvalidLimit, limit, MaxPage)
	}
	return limit, nil
}

// Runs returns a page of a job's recorded runs, newest first, before the
// run id before (0: from the newest). It reads the store directly: no
// command goes through the control channel. Without a store there is no
// history and the page is empty.
func (p *Processor) Runs(ctx context.Context, job string, before int64, limit int) (RunPage, error) {
	// p.jobs is only written by Register, before Run: reading it is safe.
	if _, ok := p.jobs[job]; !ok {
		return RunPage{}, fmt.Errorf("runs %q: %w", job, ErrUnknownJob)
	}
	if before < 0 {
		return RunPage{}, fmt.Errorf("runs %q: %w: %d", job, ErrInvalidCursor, before)
	}
	limit, err := pageLimit(limit)
	if err != nil {
		return RunPage{}, fmt.Errorf("runs %q: %w", job, err)
	}
	page := RunPage{Runs: []JobRun{}}
	if p.cfg.Store == nil {
		return page, nil
	}
	// One more than asked says whether there is a next page.
	runs, err := p.cfg.Store.ListRuns(ctx, job, before, limit+1)
	if err != nil {
		return RunPage{}, err
	}
	if len(runs) > limit {
		runs = runs[:limit]
		page.Next = runs[limit-1].ID
	}
	if runs != nil {
		page.Runs = runs
	}
	return page, nil
}

// ListWork returns a page of work items matching f, newest first, after
// the cursor before. It reads the store directly.
func (p *Processor) ListWork(ctx context.Context, f WorkFilter, before WorkCursor, limit int) (WorkPage, error) {
	if f.State != "" && !ValidWorkState(f.State) {
		return WorkPage{}, fmt.Errorf("list work: %w: %q", ErrInvalidState, f.State)
	}
	limit, err := pageLimit(limit)
	if err != nil {
		return WorkPage{}, fmt.Errorf("list work: %w", err)
	}
	if p.cfg.Store == nil {
		return WorkPage{}, ErrNoStore
	}
	items, err := p.cfg.Store.ListWork(ctx, f, before, limit+1)
	if err != nil {
		return WorkPage{}, err
	}
	page := WorkPage{Items: items}
	if len(items) > limit {
		page.Items = items[:limit]
		last := page.Items[limit-1]
		page.Next = WorkCursor{CreatedUS: us(last.CreatedAt), ID: last.ID}.String()
	}
	if page.Items == nil {
		page.Items = []WorkItem{}
	}
	return page, nil
}

// CountWork counts work items of kind ("" for all) in each state, each
// count bounded by CountLimit.
func (p *Processor) CountWork(ctx context.Context, kind string) (map[WorkState]Count, error) {
	if p.cfg.Store == nil {
		return nil, ErrNoStore
	}
	return p.cfg.Store.CountWork(ctx, kind, CountLimit)
}

// runRecord is one run to record and its job's counters after it.
type runRecord struct {
	run   JobRun
	state JobState
}

// Recorder limits.
const (
	recordBuffer = 1024 // runs waiting to be written; past it they are dropped and counted
	recordBatch  = 128  // runs written in one transaction
	pruneEvery   = 64   // runs recorded per job between two prunes
	pruneBatch   = 500  // rows deleted by one prune statement
)

// recorder writes run history and job counters for the processor, so that
// applying a run result never waits for the database. It owns its queue:
// the processor hands runs over without blocking (a full queue drops the
// run's history row and counts it; the next run's counters, which are
// absolute, repair the totals), and the recorder writes them in order, in
// batches.
type recorder struct {
	store    Store
	keep     int
	log      *slog.Logger
	in       chan runRecord
	done     chan struct{}
	stopping atomic.Bool
	dropped  atomic.Uint64
	pruned   map[string]int // runs recorded per job since its last prune; absent: never pruned
	db       *outage.Monitor
}

func newRecorder(s Store, keep int, log *slog.Logger, db *outage.Monitor) *recorder {
	return &recorder{store: s, keep: keep, log: log, db: db, in: make(chan runRecord, recordBuffer), done: make(chan struct{}), pruned: map[string]int{}}
}

// add hands a run over without blocking.
func (r *recorder) add(rec runRecord) {
	select {
	case r.in <- rec:
	default:
		if r.dropped.Add(1)%100 == 1 {
			r.log.Warn("run history: recorder behind, run not recorded", "job", rec.run.Job, "dropped", r.dropped.Load())
		}
	}
}

// run writes until stop; it is the only reader of in.
func (r *recorder) run() {
	defer close(r.done)
	batch := make([]runRecord, 0, recordBatch)
	for rec := range r.in {
		batch = append(batch[:0], rec)
	fill:
		for len(batch) < recordBatch {
			select {
			case rec, ok := <-r.in:
				if !ok {
					break fill
				}
				batch = append(batch, rec)
			default:
				break fill
			}
		}
		r.write(batch)
	}
}

// stop writes what is queued (one try per batch) and waits for it.
func (r *recorder) stop() {
	r.stopping.Store(true)
	close(r.in)
	<-r.done
}

// write records a batch, trying again with backoff while the database
// fails (for as long as it is away, five times for another error, once
// only while stopping), then prunes the jobs it touched.
func (r *recorder) write(batch []runRecord) {
	runs := make([]JobRun, len(batch))
	last := map[string]int{} // each job's last state in the batch
	var states []JobState
	for i, rec := range batch {
		runs[i] = rec.run
		if k, ok := last[rec.state.Name]; ok {
			states[k] = rec.state
			continue
		}
		last[rec.state.Name] = len(states)
		states = append(states, rec.state)
	}
	b := outage.Backoff{Min: 100 * time.Millisecond}
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		began := time.Now()
		err := r.store.RecordRuns(ctx, runs, states)
		cancel()
		lerr := r.db.Observe(began, err)
		if err == nil {
			break
		}
		if r.stopping.Load() || try >= 5 && !outage.Unavailable(err) {
			r.log.Error("run history not recorded", "runs", len(runs), "err", err)
			return
		}
		delay := b.Next()
		if lerr != nil {
			r.log.Warn("record run history; trying again", "runs", len(runs), "in", delay, "err", lerr)
		}
		time.Sleep(delay)
	}
	for _, s := range states {
		n, seen := r.pruned[s.Name]
		n += len(batch) // an upper bound is enough
		if seen && n < pruneEvery {
			r.pruned[s.Name] = n
			continue
		}
		r.pruned[s.Name] = 0
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := r.store.PruneRuns(ctx, s.Name, r.keep, pruneBatch)
		cancel()
		if err != nil {
			r.log.Warn("prune run history", "job", s.Name, "err", err)
		}
	}
}
