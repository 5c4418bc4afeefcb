package jobs

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// The leader of the recurring jobs holds one lease row: an owner (a
// process id), a term that grows at every change of owner, and an end
// renewed by the leader's heartbeat. A process takes the lease only when it
// has ended (or was released), so at most one process holds a live lease;
// each run of a job starts only through a statement that checks the lease
// is still this owner's and this term's (the fence), so a leader that lost
// the lease while paused starts nothing more.
const leaseName = "jobs"

// leaseRow is the leader's lease.
type leaseRow struct {
	Name      string `gorm:"column:name;primaryKey;size:100"`
	Owner     string `gorm:"column:owner;size:300;not null;default:''"`
	Term      int64  `gorm:"column:term;not null;default:0"`
	UntilUS   int64  `gorm:"column:until_us;not null;default:0"`
	UpdatedUS int64  `gorm:"column:updated_us;not null;default:0"`
}

func (leaseRow) TableName() string { return "canal_job_leader" }

// Leader is the lease as stored: who leads the recurring jobs, since which
// term, and until when unless renewed.
type Leader struct {
	Process string    `json:"process"` // "" when nobody holds a live lease
	Term    int64     `json:"term"`
	Until   time.Time `json:"until"`
}

// leaseStore is the store side of the election, the fence and the
// forwarded commands; the gorm store implements it on both dialects.
type leaseStore interface {
	// acquire takes the lease for owner if it has ended (or is owner's
	// already) and returns the new term, 0 if another process holds it.
	acquire(ctx context.Context, owner string, nowUS, untilUS int64) (int64, error)
	// renew extends owner's lease of term; false if it is no longer theirs.
	renew(ctx context.Context, owner string, term, nowUS, untilUS int64) (bool, error)
	// release ends owner's lease of term at once (a clean stop).
	release(ctx context.Context, owner string, term int64) error
	// leader reads the lease.
	leader(ctx context.Context) (leaseRow, error)
	// fence records that job's run starts now under owner's lease of
	// term, if that lease is still live; false means it is not.
	fence(ctx context.Context, job, owner string, term, nowUS int64) (bool, error)
	// ensureJobs writes the registration defaults of jobs that have no
	// row or one SaveJob never wrote, so that every process reads the
	// jobs' state from the database.
	ensureJobs(ctx context.Context, states []JobState) error
	LoadJobs(ctx context.Context) ([]JobState, error)

	commandStore
}

func (s gormStore) acquire(ctx context.Context, owner string, nowUS, untilUS int64) (int64, error) {
	db := s.db.WithContext(ctx)
	err := db.Clauses(clause.OnConflict{DoNothing: true}).Create(&leaseRow{Name: leaseName, UpdatedUS: nowUS}).Error
	if err != nil {
		return 0, fmt.Errorf("acquire lease: %w", err)
	}
	var terms []int64
	err = db.Raw(`UPDATE canal_job_leader SET owner = ?, term = term + 1, until_us = ?, updated_us = ?
WHERE name = ? AND (until_us < ? OR owner = '' OR owner = ?) RETURNING term`,
		owner, untilUS, nowUS, leaseName, nowUS, owner).Scan(&terms).Error
	if err != nil {
		return 0, fmt.Errorf("acquire lease: %w", err)
	}
	if len(terms) == 0 {
		return 0, nil
	}
	return terms[0], nil
}

func (s gormStore) renew(ctx context.Context, owner string, term, nowUS, untilUS int64) (bool, error) {
	res := s.db.WithContext(ctx).Exec(`UPDATE canal_job_leader SET until_us = ?, updated_us = ?
WHERE name = ? AND owner = ? AND term = ?`, untilUS, nowUS, leaseName, owner, term)
	if res.Error != nil {
		return false, fmt.Errorf("renew lease: %w", res.Error)
	}
	return res.RowsAffected == 1, nil
}

func (s gormStore) release(ctx context.Context, owner string, term int64) error {
	err := s.db.WithContext(ctx).Exec(`UPDATE canal_job_leader SET owner = '', until_us = 0
WHERE name = ? AND owner = ? AND term = ?`, leaseName, owner, term).Error
	if err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}

func (s gormStore) leader(ctx context.Context) (leaseRow, error) {
	var rows []leaseRow
	if err := s.db.WithContext(ctx).Where("name = ?", leaseName).Limit(1).Find(&rows).Error; err != nil {
		return leaseRow{}, fmt.Errorf("read lease: %w", err)
	}
	if len(rows) == 0 {
		return leaseRow{Name: leaseName}, nil
	}
	return rows[0], nil
}

func (s gormStore) fence(ctx context.Context, job, owner string, term, nowUS int64) (bool, error) {
	res := s.db.WithContext(ctx).Exec(`UPDATE canal_jobs SET run_owner = ?, run_term = ?, run_started_us = ?
WHERE name = ? AND EXISTS (SELECT 1 FROM canal_job_leader l WHERE l.name = ? AND l.owner = ? AND l.term = ? AND l.until_us > ?)`,
		owner, term, nowUS, job, leaseName, owner, term, nowUS)
	if res.Error != nil {
		return false, fmt.Errorf("fence run of %q: %w", job, res.Error)
	}
	return res.RowsAffected == 1, nil
}

func (s gormStore) ensureJobs(ctx context.Context, states []JobState) error {
	now := time.Now().UnixMicro()
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for _, j := range states {
			// A row SaveJob wrote keeps its state; any other takes the
			// registration's (still not Saved: a new default in the code
			// wins at the next takeover).
			err := tx.Exec(`INSERT INTO canal_jobs (name, running, interval_ms, updated_us, saved) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET running = excluded.running, interval_ms = excluded.interval_ms, updated_us = excluded.updated_us
WHERE canal_jobs.saved = ?`, j.Name, j.Running, j.Interval.Milliseconds(), now, false, false).Error
			if err != nil {
				return fmt.Errorf("ensure job %q: %w", j.Name, err)
			}
		}
		return nil
	})
}

// LocalLeader is Leader's Process without a store: this process, the only
// one, leads.
const LocalLeader = "local"

// Leader reports who leads the recurring jobs, from the database; without
// a store this process is the only one and leads (LocalLeader).
func (p *Processor) Leader(ctx context.Context) (Leader, error) {
	if p.lease == nil {
		return Leader{Process: LocalLeader, Term: 1}, nil
	}
	row, err := p.lease.leader(ctx)
	if err != nil {
		return Leader{}, err
	}
	l := Leader{Term: row.Term, Until: fromUS(row.UntilUS)}
	if row.Owner != "" && row.UntilUS > us(p.now()) {
		l.Process = row.Owner
	}
	return l, nil
}
