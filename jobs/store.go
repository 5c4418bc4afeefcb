package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// JobState is what survives a restart of a recurring job: whether it runs
// and how often (written by SaveJob), and its counters and last run
// (written by RecordRuns).
type JobState struct {
	Name     string
	Running  bool
	Interval time.Duration
	// Saved says Running and Interval were set by SaveJob; a row that only
	// RecordRuns wrote leaves them to the registration defaults.
	Saved bool

	Executions   int64
	Failures     int64
	LastRun      *time.Time
	LastDuration time.Duration
	LastError    string
}

// Store keeps recurring jobs' state and every accepted work item. It is the
// one seam between the processor and a database dialect.
//
// The claim is per item and conditional, so several processes sharing one
// database can later feed the same items: a worker only runs an item its
// claim won.
type Store interface {
	LoadJobs(ctx context.Context) ([]JobState, error)
	SaveJob(ctx context.Context, s JobState) error
	// InsertWork stores a new pending item.
	InsertWork(ctx context.Context, w WorkItem) error
	// ClaimWork moves a pending or retrying item to running for owner until
	// leaseUntil and counts the attempt; false means another claimant has
	// it or it is no longer waiting.
	ClaimWork(ctx context.Context, id, owner string, now, leaseUntil time.Time) (WorkItem, bool, error)
	// FinishWork records the outcome of an attempt (w.State, Attempts,
	// LastError, RunAt) if owner still holds the item; false means it lost
	// the claim.
	FinishWork(ctx context.Context, owner string, w WorkItem, now time.Time) (bool, error)
	// DropWork marks a waiting item dropped with reason.
	DropWork(ctx context.Context, id, reason string, now time.Time) error
	GetWork(ctx context.Context, id string) (WorkItem, error)
	// RecoverWork returns every item waiting to run, after moving back to
	// pending the running items that owner left behind (a crash) or whose
	// lease expired.
	RecoverWork(ctx context.Context, owner string, now time.Time) ([]WorkItem, error)

	// RecordRuns appends runs to the run history and stores each job's
	// counters and last run from states (SaveJob's fields are kept), in
	// one transaction.
	RecordRuns(ctx context.Context, runs []JobRun, states []JobState) error
	// PruneRuns deletes a job's runs older than its newest keep, at most
	// batch rows per statement, and reports how many it deleted.
	PruneRuns(ctx context.Context, job string, keep, batch int) (int64, error)
	// ListRuns returns up to limit of a job's runs with id below before
	// (0: any), newest first.
	ListRuns(ctx context.Context, job string, before int64, limit int) ([]JobRun, error)
	// ListWork returns up to limit items matching f that come after
	// before in the order newest created first (id breaks ties).
	ListWork(ctx context.Context, f WorkFilter, before WorkCursor, limit int) ([]WorkItem, error)
	// CountWork counts kind's items ("" for every kind) in each state,
	// looking at no more than limit+1 rows per state.
	CountWork(ctx context.Context, kind string, limit int) (map[WorkState]Count, error)
}

// Migrate creates or updates the jobs tables.
func Migrate(ctx context.Context, db *gorm.DB) error {
	if err := db.WithContext(ctx).AutoMigrate(&jobRow{}, &workRow{}, &runRow{}); err != nil {
		return fmt.Errorf("migrate jobs tables: %w", err)
	}
	return nil
}

// NewStore returns the store for db's dialect: the only place that looks at it.
func NewStore(db *gorm.DB) (Store, error) {
	switch name := db.Dialector.Name(); name {
	case "sqlite":
		return sqliteStore{gormStore{db}}, nil
	case "postgres":
		return postgresStore{gormStore{db}}, nil
	default:
		return nil, fmt.Errorf("%w: %q", ErrDialect, name)
	}
}

