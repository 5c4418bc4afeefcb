package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"gorm.io/gorm"
)

// target is the database a benchmark runs in: a SQLite file or a
// PostgreSQL schema that bench made itself, so that removing it at the end
// removes nothing the user owns.
type target struct {
	db      *gorm.DB
	dialect string
	url     string // what another process opens to reach the same tables
	close   func(ctx context.Context, log *slog.Logger)
}

func prepare(ctx context.Context, env Env, o options) (*target, error) {
	if o.dialect == "postgres" {
		return preparePostgres(ctx, env, o)
	}
	return prepareSQLite(ctx, env, o)
}

func prepareSQLite(ctx context.Context, env Env, o options) (*target, error) {
	path, tmpDir := sqlitePath(o.db), ""
	attach := o.role == roleConsumer
	if path == "" {
		dir, err := os.MkdirTemp("", "canal-bench-")
		if err != nil {
			return nil, fmt.Errorf("temporary SQLite file: %w", err)
		}
		tmpDir, path = dir, filepath.Join(dir, "bench.db")
	}
	_, statErr := os.Stat(path)
	switch {
	case attach && statErr != nil:
		return nil, fmt.Errorf("-db %s: %w", path, statErr)
	case !attach && statErr == nil:
		return nil, fmt.Errorf("%w: -db %s: the file exists; bench needs a new file so it never touches your data", ErrUsage, path)
	case !attach && !errors.Is(statErr, fs.ErrNotExist):
		return nil, fmt.Errorf("-db %s: %w", path, statErr)
	}
	dbArg := o.db
	if dbArg == "" {
		dbArg = path
	}
	db, err := env.Open(ctx, dbArg)
	if err != nil {
		if tmpDir != "" {
			_ = os.RemoveAll(tmpDir)
		}
		return nil, err
	}
	t := &target{db: db, dialect: "sqlite", url: path}
	t.close = func(_ context.Context, log *slog.Logger) {
		closeDB(db)
		if attach || o.keep {
			if o.keep {
				log.Info("kept the benchmark's SQLite file", "path", path)
			}
			return
		}
		if tmpDir != "" {
			_ = os.RemoveAll(tmpDir)
			return
		}
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				log.Warn("remove benchmark file", "path", p, "err", err)
			}
		}
	}
	return t, nil
}

// sqlitePath is the file a SQLite -db value names.
func sqlitePath(db string) string {
	for _, p := range []string{"sqlite://", "sqlite:"} {
		if strings.HasPrefix(db, p) {
			db = strings.TrimPrefix(db, p)
			break
		}
	}
	if i := strings.IndexByte(db, '?'); i >= 0 {
		db = db[:i]
	}
	return db
}

func preparePostgres(ctx context.Context, env Env, o options) (*target, error) {
	if o.role == roleConsumer {
		// The parent made the schema and named it in the URL's search_path.
		db, err := env.Open(ctx, o.db)
		if err != nil {
			return nil, err
		}
		return &target{db: db, dialect: "postgres", url: o.db, close: func(context.Context, *slog.Logger) { closeDB(db) }}, nil
	}
	schema := o.schema
	if schema == "" {
		schema = "canal_bench_" + randomHex(5)
	}
	schemaURL, err := withSearchPath(o.db, schema)
	if err != nil {
		return nil, fmt.Errorf("%w: -db: %v", ErrUsage, err)
	}
	admin, err := env.Open(ctx, o.db)
	if err != nil {
		return nil, err
	}
	var exists bool
	if err := admin.WithContext(ctx).Raw("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = ?)", schema).Scan(&exists).Error; err != nil {
		closeDB(admin)
		return nil, fmt.Errorf("look up schema %s: %w", schema, err)
	}
	if exists {
		closeDB(admin)
		return nil, fmt.Errorf("%w: -schema %s: the schema exists; bench creates its own and drops only that", ErrUsage, schema)
	}
	if err := admin.WithContext(ctx).Exec(`CREATE SCHEMA "` + schema + `"`).Error; err != nil {
		closeDB(admin)
		return nil, fmt.Errorf("create schema %s: %w", schema, err)
	}
	drop := func(ctx context.Context, log *slog.Logger) {
		if o.keep {
			log.Info("kept the benchmark's schema", "schema", schema)
		} else if err := admin.WithContext(ctx).Exec(`DROP SCHEMA "` + schema + `" CASCADE`).Error; err != nil {
			log.Warn("drop benchmark schema", "schema", schema, "err", err)
		}
		closeDB(admin)
	}
	db, err := env.Open(ctx, schemaURL)
	if err != nil {
		drop(context.WithoutCancel(ctx), slog.Default())
		return nil, err
	}
	return &target{db: db, dialect: "postgres", url: schemaURL, close: func(ctx context.Context, log *slog.Logger) {
		closeDB(db)
		drop(ctx, log)
	}}, nil
}

// withSearchPath returns base with its search_path set to schema alone.
func withSearchPath(base, schema string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func closeDB(db *gorm.DB) {
	if sqlDB, err := db.DB(); err == nil {
		_ = sqlDB.Close()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}
