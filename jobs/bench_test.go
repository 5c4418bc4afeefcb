package jobs_test

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
	"github.com/libtnb/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// BenchmarkCommandRoundTrip measures one command through the control
// channel: send, the processor's answer on the reply channel, receive.
func BenchmarkCommandRoundTrip(b *testing.B) {
	p := jobs.NewProcessor(jobs.Config{})
	if err := p.Register("report", time.Hour, true, noop); err != nil {
		b.Fatal(err)
	}
	running(b, p)
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Status(ctx, "report"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := p.Status(ctx, "report"); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// benchStores are the databases the work benchmarks run on.
var benchStores = []struct {
	name string
	open func(b *testing.B) (*gorm.DB, jobs.Store)
}{
	{"sqlite", func(b *testing.B) (*gorm.DB, jobs.Store) { return migrated(b, "sqlite") }},
	{"sqlite-server-settings", serverSQLite},
	{"postgres", func(b *testing.B) (*gorm.DB, jobs.Store) { return migrated(b, "postgres") }},
}

// BenchmarkWorkThroughput measures items per second from Enqueue to done
// with a no-op handler, producers enqueuing one item per call as API
// requests do: the cost of the insert, the claim and the completion.
func BenchmarkWorkThroughput(b *testing.B) {
	for _, st := range benchStores {
		b.Run(st.name, func(b *testing.B) {
			_, s := st.open(b)
			if s == nil {
				return
			}
			p := jobs.NewProcessor(jobs.Config{Store: s, Workers: 8, WorkCapacity: 1024})
			var done atomic.Int64
			all := make(chan struct{})
			n := int64(b.N)
			err := p.RegisterKind("noop", func(context.Context, jobs.WorkItem) error {
				if done.Add(1) == n {
					close(all)
				}
				return nil
			}, jobs.KindOptions{BreakerFailures: -1})
			if err != nil {
				b.Fatal(err)
			}
			running(b, p)
			ctx := context.Background()
			b.ResetTimer()
			start := time.Now()
			// Producers in parallel, as concurrent API requests would be.
			var next atomic.Int64
			var wg sync.WaitGroup
			for range producers {
				wg.Go(func() {
					for i := next.Add(1); i <= n; i = next.Add(1) {
						if _, err := p.Enqueue(ctx, jobs.NewWork{Kind: "noop", Priority: jobs.Priority(i % 4), Payload: []byte(`{"n":1}`)}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			<-all
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "items/s")
		})
	}
}

// BenchmarkWorkDrain measures how fast a backlog of b.N items already in
// the table is drained with a no-op handler, as River's bench does: the
// cost of the batched claims and completions alone.
func BenchmarkWorkDrain(b *testing.B) {
	for _, st := range benchStores {
		b.Run(st.name, func(b *testing.B) {
			db, s := st.open(b)
			if s == nil {
				return
			}
			p := jobs.NewProcessor(jobs.Config{Store: s, Workers: drainWorkers, WorkCapacity: b.N + 1})
			var done atomic.Int64
			all := make(chan struct{})
			n := int64(b.N)
			err := p.RegisterKind("noop", func(context.Context, jobs.WorkItem) error {
				if done.Add(1) == n {
					close(all)
				}
				return nil
			}, jobs.KindOptions{BreakerFailures: -1})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for i := 0; i < b.N; i += 1000 {
				err := db.Transaction(func(tx *gorm.DB) error {
					for j := i; j < min(i+1000, b.N); j++ {
						if _, err := p.EnqueueTx(ctx, tx, jobs.NewWork{Kind: "noop", Priority: jobs.Priority(j % 4), Payload: []byte(`{"n":1}`)}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			start := time.Now()
			running(b, p)
			<-all
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "items/s")
		})
	}
}

// producers is how many goroutines enqueue at once.
const producers = 8

func migrated(b *testing.B, name string) (*gorm.DB, jobs.Store) {
	for _, d := range dbs {
		if d.name != name {
			continue
		}
		if name == "postgres" && testenv.PostgresURL(b) == "" {
			return nil, nil
		}
		db := d.open(b)
		if err := jobs.Migrate(context.Background(), db); err != nil {
			b.Fatal(err)
		}
		s, err := jobs.NewStore(db)
		if err != nil {
			b.Fatal(err)
		}
		return db, s
	}
	b.Fatalf("no database %q", name)
	return nil, nil
}

// serverSQLite opens SQLite as server.openDB does: WAL with synchronous
// NORMAL, BEGIN IMMEDIATE and a pool of 4 connections.
func serverSQLite(b *testing.B) (*gorm.DB, jobs.Store) {
	path := filepath.Join(b.TempDir(), "canal.db")
	db, err := gorm.Open(sqlite.Open(path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"),
		&gorm.Config{Logger: logger.Discard})
	if err != nil {
		b.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		b.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(4)
	b.Cleanup(func() { _ = sqlDB.Close() })
	if err := jobs.Migrate(context.Background(), db); err != nil {
		b.Fatal(err)
	}
	s, err := jobs.NewStore(db)
	if err != nil {
		b.Fatal(err)
	}
	return db, s
}

// drainWorkers is the drain's worker count: with a no-op handler, workers
// only bound how many items one claim may fetch (Workers plus as many
// ahead).
const drainWorkers = 256