type jobRow struct {
	Name       string `gorm:"column:name;primaryKey;size:200"`
	Running    bool   `gorm:"column:running;not null"`
	IntervalMS int64  `gorm:"column:interval_ms;not null"`
	UpdatedUS  int64  `gorm:"column:updated_us;not null"`
	// Saved: running and interval_ms were set by SaveJob (rows from before
	// this column existed all were).
	Saved          bool   `gorm:"column:saved;not null;default:true"`
	Executions     int64  `gorm:"column:executions;not null;default:0"`
	Failures       int64  `gorm:"column:failures;not null;default:0"`
	LastRunUS      int64  `gorm:"column:last_run_us;not null;default:0"`
	LastDurationNS int64  `gorm:"column:last_duration_ns;not null;default:0"`
	LastError      string `gorm:"column:last_error;type:text"`
}

func (jobRow) TableName() string { return "canal_jobs" }

// runRow is one run of a recurring job; (job, id) serves the newest-first
// pages and the prune.
type runRow struct {
	ID         int64  `gorm:"column:id;primaryKey;autoIncrement;index:canal_job_runs_job,priority:2"`
	Job        string `gorm:"column:job;size:200;not null;index:canal_job_runs_job,priority:1"`
	StartedUS  int64  `gorm:"column:started_us;not null"`
	DurationNS int64  `gorm:"column:duration_ns;not null"`
	Error      string `gorm:"column:error;type:text"`
	Manual     bool   `gorm:"column:manual;not null"`
}

func (runRow) TableName() string { return "canal_job_runs" }

func (r runRow) run() JobRun {
	return JobRun{ID: r.ID, Job: r.Job, At: fromUS(r.StartedUS), Duration: time.Duration(r.DurationNS), Error: r.Error, Manual: r.Manual}
}

// workRow stores times as Unix microseconds: compared in SQL the same way on
// every dialect.
type workRow struct {
	ID           string `gorm:"column:id;primaryKey;size:36;index:canal_work_created,priority:2;index:canal_work_state_created,priority:3;index:canal_work_kind_created,priority:3"`
	Kind         string `gorm:"column:kind;size:200;not null;index:canal_work_kind_created,priority:1"`
	Priority     int    `gorm:"column:priority;not null;index:canal_work_waiting,priority:2"`
	Payload      string `gorm:"column:payload;type:text"`
	State        string `gorm:"column:state;size:16;not null;index:canal_work_waiting,priority:1;index:canal_work_state_created,priority:1"`
	Attempts     int    `gorm:"column:attempts;not null"`
	MaxAttempts  int    `gorm:"column:max_attempts;not null"`
	LastError    string `gorm:"column:last_error;type:text"`
	Owner        string `gorm:"column:owner;size:200"`
	LeaseUntilUS int64  `gorm:"column:lease_until_us;not null"`
	RunAtUS      int64  `gorm:"column:run_at_us;not null"`
	CreatedUS    int64  `gorm:"column:created_us;not null;index:canal_work_waiting,priority:3;index:canal_work_created,priority:1;index:canal_work_state_created,priority:2;index:canal_work_kind_created,priority:2"`
	UpdatedUS    int64  `gorm:"column:updated_us;not null"`
	StartedUS    int64  `gorm:"column:started_us;not null"`
	FinishedUS   int64  `gorm:"column:finished_us;not null"`
}

func (workRow) TableName() string { return "canal_work_items" }

