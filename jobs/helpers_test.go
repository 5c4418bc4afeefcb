package jobs_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// dbs are the databases every store test runs against; PostgreSQL skips
// unless CANAL_TEST_POSTGRES is set.
var dbs = []struct {
	name string
	open func(testing.TB) *gorm.DB
}{
	{"sqlite", testenv.SQLite},
	{"postgres", testenv.Postgres},
}

// eachStore runs f against a migrated store on every database.
func eachStore(t *testing.T, f func(t *testing.T, db *gorm.DB, s jobs.Store)) {
	for _, d := range dbs {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t)
			if err := jobs.Migrate(context.Background(), db); err != nil {
				t.Fatal(err)
			}
			s, err := jobs.NewStore(db)
			if err != nil {
				t.Fatal(err)
			}
			f(t, db, s)
		})
	}
}

const wait = 15 * time.Second // generous bound for conditions, never a timing assertion

// running starts p.Run and stops it when the test ends.
func running(t testing.TB, p *jobs.Processor) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// collector reads a processor's events into a list the test can query.
type collector struct {
	mu     sync.Mutex
	events []jobs.Event
}

func collect(t testing.TB, p *jobs.Processor) *collector {
	c := &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case e := <-p.Events():
				c.mu.Lock()
				c.events = append(c.events, e)
				c.mu.Unlock()
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func (c *collector) all(typ jobs.EventType) []jobs.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []jobs.Event
	for _, e := range c.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func (c *collector) has(typ jobs.EventType) bool { return len(c.all(typ)) > 0 }

// memStore is an in-memory Store of recurring jobs for tests. It has no
// work items: those live in the queue engine's table (sqliteStore).
type memStore struct {
	mu   sync.Mutex
	jobs map[string]jobs.JobState
}

func newMemStore() *memStore { return &memStore{jobs: map[string]jobs.JobState{}} }

// sqliteStore is a migrated store on a private SQLite database: the
// smallest store that runs work items.
func sqliteStore(t testing.TB) jobs.Store {
	t.Helper()
	db := testenv.SQLite(t)
	if err := jobs.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	s, err := jobs.NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (m *memStore) LoadJobs(context.Context) ([]jobs.JobState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []jobs.JobState
	for _, j := range m.jobs {
		out = append(out, j)
	}
	return out, nil
}

func (m *memStore) SaveJob(_ context.Context, s jobs.JobState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.jobs[s.Name]
	cur.Name, cur.Running, cur.Interval, cur.Saved = s.Name, s.Running, s.Interval, true
	m.jobs[s.Name] = cur
	return nil
}

// The memory store keeps no run history; it keeps the counters.
func (m *memStore) RecordRuns(_ context.Context, _ []jobs.JobRun, states []jobs.JobState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range states {
		cur, ok := m.jobs[s.Name]
		if !ok {
			cur = jobs.JobState{Name: s.Name}
		}
		cur.Executions, cur.Failures, cur.LastRun, cur.LastDuration, cur.LastError = s.Executions, s.Failures, s.LastRun, s.LastDuration, s.LastError
		m.jobs[s.Name] = cur
	}
	return nil
}

func (m *memStore) PruneRuns(context.Context, string, int, int) (int64, error) { return 0, nil }

func (m *memStore) ListRuns(context.Context, string, int64, int) ([]jobs.JobRun, error) {
	return nil, nil
}

func (m *memStore) ListWork(context.Context, jobs.WorkFilter, jobs.WorkCursor, int) ([]jobs.WorkItem, error) {
	return nil, nil
}

func (m *memStore) CountWork(context.Context, string, int) (map[jobs.WorkState]jobs.Count, error) {
	return map[jobs.WorkState]jobs.Count{}, nil
}

func (m *memStore) GetWork(_ context.Context, id string) (jobs.WorkItem, error) {
	return jobs.WorkItem{}, jobs.ErrUnknownWork
}

// state reads an item's state from s, failing the test on error.
func state(t testing.TB, s jobs.Store, id string) jobs.WorkItem {
	t.Helper()
	w, err := s.GetWork(context.Background(), id)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("GetWork(%s): %v", id, err)
	}
	return w
}
