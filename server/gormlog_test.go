package server

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/canalhq/canal/testenv"
)

// lockedBuffer is a log destination for goroutines writing at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// TestGormLogsValidJSON: gorm's lines go through the process's JSON
// logger as valid lines: a failed connect (gorm's slog logger wrote the
// error as an unencodable "data" value, "!ERROR:json: unsupported type")
// and a failed query, whose line names the query and the error but not
// its values.
func TestGormLogsValidJSON(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t.Run("failed connect", func(t *testing.T) {
		var out lockedBuffer
		_, err := openDB(ctx, "postgres://nobody@127.0.0.1:1/x?connect_timeout=1", newLogger(&out, "info", "json"))
		if err == nil {
			t.Fatal("connected to port 1")
		}
		lines := testenv.LogLines(t, out.Bytes())
		if !testenv.Logged(lines, "gorm: failed to initialize database") {
			t.Errorf("no line for the failed connect:\n%s", out.Bytes())
		}
	})
	t.Run("failed query", func(t *testing.T) {
		var out lockedBuffer
		db, err := openDB(ctx, filepath.Join(t.TempDir(), "c.db"), newLogger(&out, "info", "json"))
		if err != nil {
			t.Fatal(err)
		}
		sqlDB, _ := db.DB()
		defer sqlDB.Close()
		if err := db.Exec(`INSERT INTO missing_table (token) VALUES (?)`, "s3cr3t-value").Error; err == nil {
			t.Fatal("insert into a missing table succeeded")
		}
		lines := testenv.LogLines(t, out.Bytes())
		var found bool
		for _, l := range lines {
			sql, _ := l["sql"].(string)
			msg, _ := l["err"].(string)
			if l["level"] == "ERROR" && strings.Contains(sql, "missing_table") && strings.Contains(msg, "no such table") {
				found = true
			}
		}
		if !found {
			t.Errorf("no error line with the query and its error:\n%s", out.Bytes())
		}
		if bytes.Contains(out.Bytes(), []byte("s3cr3t-value")) {
			t.Errorf("a query's value is in the log:\n%s", out.Bytes())
		}
	})
}

// TestGormLogLevels: gorm's levels decide what is logged, the handler's
// level too; at gorm's Info every query is a debug line.
func TestGormLogLevels(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out lockedBuffer
	db, err := openDB(ctx, filepath.Join(t.TempDir(), "c.db"), newLogger(&out, "debug", "json"))
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	defer sqlDB.Close()
	if err := db.Exec(`SELECT 1`).Error; err != nil {
		t.Fatal(err)
	}
	if testenv.Logged(testenv.LogLines(t, out.Bytes()), "gorm: query") {
		t.Fatalf("a good query logged at gorm's Warn level:\n%s", out.Bytes())
	}
	if err := db.Debug().Exec(`SELECT 1`).Error; err != nil {
		t.Fatal(err)
	}
	lines := testenv.LogLines(t, out.Bytes())
	if !testenv.Logged(lines, "gorm: query") {
		t.Fatalf("no debug line for a query at gorm's Info level:\n%s", out.Bytes())
	}
}
