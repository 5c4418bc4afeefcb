package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
	_ "modernc.org/sqlite" // database/sql driver "sqlite", the one Canal embeds
)

// noopArgs is the job River drains.
type noopArgs struct {
	Num int `json:"num"`
}

func (noopArgs) Kind() string { return "bench_noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

// riverDrain inserts n jobs into a fresh River schema (PostgreSQL) or file
// (SQLite), then starts a client with the settings of River's own benchmark
// (cmd/river bench) and returns jobs per second from Start until the last
// completion event, as that benchmark reports it.
func riverDrain(ctx context.Context, db string, n int, log *slog.Logger) (float64, error) {
	if isPostgres(db) {
		return riverPostgres(ctx, db, n, log)
	}
	return riverSQLite(ctx, db, n, log)
}

func riverPostgres(ctx context.Context, base string, n int, log *slog.Logger) (float64, error) {
	admin, err := pgxpool.New(ctx, base)
	if err != nil {
		return 0, err
	}
	defer admin.Close()
	schema := "river_bench_" + randomHex(5)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return 0, fmt.Errorf("create schema: %w", err)
	}
	defer func() {
		if _, err := admin.Exec(context.WithoutCancel(ctx), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			log.Warn("drop river schema", "schema", schema, "err", err)
		}
	}()
	cfg, err := pgxpool.ParseConfig(base)
	if err != nil {
		return 0, err
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	return drain(ctx, riverpgxv5.New(pool), n, log)
}

func riverSQLite(ctx context.Context, path string, n int, log *slog.Logger) (float64, error) {
	if _, err := os.Stat(path); err == nil {
		return 0, fmt.Errorf("%s exists; the River run needs a new file", path)
	}
	// The pragmas Canal's server sets, so both run on the same settings.
	dbPool, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return 0, err
	}
	defer func() {
		dbPool.Close()
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			_ = os.Remove(p)
		}
	}()
	// riversqlite's documentation: one connection avoids SQLITE_BUSY.
	dbPool.SetMaxOpenConns(1)
	return drain(ctx, riversqlite.New(dbPool), n, log)
}

// insertBatch is how many jobs one InsertMany carries, as in River's bench.
const insertBatch = 5000

func drain[TTx any](ctx context.Context, driver riverdriver.Driver[TTx], n int, log *slog.Logger) (float64, error) {
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: log})
	if err != nil {
		return 0, err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return 0, fmt.Errorf("river migrate: %w", err)
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{})
	client, err := river.NewClient(driver, &river.Config{
		// River's own bench settings: its defaults cap a drain near
		// MaxWorkers per 100 ms.
		FetchCooldown:     2 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: riverMaxWorkers}},
		Workers:           workers,
		Logger:            log,
	})
	if err != nil {
		return 0, err
	}
	events, cancelEvents := client.SubscribeConfig(&river.SubscribeConfig{
		ChanSize: n + 1000, // a dropped event would hide a completion
		Kinds:    []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled},
	})
	defer cancelEvents()

	params := make([]river.InsertManyParams, 0, insertBatch)
	for i := 0; i < n; i += insertBatch {
		params = params[:0]
		for j := i; j < min(i+insertBatch, n); j++ {
			params = append(params, river.InsertManyParams{Args: noopArgs{Num: j}})
		}
		if _, err := client.InsertMany(ctx, params); err != nil {
			return 0, fmt.Errorf("river insert: %w", err)
		}
	}

	start := time.Now()
	if err := client.Start(ctx); err != nil {
		return 0, err
	}
	defer func() {
		if err := client.Stop(context.WithoutCancel(ctx)); err != nil {
			log.Warn("river stop", "err", err)
		}
	}()
	var last time.Time
	for done := 0; done < n; {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case e, ok := <-events:
			if !ok {
				return 0, errors.New("river subscription closed")
			}
			if e.Kind != river.EventKindJobCompleted && e.Job.State == rivertype.JobStateDiscarded {
				return 0, fmt.Errorf("river job %d: %s", e.Job.ID, e.Kind)
			}
			if e.Kind == river.EventKindJobCompleted {
				done++
				last = time.Now()
			}
		case <-time.After(2 * time.Minute):
			return 0, errors.New("no River job finished for 2 minutes")
		}
	}
	return float64(n) / last.Sub(start).Seconds(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// riverMaxWorkers is River's own bench setting, and Canal's -workers default here.
const riverMaxWorkers = 2000
