// Package migratelock runs schema migrations one process at a time, so
// that replicas started together on an empty database all come up. Two
// processes that both see a table missing and both create it fail the
// second one: on PostgreSQL with a unique violation in its catalogue
// (pg_type_typname_nsp_index), on SQLite with "table already exists".
package migratelock

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// lockClass namespaces the migrations' advisory lock ("CANM"). It is not
// the queue engine's class: the engine's migrations take a transaction
// lock of their own inside this one, on another connection.
const lockClass = 0x43414E4D

// held marks a context whose caller holds the lock of a pool: Migrate
// functions that call each other take it once (a second session lock from
// another connection of the same process would wait for itself).
type held struct{}

// Do runs fn, which migrates db, holding the migration lock of db's
// database and schema. On PostgreSQL that is a session advisory lock,
// keyed by the current schema so that deployments in two schemas do not
// wait for each other, taken on a connection of its own and released when
// fn returns: fn's statements use the pool's other connections, so the
// pool needs two. On SQLite, where a lock across processes would hold the
// only writer, fn is run again when a concurrent process created an
// object first or held the database past the busy timeout; migrations are
// idempotent, so the next run finds the object and goes on. fn gets a
// context that makes nested calls of Do for the same pool run fn at once.
func Do(ctx context.Context, db *gorm.DB, fn func(ctx context.Context) error) error {
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	if h, _ := ctx.Value(held{}).(*sql.DB); h == sqlDB {
		return fn(ctx)
	}
	inner := context.WithValue(ctx, held{}, sqlDB)
	switch db.Dialector.Name() {
	case "postgres":
		return advisory(ctx, sqlDB, func() error { return fn(inner) })
	case "sqlite":
		return retry(ctx, func() error { return fn(inner) })
	default:
		return fn(inner)
	}
}

func advisory(ctx context.Context, db *sql.DB, fn func() error) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1, hashtext(current_schema()))`, lockClass); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	defer func() {
		// Released even when ctx has ended; a connection that cannot
		// release it is closed instead, which ends its session and so
		// the lock.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, uerr := conn.ExecContext(uctx, `SELECT pg_advisory_unlock($1, hashtext(current_schema()))`, lockClass); uerr != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return fn()
}

// retries bounds retry: each run that fails has seen another process make
// progress, so a few are plenty.
const retries = 10

func retry(ctx context.Context, fn func() error) error {
	for try := 1; ; try++ {
		err := fn()
		if err == nil || try == retries || !raced(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(time.Duration(try) * 20 * time.Millisecond):
		}
	}
}

// raced is a SQLite error from another process migrating at the same time.
func raced(err error) bool {
	s := err.Error()
	return strings.Contains(s, "already exists") || strings.Contains(s, "database is locked") ||
		strings.Contains(s, "SQLITE_BUSY") || strings.Contains(s, "duplicate column name")
}
