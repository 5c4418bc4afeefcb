package server

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSQLiteCheckpointsOffTheCommitPath: a SQLite database opened as the
// program opens it has no automatic checkpoint (a commit that crosses the
// mark would copy and sync the WAL before returning), and its WAL still
// reaches the database file, through the background checkpoints.
func TestSQLiteCheckpointsOffTheCommitPath(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "c.db")
	g, err := openDB(ctx, path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := g.DB()
	defer sqlDB.Close()
	var auto int
	if err := sqlDB.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("wal_autocheckpoint = %d (%v), want 0", auto, err)
	}
	if _, err := sqlDB.ExecContext(ctx, `CREATE TABLE filler (b BLOB)`); err != nil {
		t.Fatal(err)
	}
	// About 8 MB through the WAL: far past the automatic mark (1 000 pages).
	blob := []byte(strings.Repeat("x", 4000))
	for range 20 {
		tx, err := sqlDB.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 100 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO filler (b) VALUES (?)`, blob); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	// The pages reach the database file without a commit copying them
	// and without closing it.
	deadline := time.Now().Add(time.Minute) // a loaded machine may be slow to run one
	for {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 6<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the database file is %d bytes after the WAL took 8 MB: not checkpointed", st.Size())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// walSize is the size of path's WAL file, 0 if there is none.
func walSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path + "-wal")
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestSQLiteWALTruncatedWhenLarge: the WAL has a size limit, and once it
// holds more than the mark, a checkpoint empties it, which passive
// checkpoints alone never did (a file only ever grows to its largest).
func TestSQLiteWALTruncatedWhenLarge(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "w.db")
	g, err := openDB(ctx, path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := g.DB()
	defer sqlDB.Close()
	var limit int64
	if err := sqlDB.QueryRowContext(ctx, `PRAGMA journal_size_limit`).Scan(&limit); err != nil || limit != walSizeLimit {
		t.Fatalf("journal_size_limit = %d (%v), want %d", limit, err, walSizeLimit)
	}
	if _, err := sqlDB.ExecContext(ctx, `CREATE TABLE filler (b BLOB)`); err != nil {
		t.Fatal(err)
	}
	// A reader's snapshot keeps every page written meanwhile in the WAL,
	// as readers that overlap under load do.
	reader, err := sqlDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM filler`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	blob := []byte(strings.Repeat("x", 4000))
	for range 1000 { // ~4 MB
		if _, err := sqlDB.ExecContext(ctx, `INSERT INTO filler (b) VALUES (?)`, blob); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkpoint(ctx, sqlDB, 1<<20); err != nil {
		t.Fatalf("checkpoint with a reader: %v", err)
	}
	if size := walSize(t, path); size < 4<<20 {
		t.Fatalf("WAL %d bytes while a reader holds its pages, want > 4 MB", size)
	}
	if err := reader.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := checkpoint(ctx, sqlDB, 1<<20); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if size := walSize(t, path); size != 0 {
		t.Errorf("WAL %d bytes after a checkpoint past the mark, want 0 (truncated)", size)
	}
	// Below the mark a checkpoint stays passive and leaves the file be.
	for range 10 {
		if _, err := sqlDB.ExecContext(ctx, `INSERT INTO filler (b) VALUES (?)`, blob); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkpoint(ctx, sqlDB, 1<<20); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if size := walSize(t, path); size == 0 {
		t.Errorf("WAL truncated below the mark: a passive checkpoint was wanted")
	}
}
