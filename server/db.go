package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/canalhq/canal/internal/outage"
	"github.com/canalhq/canal/internal/redact"
	"log/slog"
	"strings"
	"time"

	"github.com/libtnb/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// dialect tells which database a -db value names, and the DSN for its driver.
func dialect(db string) (name, dsn string, err error) {
	switch {
	case db == "":
		return "", "", errors.New("empty: give a SQLite file path, a sqlite: URL or a postgres:// URL")
	case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
		return "postgres", db, nil
	case strings.HasPrefix(db, "sqlite://"):
		return sqliteDSN(strings.TrimPrefix(db, "sqlite://"))
	case strings.HasPrefix(db, "sqlite:"):
		return sqliteDSN(strings.TrimPrefix(db, "sqlite:"))
	case strings.Contains(db, "://"):
		return "", "", fmt.Errorf("%q: unsupported scheme (use a SQLite file path, sqlite:PATH or postgres://)", db)
	default:
		return sqliteDSN(db)
	}
}

// sqliteBusyTimeoutMS is how long a SQLite statement waits for a lock.
const sqliteBusyTimeoutMS = 10000

// walSizeLimit bounds the SQLite WAL file: journal_size_limit truncates it
// to this size whenever it restarts.
const walSizeLimit = 64 << 20

// walTruncateAbove is the WAL size past which checkpoints truncates it to
// zero. Full load writes ~30 MB of WAL a second on SQLite, so the mark is
// well below walSizeLimit: checked every second, the WAL peaks near their
// sum.
const walTruncateAbove = 16 << 20

// sqliteDSN adds the pragmas Canal relies on: WAL so readers do not block the
// writer, a busy timeout instead of instant SQLITE_BUSY, BEGIN IMMEDIATE
// so a transaction takes the write lock up front rather than failing to
// upgrade it midway, no automatic checkpoint (see checkpoints), and a WAL
// file that shrinks back when it restarts (it keeps its largest size
// otherwise: 857 MB after 40 s of full load).
func sqliteDSN(path string) (string, string, error) {
	if path == "" {
		return "", "", errors.New("sqlite: needs a file path, e.g. sqlite:canal.db")
	}
	q := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_pragma=wal_autocheckpoint(0)&_pragma=journal_size_limit(%d)&_txlock=immediate",
		sqliteBusyTimeoutMS, walSizeLimit)
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return "sqlite", path + sep + q, nil
}

// outageQuiet is gorm's query log without the errors of a database that is
// away: the outage monitor logs those once (internal/outage), where gorm
// would log every query every loop makes until it is back.
type outageQuiet struct{ logger.Interface }

func (q outageQuiet) LogMode(l logger.LogLevel) logger.Interface {
	return outageQuiet{q.Interface.LogMode(l)}
}

func (q outageQuiet) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if outage.Unavailable(err) {
		return
	}
	q.Interface.Trace(ctx, begin, fc, err)
}

// openDB connects and checks the connection.
func openDB(ctx context.Context, db string, log *slog.Logger) (*gorm.DB, error) {
	name, dsn, err := dialect(db)
	if err != nil {
		return nil, err
	}
	gcfg := &gorm.Config{
		Logger:  outageQuiet{newGormLog(log, logger.Warn, time.Second)}, // gormlog.go
		NowFunc: func() time.Time { return time.Now().UTC() },
	}
	var dial gorm.Dialector
	if name == "postgres" {
		dial = postgres.Open(dsn)
	} else {
		dial = sqlite.Open(dsn)
	}
	g, err := gorm.Open(dial, gcfg)
	if err != nil {
		// gorm's postgres driver connects inside Open.
		return nil, fmt.Errorf("connect to %s database %s: %w", name, redact.DSN(db), err)
	}
	sqlDB, err := g.DB()
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", name, err)
	}
	// Idle connections equal open ones: a connection closed when idle is
	// opened again at the next burst, and each new one prepares the queue
	// engine's statements again.
	conns := 20
	if name == "sqlite" {
		// One writer at a time is SQLite's model; a small pool keeps
		// readers concurrent under WAL without piling up busy waits.
		conns = 4
	}
	sqlDB.SetMaxOpenConns(conns)
	sqlDB.SetMaxIdleConns(conns)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pctx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("connect to %s database %s: %w", name, redact.DSN(db), err)
	}
	if name == "sqlite" {
		go checkpoints(ctx, sqlDB, walCheckpointEvery, walTruncateAbove, log)
	}
	return g, nil
}

// walCheckpointEvery is how often checkpoints copies the WAL into the
// database file and looks at its size: at full load the WAL grows ~30 MB/s,
// so once a second let it reach ~116 MB before a truncate (the soak).
const walCheckpointEvery = 250 * time.Millisecond

// walTruncateWait is how long a truncating checkpoint waits for readers
// and the writer (it holds writers back meanwhile): past it, the next tick
// tries again.
const walTruncateWait = 250 * time.Millisecond

// checkpoints runs SQLite's WAL checkpoints off the commit path. With the
// automatic checkpoint (every 1 000 WAL pages) the commit that crosses the
// mark copies the WAL into the database file and syncs it before it
// returns: on a slow disk that commit, and the claim waiting behind it,
// took 15–20 ms, which was the whole tail of commit-to-dispatch latency
// (p99 18 ms at 200 msgs/s; 3.5 ms without it). The DSN turns the
// automatic checkpoint off; a passive one never waits for readers or
// writers. Under load, though, some reader always holds a snapshot in the
// WAL, so a passive checkpoint never lets it restart and it grows without
// end (1 GB in 3 minutes): once it holds more than truncateAbove bytes, a
// TRUNCATE checkpoint waits briefly for the readers and empties it. It
// stops with ctx, or once the pool is closed.
func checkpoints(ctx context.Context, db *sql.DB, every time.Duration, truncateAbove int64, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := checkpoint(ctx, db, truncateAbove)
		switch {
		case err == nil:
			failing = false
		case ctx.Err() != nil || strings.Contains(err.Error(), "database is closed"):
			return // database/sql's error for a closed pool is not exported
		case !failing:
			failing = true
			log.Warn("sqlite: WAL checkpoint failed; trying again", "err", err)
		}
	}
}

// checkpoint runs a passive checkpoint and, if the WAL then holds more
// than truncateAbove bytes, a truncating one.
func checkpoint(ctx context.Context, db *sql.DB, truncateAbove int64) error {
	var busy, frames, done int64
	if err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &done); err != nil {
		return err
	}
	var pageSize int64
	if err := db.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&pageSize); err != nil {
		return err
	}
	const frameHeader = 24
	if frames*(pageSize+frameHeader) <= truncateAbove {
		return nil
	}
	_, err := truncateWAL(ctx, db, walTruncateWait)
	return err
}

// truncateWAL checkpoints the whole WAL and truncates it to zero bytes,
// waiting up to wait for readers and the writer (on a connection of its
// own, whose busy timeout it sets for the while). It reports whether it
// got through; a reader holding an old snapshot past wait stops it.
func truncateWAL(ctx context.Context, db *sql.DB, wait time.Duration) (bool, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, wait.Milliseconds())); err != nil {
		return false, err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf(`PRAGMA busy_timeout = %d`, sqliteBusyTimeoutMS))
	var busy, frames, done int64
	if err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &done); err != nil {
		return false, err
	}
	return busy == 0, nil
}
