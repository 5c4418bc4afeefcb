package outbox

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// dialects runs f once per database: SQLite always, PostgreSQL when
// CANAL_TEST_POSTGRES is set (testenv skips it otherwise).
func dialects(t *testing.T, f func(t *testing.T, db *gorm.DB)) {
	t.Helper()
	for _, d := range []struct {
		name string
		open func(testing.TB) *gorm.DB
	}{
		{"sqlite", testenv.SQLite},
		{"postgres", testenv.Postgres},
	} {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			db := d.open(t)
			if err := Migrate(context.Background(), db); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			f(t, db)
		})
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testConfig is fast: tiny backoff and poll, so tests wait on conditions
// that become true quickly.
func testConfig() Config {
	return Config{
		Workers:        8,
		PollInterval:   20 * time.Millisecond,
		BackoffBase:    time.Millisecond,
		BackoffMax:     5 * time.Millisecond,
		StatsInterval:  50 * time.Millisecond,
		Logger:         quietLogger(),
		Lease:          10 * time.Second,
		PublishTimeout: 5 * time.Second,
	}
}

// runRelay runs r until the test ends and checks that Run returns.
func runRelay(t testing.TB, r *Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newRelay(t testing.TB, db *gorm.DB, cfg Config) *Relay {
	t.Helper()
	r, err := New(db, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// addN commits n messages of topic, cycling over keys, one transaction each,
// and returns their ids in commit order.
func addN(t testing.TB, r *Relay, topic string, keys []string, n int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for i := range n {
		key := ""
		if len(keys) > 0 {
			key = keys[i%len(keys)]
		}
		err := r.Transaction(context.Background(), func(tx *gorm.DB) error {
			id, err := Add(context.Background(), tx, Message{Topic: topic, Key: key, Payload: map[string]int{"n": i}})
			ids = append(ids, id)
			return err
		})
		if err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
	}
	return ids
}

// recorder is a publisher that remembers what it delivered.
type recorder struct {
	mu   sync.Mutex
	got  []Delivery
	fail func(Delivery) error // nil: always succeed
}

func (p *recorder) Publish(ctx context.Context, d Delivery) error {
	if p.fail != nil {
		if err := p.fail(d); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, d)
	return nil
}

func (p *recorder) deliveries() []Delivery {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Delivery(nil), p.got...)
}

func (p *recorder) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got)
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func mustGet(t testing.TB, r *Relay, id string) Record {
	t.Helper()
	rec, err := r.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	return rec
}

func statusOf(t testing.TB, r *Relay, id string) Status { return mustGet(t, r, id).Status }
