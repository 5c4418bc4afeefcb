package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/canalhq/canal/internal/migratelock"
	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/dialect"
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
	// LastStart is when the latest run started (recorded by the leader as
	// it starts, before it ends), nil if none did.
	LastStart *time.Time
}

// Store keeps recurring jobs' state and reads work items. It is the one
// seam between the processor and a database; the work items themselves live
// in the queue engine's table (internal/queue), which the store made by
// NewStore also gives the processor.
type Store interface {
	LoadJobs(ctx context.Context) ([]JobState, error)
	SaveJob(ctx context.Context, s JobState) error
	// GetWork reads one work item; ErrUnknownWork if there is none.
	GetWork(ctx context.Context, id string) (WorkItem, error)

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
	// before in the order newest first.
	ListWork(ctx context.Context, f WorkFilter, before WorkCursor, limit int) ([]WorkItem, error)
	// CountWork counts kind's items ("" for every kind) in each state,
	// looking at no more than limit+1 rows per state.
	CountWork(ctx context.Context, kind string, limit int) (map[WorkState]Count, error)
}

// Migrate creates or updates the jobs tables and the queue engine's (which
// adopts the work items of a database made before the engine). Processes
// started together take turns (migratelock).
func Migrate(ctx context.Context, db *gorm.DB) error {
	drv, err := dialect.For(db)
	if err != nil {
		return fmt.Errorf("migrate jobs: %w", err)
	}
	return migratelock.Do(ctx, db, func(ctx context.Context) error {
		if err := drv.Migrate(ctx); err != nil {
			return fmt.Errorf("migrate jobs: %w", err)
		}
		if err := db.WithContext(ctx).AutoMigrate(&jobRow{}, &runRow{}, &leaseRow{}, &commandRow{}); err != nil {
			return fmt.Errorf("migrate jobs tables: %w", err)
		}
		return migrateWindow(ctx, db) // window.go
	})
}

// NewStore returns the store for db; its work items run on the queue
// engine's driver for db's dialect. The store is an io.Closer: Close closes
// the statements it prepared, once its processor has stopped.
func NewStore(db *gorm.DB) (Store, error) {
	drv, err := dialect.For(db)
	if errors.Is(err, queue.ErrDialect) {
		return nil, fmt.Errorf("%w: %q", ErrDialect, db.Dialector.Name())
	}
	if err != nil {
		return nil, err
	}
	return gormStore{db: db.Session(&gorm.Session{SkipDefaultTransaction: true}), drv: drv}, nil
}

// Close closes the statements the store's driver prepared.
func (s gormStore) Close() error { return s.drv.Close() }

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
	// The latest run's start, by which process in which term of the
	// leader's lease (lease.go's fence).
	RunOwner     string `gorm:"column:run_owner;size:300;not null;default:''"`
	RunTerm      int64  `gorm:"column:run_term;not null;default:0"`
	RunStartedUS int64  `gorm:"column:run_started_us;not null;default:0"`
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

// gormStore keeps recurring jobs with gorm and work items on the engine.
type gormStore struct {
	db  *gorm.DB
	drv queue.Driver
}

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
			LastDuration: time.Duration(r.LastDurationNS), LastError: r.LastError, LastStart: fromUSPtr(r.RunStartedUS),
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