func us(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromUS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func fromUSPtr(v int64) *time.Time {
	if v == 0 {
		return nil
	}
	t := fromUS(v)
	return &t
}

func toRow(w WorkItem) workRow {
	r := workRow{
		ID: w.ID, Kind: w.Kind, Priority: int(w.Priority), Payload: string(w.Payload),
		State: string(w.State), Attempts: w.Attempts, MaxAttempts: w.MaxAttempts, LastError: w.LastError,
		RunAtUS: us(w.RunAt), CreatedUS: us(w.CreatedAt), UpdatedUS: us(w.UpdatedAt),
	}
	if w.StartedAt != nil {
		r.StartedUS = us(*w.StartedAt)
	}
	if w.FinishedAt != nil {
		r.FinishedUS = us(*w.FinishedAt)
	}
	return r
}

func (r workRow) item() WorkItem {
	w := WorkItem{
		ID: r.ID, Kind: r.Kind, Priority: Priority(r.Priority), State: WorkState(r.State),
		Attempts: r.Attempts, MaxAttempts: r.MaxAttempts, LastError: r.LastError,
		CreatedAt: fromUS(r.CreatedUS), UpdatedAt: fromUS(r.UpdatedUS), RunAt: fromUS(r.RunAtUS),
		StartedAt: fromUSPtr(r.StartedUS), FinishedAt: fromUSPtr(r.FinishedUS),
	}
	if r.Payload != "" {
		w.Payload = json.RawMessage(r.Payload)
	}
	return w
}

// gormStore is the portable part; dialects embed it and add their claim.
type gormStore struct{ db *gorm.DB }

func (s gormStore) LoadJobs(ctx context.Context) ([]JobState, error) {
	var rows []jobRow
	if err := s.db.WithContext(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("load jobs: %w", err)
	}
	out := make([]JobState, len(rows))
	for i, r := range rows {
		out[i] = JobState{
			Name: r.Name, Running: r.Running, Interval: time.Duration(r.IntervalMS) * time.Millisecond, Saved: r.Saved,
			Executions: r.Executions, Failures: r.Failures, LastRun: fromUSPtr(r.LastRunUS),
			LastDuration: time.Duration(r.LastDurationNS), LastError: r.LastError,
		}
	}
	return out, nil
}

func (s gormStore) SaveJob(ctx context.Context, j JobState) error {
	row := jobRow{Name: j.Name, Running: j.Running, IntervalMS: j.Interval.Milliseconds(), UpdatedUS: time.Now().UnixMicro(), Saved: true}
	err := s.db.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "name"}},
		DoUpdates: clause.AssignmentColumns([]string{"running", "interval_ms", "updated_us", "saved"}),
	}).Create(&row).Error
	if err != nil {
		return fmt.Errorf("save job %q: %w", j.Name, err)
	}
	return nil
}

func (s gormStore) InsertWork(ctx context.Context, w WorkItem) error {
	row := toRow(w)
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		return fmt.Errorf("insert work %s: %w", w.ID, err)
	}
	return nil
}

// dbText makes s storable as text on every dialect: PostgreSQL refuses
// invalid UTF-8 and NUL bytes, which a handler's error may carry.
func dbText(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}

// storableID says whether id can be looked up at all: an id PostgreSQL
// cannot hold as text names no item.
func storableID(id string) bool {
	return utf8.ValidString(id) && !strings.ContainsRune(id, 0)
}

func (s gormStore) FinishWork(ctx context.Context, owner string, w WorkItem, now time.Time) (bool, error) {
	updates := map[string]any{
		"state": string(w.State), "attempts": w.Attempts, "last_error": dbText(w.LastError),
		"run_at_us": us(w.RunAt), "updated_us": us(now), "owner": "", "lease_until_us": 0,
	}
	if w.FinishedAt != nil {
		updates["finished_us"] = us(*w.FinishedAt)
	}
	res := s.db.WithContext(ctx).Model(&workRow{}).
		Where("id = ? AND owner = ? AND state = ?", w.ID, owner, string(WorkRunning)).Updates(updates)
	if res.Error != nil {
		return false, fmt.Errorf("finish work %s: %w", w.ID, res.Error)
	}
	return res.RowsAffected == 1, nil
}

func (s gormStore) DropWork(ctx context.Context, id, reason string, now time.Time) error {
	err := s.db.WithContext(ctx).Model(&workRow{}).
		Where("id = ? AND state IN ?", id, []string{string(WorkPending), string(WorkRetrying)}).
		Updates(map[string]any{"state": string(WorkDropped), "last_error": dbText(reason), "updated_us": us(now), "finished_us": us(now)}).Error
	if err != nil {
		return fmt.Errorf("drop work %s: %w", id, err)
	}
	return nil
}

