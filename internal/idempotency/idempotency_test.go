package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/idempotency"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// thing is the business write a request makes.
type thing struct{ ID int64 }

func (thing) TableName() string { return "idem_test_things" }

// clock is a test clock the store reads.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.now = c.now.Add(d) }

func eachDB(t *testing.T, f func(t *testing.T, db *gorm.DB)) {
	for _, d := range []struct {
		name string
		open func(testing.TB) *gorm.DB
	}{{"sqlite", testenv.SQLite}, {"postgres", testenv.Postgres}} {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t)
			if err := idempotency.Migrate(context.Background(), db); err != nil {
				t.Fatal(err)
			}
			if err := db.AutoMigrate(&thing{}); err != nil {
				t.Fatal(err)
			}
			f(t, db)
		})
	}
}

// create is a request's write: one thing, answered 201 with its id.
func create(tx *gorm.DB) (idempotency.Response, error) {
	th := thing{}
	if err := tx.Create(&th).Error; err != nil {
		return idempotency.Response{}, err
	}
	return idempotency.Response{Status: 201, Body: fmt.Appendf(nil, `{"id":%d}`, th.ID), Location: fmt.Sprintf("/things/%d", th.ID)}, nil
}

func things(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	var n int64
	if err := db.Model(&thing{}).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDoOnceThenReplay(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		clk := &clock{now: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
		s := idempotency.New(db, idempotency.Config{Clock: clk.Now})
		req := idempotency.Request{Scope: idempotency.Scope("ops", "POST /things"), Key: "k-1", Fingerprint: idempotency.Fingerprint("POST", "/things", []byte(`{"a":1}`))}

		first, replayed, err := s.Do(ctx, nil, req, create)
		if err != nil || replayed || first.Status != 201 {
			t.Fatalf("first: %+v replayed %v, %v", first, replayed, err)
		}
		// The answer was lost; the client tries again.
		again, replayed, err := s.Do(ctx, nil, req, create)
		if err != nil || !replayed || again.Status != 201 || string(again.Body) != string(first.Body) || again.Location != first.Location {
			t.Fatalf("retry: %+v replayed %v, %v; want %+v replayed", again, replayed, err, first)
		}
		if n := things(t, db); n != 1 {
			t.Fatalf("%d things, want 1", n)
		}

		other := req
		other.Fingerprint = idempotency.Fingerprint("POST", "/things", []byte(`{"a":2}`))
		if _, _, err := s.Do(ctx, nil, other, create); !errors.Is(err, idempotency.ErrMismatch) {
			t.Fatalf("same key, other body: %v, want ErrMismatch", err)
		}
		// Another principal's key of the same name is another key.
		viewer := req
		viewer.Scope = idempotency.Scope("ana", "POST /things")
		if _, replayed, err := s.Do(ctx, nil, viewer, create); err != nil || replayed {
			t.Fatalf("other scope: replayed %v, %v", replayed, err)
		}

		// A failed write records nothing: the key may be tried again.
		failing := req
		failing.Key = "k-fail"
		boom := errors.New("boom")
		if _, _, err := s.Do(ctx, nil, failing, func(tx *gorm.DB) (idempotency.Response, error) {
			if _, err := create(tx); err != nil {
				return idempotency.Response{}, err
			}
			return idempotency.Response{}, boom
		}); !errors.Is(err, boom) {
			t.Fatalf("failing write: %v", err)
		}
		if _, replayed, err := s.Do(ctx, nil, failing, create); err != nil || replayed {
			t.Fatalf("after a failure: replayed %v, %v", replayed, err)
		}
		if n := things(t, db); n != 3 {
			t.Fatalf("%d things, want 3 (the failed write rolled back)", n)
		}

		// After the TTL the key is forgotten: the cleaner deletes it, and
		// even before that it no longer replays.
		clk.Add(24*time.Hour + time.Second)
		if _, replayed, err := s.Do(ctx, nil, req, create); err != nil || replayed {
			t.Fatalf("expired key: replayed %v, %v", replayed, err)
		}
		n, err := s.Cleanup(ctx)
		if err != nil || n != 2 { // viewer's and k-fail's; k-1 was renewed
			t.Fatalf("cleanup: %d, %v; want 2", n, err)
		}
		if _, replayed, err := s.Do(ctx, nil, viewer, create); err != nil || replayed {
			t.Fatalf("cleaned-up key: replayed %v, %v", replayed, err)
		}
	})
}

