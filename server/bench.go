package server

import (
	"context"
	"io"
	"log/slog"

	"github.com/canalhq/canal/internal/bench"
	"gorm.io/gorm"
)

// runBench is `canal bench ...`: the benchmarks open -db as the server does.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return bench.Run(ctx, args, bench.Env{
		Open: func(ctx context.Context, db string) (*gorm.DB, error) { return openDB(ctx, db, log) },
		Dialect: func(db string) (string, error) {
			name, _, err := dialect(db)
			return name, err
		},
	}, stdout, stderr)
}
