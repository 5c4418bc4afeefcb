package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/canalhq/canal/internal/audit"
	"github.com/canalhq/canal/internal/idempotency"
	"github.com/canalhq/canal/internal/migratelock"
	"github.com/canalhq/canal/internal/redact"
	"io"
	"log/slog"

	queuedialect "github.com/canalhq/canal/internal/queue/dialect"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/server/demo"
	"gorm.io/gorm"
)

// migrate applies every schema Canal needs: the queue engine's numbered
// migrations (which adopt the tables of an older Canal), then the jobs',
// the audit log's, the Idempotency-Key records' and the demo's tables. Run does it at start; `canal migrate` only this.
// One process at a time (migratelock): replicas may start together.
func migrate(ctx context.Context, db *gorm.DB) error {
	drv, err := queuedialect.For(db)
	if err != nil {
		return err
	}
	return migratelock.Do(ctx, db, func(ctx context.Context) error {
		if err := drv.Migrate(ctx); err != nil {
			return err
		}
		if err := jobs.Migrate(ctx, db); err != nil {
			return err
		}
		if err := audit.Migrate(ctx, db); err != nil {
			return err
		}
		if err := idempotency.Migrate(ctx, db); err != nil {
			return err
		}
		return demo.Migrate(ctx, db)
	})
}

// runMigrate is `canal migrate -db URL`: apply the migrations and exit.
func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("canal migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "canal.db", "database: a SQLite file path, a sqlite: URL, or a postgres:// URL (falls back to CANAL_DB)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: canal migrate [-db URL]\n\nApplies Canal's database migrations and exits.\n\n")
		fs.PrintDefaults()
	}
	if v := getenv("CANAL_DB"); v != "" {
		*db = v
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("migrate: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("migrate: unexpected argument %q (see canal migrate -h)", fs.Arg(0))
	}
	if _, _, err := dialect(*db); err != nil {
		return fmt.Errorf("migrate: -db: %w", err)
	}
	g, err := openDB(ctx, *db, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if sqlDB, err := g.DB(); err == nil {
		defer sqlDB.Close()
	}
	if err := migrate(ctx, g); err != nil {
		return fmt.Errorf("migrate %s: %w", redact.DSN(*db), err)
	}
	fmt.Fprintf(stdout, "canal: migrated %s\n", redact.DSN(*db))
	return nil
}
