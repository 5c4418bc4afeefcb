package migratelock_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/migratelock"
	"github.com/canalhq/canal/testenv"
	"github.com/libtnb/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Tables for AutoMigrate: a few, with indexes and a sequence each, so that
// two processes creating them together collide somewhere.
type (
	widget struct {
		ID    int64  `gorm:"primaryKey"`
		Name  string `gorm:"uniqueIndex"`
		Owner string `gorm:"index"`
	}
	gadget struct {
		ID     int64 `gorm:"primaryKey"`
		Widget int64 `gorm:"index"`
		Note   string
	}
)

// pools opens n independent pools on one database, as n processes would.
func pools(t *testing.T, n int, dial func() gorm.Dialector) []*gorm.DB {
	t.Helper()
	dbs := make([]*gorm.DB, n)
	for i := range dbs {
		db, err := gorm.Open(dial(), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			t.Fatal(err)
		}
		sqlDB, _ := db.DB()
		sqlDB.SetMaxOpenConns(2) // a process's migration needs one; the lock another
		t.Cleanup(func() { _ = sqlDB.Close() })
		dbs[i] = db
	}
	return dbs
}

func postgresPools(t *testing.T, n int) []*gorm.DB {
	url := testenv.PostgresSchemaURL(t)
	return pools(t, n, func() gorm.Dialector { return postgres.Open(url) })
}

func sqlitePools(t *testing.T, n int) []*gorm.DB {
	path := filepath.Join(t.TempDir(), "m.db")
	return pools(t, n, func() gorm.Dialector {
		return sqlite.Open(path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	})
}

// TestConcurrentAutoMigrate has 8 pools create the same tables at once, 5
// rounds on each database: every one must succeed.
func TestConcurrentAutoMigrate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pools func(*testing.T, int) []*gorm.DB
	}{{"postgres", postgresPools}, {"sqlite", sqlitePools}} {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 5 {
				dbs := tc.pools(t, 8)
				errs := make(chan error, len(dbs))
				start := make(chan struct{})
				var wg sync.WaitGroup
				for _, db := range dbs {
					wg.Go(func() {
						<-start
						errs <- migratelock.Do(context.Background(), db, func(ctx context.Context) error {
							return db.WithContext(ctx).AutoMigrate(&widget{}, &gadget{})
						})
					})
				}
				close(start)
				wg.Wait()
				close(errs)
				// This round's connections go now, not at the test's end:
				// 5 rounds of 8 pools held 80 of PostgreSQL's 100 slots.
				for _, db := range dbs {
					if sqlDB, err := db.DB(); err == nil {
						_ = sqlDB.Close()
					}
				}
				for err := range errs {
					if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
				}
			}
		})
	}
}

// TestPostgresOneAtATime: while one pool is inside Do, another pool's Do
// on the same schema waits on the lock (seen in pg_locks), and enters
// only once the first has returned; a third pool on another schema is not
// held up; a nested Do on the holder's context does not wait for itself.
func TestPostgresOneAtATime(t *testing.T) {
	dbs := postgresPools(t, 2)
	other := postgresPools(t, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	inside, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- migratelock.Do(ctx, dbs[0], func(ctx context.Context) error {
			if err := migratelock.Do(ctx, dbs[0], func(context.Context) error { return nil }); err != nil {
				return fmt.Errorf("nested: %w", err)
			}
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside

	if err := migratelock.Do(ctx, other, func(context.Context) error { return nil }); err != nil {
		t.Fatalf("another schema: %v", err)
	}

	entered := make(chan struct{})
	second := make(chan error, 1)
	go func() {
		second <- migratelock.Do(ctx, dbs[1], func(context.Context) error { close(entered); return nil })
	}()
	testenv.Eventually(t, 30*time.Second, "the second Do waits on the advisory lock", func() bool {
		var n int
		err := dbs[0].Raw(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = x'43414E4D'::bigint AND NOT granted`).Scan(&n).Error
		return err == nil && n > 0
	})
	select {
	case <-entered:
		t.Fatal("the second Do entered while the first held the lock")
	default:
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	<-entered
}

// TestSQLiteRetriesRace: a run that lost a race to another process (the
// object already exists) is run again, and then finds it.
func TestSQLiteRetriesRace(t *testing.T) {
	db := sqlitePools(t, 1)[0]
	runs := 0
	err := migratelock.Do(context.Background(), db, func(ctx context.Context) error {
		runs++
		if runs == 1 {
			return errors.New("no such column: x") // not a race: returned as is
		}
		return nil
	})
	if err == nil || runs != 1 {
		t.Fatalf("unrelated error: err %v after %d runs, want it returned after 1", err, runs)
	}
	runs = 0
	err = migratelock.Do(context.Background(), db, func(ctx context.Context) error {
		runs++
		if runs == 1 {
			return db.Exec(`CREATE TABLE t (x int); CREATE TABLE t (x int)`).Error
		}
		return db.Exec(`CREATE TABLE IF NOT EXISTS t (x int)`).Error
	})
	if err != nil || runs != 2 {
		t.Fatalf("err %v after %d runs, want nil after 2", err, runs)
	}
}
