package server

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/canalhq/canal/testenv"
	"github.com/libtnb/sqlite"
	"gorm.io/gorm"
)

func TestMigrateCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "canal.db")
	tests := []struct {
		name    string
		args    []string
		wantErr string // "" for success
		wantOut string
	}{
		{"applies and exits", []string{"canal", "migrate", "-db", path}, "", "canal: migrated " + path},
		{"again is a no-op", []string{"canal", "migrate", "-db", path}, "", "canal: migrated"},
		{"bad scheme", []string{"canal", "migrate", "-db", "mysql://x"}, "unsupported scheme", ""},
		{"stray argument", []string{"canal", "migrate", "now"}, `unexpected argument "now"`, ""},
		{"unknown flag", []string{"canal", "migrate", "-nope"}, "flag provided but not defined", ""},
		{"unreachable postgres", []string{"canal", "migrate", "-db", "postgres://nobody@127.0.0.1:1/x?connect_timeout=1"}, "connect to postgres database", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := Run(context.Background(), tc.args, func(string) string { return "" }, &out, &errOut)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(out.String(), tc.wantOut) {
				t.Fatalf("err = %v, stdout %q", err, out.String())
			}
		})
	}
	db, err := gorm.Open(sqlite.Open(path), &gorm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var versions []int
	if err := db.Raw(`SELECT version FROM canal_queue_schema ORDER BY version`).Scan(&versions).Error; err != nil || len(versions) < 2 || versions[0] != 1 {
		t.Fatalf("schema versions %v, %v", versions, err)
	}
	for _, table := range []string{"canal_queue_items", "canal_queue_attempts", "canal_queue_processes", "canal_jobs", "canal_audit", "canal_idempotency_keys", "demo_orders"} {
		if !db.Migrator().HasTable(table) {
			t.Errorf("table %s missing after migrate", table)
		}
	}
}

// TestMigrateConcurrently runs the program's whole migration from 6 pools
// at once on an empty database, as replicas started together do: each
// must succeed (on PostgreSQL the gorm tables collided in the catalogue,
// pg_type_typname_nsp_index; on SQLite "table already exists").
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		db   func(t *testing.T) string
	}{
		{"postgres", func(t *testing.T) string { return testenv.PostgresSchemaURL(t) }},
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "c.db") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for round := range 3 {
				url := tc.db(t)
				ctx, cancel := context.WithCancel(context.Background())
				t.Cleanup(cancel)
				var wg sync.WaitGroup
				errs := make(chan error, 6)
				for range 6 {
					g, err := openDB(ctx, url, slog.New(slog.DiscardHandler))
					if err != nil {
						t.Fatal(err)
					}
					sqlDB, _ := g.DB()
					t.Cleanup(func() { _ = sqlDB.Close() })
					wg.Go(func() { errs <- migrate(ctx, g) })
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
				}
			}
		})
	}
}
