package jobs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
)

// member is one Canal process of an in-process cluster: its own
// connection pool, process id and processor on a shared schema.
type member struct {
	p    *jobs.Processor
	mu   sync.Mutex
	runs []time.Time // starts of this member's runs of "tick"
	stop func()
}

func (m *member) ran() []time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]time.Time(nil), m.runs...)
}

// startMember starts a processor on url; with jobs, it registers "tick"
// (running every interval) and campaigns to lead.
func startMember(t *testing.T, url string, withJobs bool, interval time.Duration) *member {
	t.Helper()
	db, err := openDB(url)
	must(t, err)
	s, err := jobs.NewStore(db)
	must(t, err)
	m := &member{}
	m.p = jobs.NewProcessor(jobs.Config{Store: s})
	if withJobs {
		must(t, m.p.Register("tick", interval, true, func(context.Context) error {
			m.mu.Lock()
			m.runs = append(m.runs, time.Now())
			m.mu.Unlock()
			return nil
		}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.p.Run(ctx) }()
	var once sync.Once
	m.stop = func() {
		once.Do(func() {
			sctx, scancel := context.WithTimeout(context.Background(), wait)
			defer scancel()
			_ = m.p.Shutdown(sctx)
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			if sqlDB, err := db.DB(); err == nil {
				_ = sqlDB.Close()
			}
		})
	}
	t.Cleanup(m.stop)
	return m
}

func migratedSchema(t *testing.T) string {
	t.Helper()
	url := testenv.PostgresSchemaURL(t)
	db, err := openDB(url)
	must(t, err)
	must(t, jobs.Migrate(context.Background(), db))
	if sqlDB, err := db.DB(); err == nil {
		_ = sqlDB.Close()
	}
	return url
}

// leaderOf returns the member that leads, once one does.
func leaderOf(t *testing.T, ms []*member) (*member, []*member) {
	t.Helper()
	var lead *member
	testenv.Eventually(t, wait, "a leader", func() bool {
		l, err := ms[0].p.Leader(context.Background())
		if err != nil || l.Process == "" {
			return false
		}
		for _, m := range ms {
			if id, _ := m.p.Leader(context.Background()); id.Process == l.Process && m.p.IsLeader() {
				lead = m
				return true
			}
		}
		return false
	})
	var others []*member
	for _, m := range ms {
		if m != lead {
			others = append(others, m)
		}
	}
	return lead, others
}

// sqliteFile is a migrated SQLite file several processors can share.
func sqliteFile(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "canal-leader-")
	must(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "canal.db")
	db, err := openDB(path)
	must(t, err)
	must(t, jobs.Migrate(context.Background(), db))
	if sqlDB, err := db.DB(); err == nil {
		_ = sqlDB.Close()
	}
	return path
}

// Three processes share one database: only the leader runs the job, and
// every command posted to a follower goes through the follower's control
// channel to the leader, whose answer (or typed error) comes back. On
// SQLite (one process in production, three here) the leader and the
// askers poll instead of NOTIFY.
func TestCommandsOnAFollowerReachTheLeader(t *testing.T) {
	t.Run("postgres", func(t *testing.T) { commandsOnAFollower(t, migratedSchema(t)) })
	t.Run("sqlite", func(t *testing.T) { commandsOnAFollower(t, sqliteFile(t)) })
}

func commandsOnAFollower(t *testing.T, url string) {
	const interval = 100 * time.Millisecond
	var ms []*member
	for range 3 {
		ms = append(ms, startMember(t, url, true, interval))
	}
	lead, followers := leaderOf(t, ms)
	f := followers[0]
	ctx := context.Background()
	testenv.Eventually(t, wait, "the leader runs tick", func() bool { return len(lead.ran()) >= 3 })

	// Stop on a follower stops the job on the leader: no run starts after
	// the reply.
	st, err := f.p.Stop(ctx, "tick")
	must(t, err)
	replied := time.Now()
	if st.Running {
		t.Fatalf("stop's reply %+v says running", st)
	}
	// The follower's List reads the database, which says stopped too.
	list, err := followers[1].p.List(ctx)
	must(t, err)
	if len(list) != 1 || list[0].Name != "tick" || list[0].Running {
		t.Fatalf("follower's list %+v: want tick stopped", list)
	}
	// Errors keep their kind across processes.
	if _, err := f.p.Stop(ctx, "tick"); !errors.Is(err, jobs.ErrNotRunning) {
		t.Fatalf("second stop: %v, want ErrNotRunning", err)
	}
	if _, err := f.p.Start(ctx, "nope"); !errors.Is(err, jobs.ErrUnknownJob) {
		t.Fatalf("start of an unknown job: %v, want ErrUnknownJob", err)
	}
	if _, err := f.p.SetInterval(ctx, "tick", time.Nanosecond); !errors.Is(err, jobs.ErrInvalidInterval) {
		t.Fatalf("set interval 1ns: %v, want ErrInvalidInterval", err)
	}

	// Trigger on a follower runs the stopped job once, on the leader.
	before := len(lead.ran())
	_, err = f.p.Trigger(ctx, "tick")
	must(t, err)
	testenv.Eventually(t, wait, "the triggered run on the leader", func() bool { return len(lead.ran()) == before+1 })
	st, err = f.p.Status(ctx, "tick")
	must(t, err)
	if st.Running || st.Interval != interval {
		t.Fatalf("follower's status %+v: want stopped, every %s", st, interval)
	}
	testenv.Eventually(t, wait, "the triggered run recorded", func() bool {
		st, err := followers[1].p.Status(ctx, "tick")
		return err == nil && st.LastRun != nil && !st.LastRun.Before(replied.Truncate(time.Microsecond))
	})

	// Set the interval and start again, from another follower.
	st, err = followers[1].p.SetInterval(ctx, "tick", 2*interval)
	must(t, err)
	if st.Interval != 2*interval {
		t.Fatalf("set interval's reply %+v", st)
	}
	_, err = followers[1].p.Start(ctx, "tick")
	must(t, err)
	n := len(lead.ran())
	testenv.Eventually(t, wait, "runs again", func() bool { return len(lead.ran()) >= n+2 })

	for _, m := range followers {
		if r := m.ran(); len(r) > 0 {
			t.Fatalf("a follower ran tick %d times", len(r))
		}
	}
	// Between the stop's reply and the trigger, the leader started no run.
	for _, at := range lead.ran()[:before] {
		if at.After(replied) {
			t.Fatalf("a run started at %s, after the stop's reply at %s", at.Format(time.StampMicro), replied.Format(time.StampMicro))
		}
	}
}

// A process that registers no job (a standalone dashboard) lists the
// stored jobs and says clearly when no process leads; a leader that does
// not answer is a timeout, not a hang.
func TestNoLeaderIsAClearError(t *testing.T) {
	url := migratedSchema(t)
	ctx := context.Background()
	lead := startMember(t, url, true, time.Hour)
	dash := startMember(t, url, false, 0)
	_, _ = leaderOf(t, []*member{lead})
	st, err := dash.p.SetInterval(ctx, "tick", time.Minute)
	must(t, err)
	if st.Interval != time.Minute {
		t.Fatalf("dashboard's set interval: %+v", st)
	}
	lead.stop() // a clean stop lets the lease go

	list, err := dash.p.List(ctx)
	must(t, err)
	if len(list) != 1 || list[0].Name != "tick" || !list[0].Running || list[0].Interval != time.Minute {
		t.Fatalf("dashboard's list %+v: want the stored tick", list)
	}
	if l, err := dash.p.Leader(ctx); err != nil || l.Process != "" {
		t.Fatalf("leader %+v, %v: want none", l, err)
	}
	if _, err := dash.p.Stop(ctx, "tick"); !errors.Is(err, jobs.ErrNoLeader) {
		t.Fatalf("stop with no leader: %v, want ErrNoLeader", err)
	}
	// A job nobody stored is unknown, leader or not.
	if _, err := dash.p.Trigger(ctx, "nope"); !errors.Is(err, jobs.ErrUnknownJob) {
		t.Fatalf("trigger of an unknown job with no leader: %v, want ErrUnknownJob", err)
	}

	// A leader that holds the lease but never answers.
	db, err := openDB(url)
	must(t, err)
	defer func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	}()
	must(t, db.Exec(`UPDATE canal_job_leader SET owner = 'ghost', term = term + 1, until_us = ?`,
		time.Now().Add(time.Hour).UnixMicro()).Error)
	tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := dash.p.Trigger(tctx, "tick"); !errors.Is(err, jobs.ErrLeaderTimeout) {
		t.Fatalf("trigger with a silent leader: %v, want ErrLeaderTimeout", err)
	}
	// The command given up is deleted, so that a later leader does not
	// run it.
	testenv.Eventually(t, wait, "the command given up deleted", func() bool {
		var left int64
		must(t, db.Raw(`SELECT count(*) FROM canal_job_commands`).Scan(&left).Error)
		return left == 0
	})
}