func (s gormStore) GetWork(ctx context.Context, id string) (WorkItem, error) {
	if !storableID(id) {
		return WorkItem{}, fmt.Errorf("work %q: %w", id, ErrUnknownWork)
	}
	var row workRow
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return WorkItem{}, fmt.Errorf("work %q: %w", id, ErrUnknownWork)
	}
	if err != nil {
		return WorkItem{}, fmt.Errorf("get work %s: %w", id, err)
	}
	return row.item(), nil
}

func (s gormStore) RecoverWork(ctx context.Context, owner string, now time.Time) ([]WorkItem, error) {
	var rows []workRow
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		err := tx.Model(&workRow{}).
			Where("state = ? AND (owner = ? OR lease_until_us < ?)", string(WorkRunning), owner, us(now)).
			Updates(map[string]any{"state": string(WorkPending), "owner": "", "lease_until_us": 0, "updated_us": us(now)}).Error
		if err != nil {
			return err
		}
		return tx.Where("state IN ?", []string{string(WorkPending), string(WorkRetrying)}).
			Order("priority, created_us").Find(&rows).Error
	})
	if err != nil {
		return nil, fmt.Errorf("recover work: %w", err)
	}
	out := make([]WorkItem, len(rows))
	for i, r := range rows {
		out[i] = r.item()
	}
	return out, nil
}

// claimSet is the assignment every dialect's claim makes.
const claimSet = `SET state = 'running', owner = ?, lease_until_us = ?, attempts = attempts + 1, started_us = ?, updated_us = ?`

func (s gormStore) claimWith(ctx context.Context, query string, id, owner string, now, leaseUntil time.Time) (WorkItem, bool, error) {
	var rows []workRow
	err := s.db.WithContext(ctx).Raw(query, owner, us(leaseUntil), us(now), us(now), id).Scan(&rows).Error
	if err != nil {
		return WorkItem{}, false, fmt.Errorf("claim work %s: %w", id, err)
	}
	if len(rows) == 0 {
		return WorkItem{}, false, nil
	}
	return rows[0].item(), true, nil
}

// postgresStore claims with FOR UPDATE SKIP LOCKED: a row another process
// is claiming right now is skipped, not waited for.
type postgresStore struct{ gormStore }

func (s postgresStore) ClaimWork(ctx context.Context, id, owner string, now, leaseUntil time.Time) (WorkItem, bool, error) {
	return s.claimWith(ctx, `UPDATE canal_work_items `+claimSet+`
WHERE id = (SELECT id FROM canal_work_items WHERE id = ? AND state IN ('pending', 'retrying') FOR UPDATE SKIP LOCKED)
RETURNING *`, id, owner, now, leaseUntil)
}

// sqliteStore claims with a conditional lease update: SQLite has one
// writer at a time, so the WHERE clause alone decides who wins.
type sqliteStore struct{ gormStore }

func (s sqliteStore) ClaimWork(ctx context.Context, id, owner string, now, leaseUntil time.Time) (WorkItem, bool, error) {
	return s.claimWith(ctx, `UPDATE canal_work_items `+claimSet+`
WHERE id = ? AND state IN ('pending', 'retrying')
RETURNING *`, id, owner, now, leaseUntil)
}

// recordCounters upserts a job's counters; a new row is not Saved, so the
// job's registration defaults still decide whether it runs.
const recordCounters = `INSERT INTO canal_jobs (name, running, interval_ms, updated_us, saved, executions, failures, last_run_us, last_duration_ns, last_error)
VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET executions = excluded.executions, failures = excluded.failures,
last_run_us = excluded.last_run_us, last_duration_ns = excluded.last_duration_ns, last_error = excluded.last_error`

