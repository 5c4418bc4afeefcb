package outbox

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
	"github.com/libtnb/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// benchDialects runs f on SQLite opened as the program opens it (WAL,
// synchronous=NORMAL, BEGIN IMMEDIATE), and on PostgreSQL when
// CANAL_TEST_POSTGRES is set.
func benchDialects(b *testing.B, f func(b *testing.B, db *gorm.DB)) {
	for _, d := range []struct {
		name string
		open func(testing.TB) *gorm.DB
	}{{"sqlite", benchSQLite}, {"postgres", testenv.Postgres}} {
		b.Run(d.name, func(b *testing.B) {
			db := d.open(b)
			if err := Migrate(context.Background(), db); err != nil {
				b.Fatal(err)
			}
			f(b, db)
		})
	}
}

// BenchmarkRelayThroughput drains a backlog of b.N committed messages with a
// no-op publisher and reports messages per second. "keyless" messages are
// free to go in any order; "100keys" spread them over 100 ordering keys.
func BenchmarkRelayThroughput(b *testing.B) {
	for _, keys := range []int{0, 100} {
		name := "keyless"
		if keys > 0 {
			name = fmt.Sprintf("%dkeys", keys)
		}
		b.Run(name, func(b *testing.B) {
			benchDialects(b, func(b *testing.B, db *gorm.DB) {
				ctx := context.Background()
				cfg := Config{Logger: quietLogger()}
				r := newRelay(b, db, cfg)
				var delivered atomic.Int64
				r.RegisterDefault(PublisherFunc(func(context.Context, Delivery) error { delivered.Add(1); return nil }))
				for done := 0; done < b.N; {
					err := db.Transaction(func(tx *gorm.DB) error {
						for range min(500, b.N-done) {
							key := ""
							if keys > 0 {
								key = fmt.Sprintf("k%d", done%keys)
							}
							if _, err := Add(ctx, tx, Message{Topic: "bench", Key: key, Payload: map[string]int{"n": done}}); err != nil {
								return err
							}
							done++
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				start := time.Now()
				stop := runRelay(b, r)
				for delivered.Load() < int64(b.N) {
					time.Sleep(time.Millisecond)
				}
				stop() // waits for the last outcomes to be recorded
				elapsed := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			})
		})
	}
}

// BenchmarkCommitToDispatch commits one message at a time through
// Relay.Transaction and measures the time from commit to the publisher call.
func BenchmarkCommitToDispatch(b *testing.B) {
	benchDialects(b, func(b *testing.B, db *gorm.DB) {
		ctx := context.Background()
		r := newRelay(b, db, Config{Logger: quietLogger()})
		got := make(chan time.Time, 1)
		r.RegisterDefault(PublisherFunc(func(context.Context, Delivery) error { got <- time.Now(); return nil }))
		runRelay(b, r)
		lats := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			var committed time.Time
			err := r.Transaction(ctx, func(tx *gorm.DB) error {
				_, err := Add(ctx, tx, Message{Topic: "bench", Key: "k", Payload: i})
				return err
			})
			committed = time.Now()
			if err != nil {
				b.Fatal(err)
			}
			lats = append(lats, (<-got).Sub(committed))
		}
		b.StopTimer()
		slices.Sort(lats)
		pct := func(p float64) float64 {
			return float64(lats[int(p*float64(len(lats)-1))]) / float64(time.Millisecond)
		}
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
	})
}

func benchSQLite(tb testing.TB) *gorm.DB {
	db, err := gorm.Open(sqlite.Open(filepath.Join(tb.TempDir(), "bench.db")+
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"),
		&gorm.Config{Logger: logger.Discard})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if s, err := db.DB(); err == nil {
			s.Close()
		}
	})
	return db
}
