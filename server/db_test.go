package server

import (
	"context"
	"io"
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
	deadline := time.Now().Add(10 * walCheckpointEvery)
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