func (s gormStore) RecordRuns(ctx context.Context, runs []JobRun, states []JobState) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if len(runs) > 0 {
			rows := make([]runRow, len(runs))
			for i, r := range runs {
				rows[i] = runRow{Job: r.Job, StartedUS: us(r.At), DurationNS: int64(r.Duration), Error: dbText(r.Error), Manual: r.Manual}
			}
			if err := tx.Create(&rows).Error; err != nil {
				return err
			}
		}
		now := time.Now().UnixMicro()
		for _, j := range states {
			var last int64
			if j.LastRun != nil {
				last = us(*j.LastRun)
			}
			err := tx.Exec(recordCounters, j.Name, j.Running, now, false,
				j.Executions, j.Failures, last, int64(j.LastDuration), dbText(j.LastError)).Error
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record %d runs: %w", len(runs), err)
	}
	return nil
}

// maxPruneStatements bounds one PruneRuns call; what is left goes next time.
const maxPruneStatements = 20

func (s gormStore) PruneRuns(ctx context.Context, job string, keep, batch int) (int64, error) {
	db := s.db.WithContext(ctx)
	// The oldest run to keep: everything below it goes.
	var ids []int64
	err := db.Model(&runRow{}).Where("job = ?", job).Order("id DESC").Offset(keep-1).Limit(1).Pluck("id", &ids).Error
	if err != nil {
		return 0, fmt.Errorf("prune runs of %q: %w", job, err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	var total int64
	for range maxPruneStatements {
		res := db.Exec(`DELETE FROM canal_job_runs WHERE id IN (
SELECT id FROM canal_job_runs WHERE job = ? AND id < ? ORDER BY id LIMIT ?)`, job, ids[0], batch)
		if res.Error != nil {
			return total, fmt.Errorf("prune runs of %q: %w", job, res.Error)
		}
		total += res.RowsAffected
		if res.RowsAffected < int64(batch) {
			break
		}
	}
	return total, nil
}

func (s gormStore) ListRuns(ctx context.Context, job string, before int64, limit int) ([]JobRun, error) {
	q := s.db.WithContext(ctx).Where("job = ?", job)
	if before > 0 {
		q = q.Where("id < ?", before)
	}
	var rows []runRow
	if err := q.Order("id DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list runs of %q: %w", job, err)
	}
	out := make([]JobRun, len(rows))
	for i, r := range rows {
		out[i] = r.run()
	}
	return out, nil
}

func (s gormStore) ListWork(ctx context.Context, f WorkFilter, before WorkCursor, limit int) ([]WorkItem, error) {
	// The payload stays out: lists never show it and it may be large.
	q := s.db.WithContext(ctx).Omit("payload")
	if f.State != "" {
		q = q.Where("state = ?", string(f.State))
	}
	if f.Kind != "" {
		if !storableID(f.Kind) {
			return nil, nil
		}
		q = q.Where("kind = ?", f.Kind)
	}
	if !before.IsZero() {
		// A row value comparison: both dialects walk the index from there.
		q = q.Where("(created_us, id) < (?, ?)", before.CreatedUS, before.ID)
	}
	var rows []workRow
	if err := q.Order("created_us DESC, id DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list work: %w", err)
	}
	out := make([]WorkItem, len(rows))
	for i, r := range rows {
		out[i] = r.item()
	}
	return out, nil
}

func (s gormStore) CountWork(ctx context.Context, kind string, limit int) (map[WorkState]Count, error) {
	out := make(map[WorkState]Count, 6)
	if kind != "" && !storableID(kind) {
		return out, nil
	}
	for _, st := range []WorkState{WorkPending, WorkRunning, WorkRetrying, WorkDone, WorkFailed, WorkDropped} {
		// Counting a LIMITed subquery reads at most limit+1 index entries.
		sub := s.db.Model(&workRow{}).Select("1").Where("state = ?", string(st))
		if kind != "" {
			sub = sub.Where("kind = ?", kind)
		}
		var n int64
		err := s.db.WithContext(ctx).Table("(?) AS bounded", sub.Limit(limit+1)).Count(&n).Error
		if err != nil {
			return nil, fmt.Errorf("count %s work: %w", st, err)
		}
		c := Count{N: int(n)}
		if c.N > limit {
			c = Count{N: limit, More: true}
		}
		out[st] = c
	}
	return out, nil
}