// A second request for a key while the first is being handled is refused
// at once in the same process.
func TestDoInProgress(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		s := idempotency.New(db, idempotency.Config{})
		req := idempotency.Request{Scope: "s", Key: "k", Fingerprint: "f"}
		inside, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			_, _, err := s.Do(ctx, nil, req, func(tx *gorm.DB) (idempotency.Response, error) {
				close(inside)
				<-release
				return create(tx)
			})
			done <- err
		}()
		<-inside
		if _, _, err := s.Do(ctx, nil, req, create); !errors.Is(err, idempotency.ErrInProgress) {
			t.Fatalf("concurrent request: %v, want ErrInProgress", err)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// Two processes (two stores) racing on one key make one write; each gets
// the first's answer.
func TestDoAcrossProcesses(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		req := idempotency.Request{Scope: "s", Key: "race", Fingerprint: "f"}
		const n = 6
		bodies := make([]string, n)
		var fresh atomic.Int64
		var wg sync.WaitGroup
		for i := range n {
			s := idempotency.New(db, idempotency.Config{})
			wg.Go(func() {
				resp, replayed, err := s.Do(ctx, nil, req, create)
				if err != nil {
					t.Errorf("process %d: %v", i, err)
					return
				}
				if !replayed {
					fresh.Add(1)
				}
				bodies[i] = string(resp.Body)
			})
		}
		wg.Wait()
		if fresh.Load() != 1 || things(t, db) != 1 {
			t.Fatalf("%d fresh answers and %d things, want 1 and 1", fresh.Load(), things(t, db))
		}
		for _, b := range bodies {
			if b != bodies[0] {
				t.Fatalf("answers differ: %q", bodies)
			}
		}
	})
}

// The cleaner cleans at once and stops when its owner cancels it.
func TestCleanerRunsAndStops(t *testing.T) {
	eachDB(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		clk := &clock{now: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
		s := idempotency.New(db, idempotency.Config{Clock: clk.Now, TTL: time.Hour})
		if _, _, err := s.Do(ctx, nil, idempotency.Request{Scope: "s", Key: "old", Fingerprint: "f"}, create); err != nil {
			t.Fatal(err)
		}
		clk.Add(2 * time.Hour)
		runCtx, cancel := context.WithCancel(ctx)
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			idempotency.Cleaner{Store: s, Every: time.Hour}.Run(runCtx)
		}()
		testenv.Eventually(t, 10*time.Second, "the expired key is deleted", func() bool {
			var n int64
			_ = db.Table("canal_idempotency_keys").Count(&n).Error
			return n == 0
		})
		cancel()
		<-stopped
	})
}

func TestCheckKey(t *testing.T) {
	long := make([]byte, idempotency.MaxKeyLen+1)
	for i := range long {
		long[i] = 'a'
	}
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"8e03978e-40d5-43e8-bc93-6894a57f9324", true},
		{"a b~!", true},
		{string(long[:idempotency.MaxKeyLen]), true},
		{"", false},
		{string(long), false},
		{"tab\there", false},
		{"nul\x00", false},
		{"é", false},
		{"del\x7f", false},
	} {
		if err := idempotency.CheckKey(tc.key); (err == nil) != tc.ok {
			t.Errorf("CheckKey(%q) = %v, want ok %v", tc.key, err, tc.ok)
		}
	}
}
