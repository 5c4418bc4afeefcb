// Command bench compares Canal with River v0.51.2 on the same database in
// one run: interleaved rounds of River draining N no-op jobs (with River's
// own bench settings) and `canal bench outbox` and `canal bench work`
// draining N messages and N work items, then medians and the ratio
// Canal ÷ River. It is its own module so that Canal's does not depend on
// River.
//
//	cd bench && go run . -db 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable' -n 100000
//	cd bench && go run . -db /tmp/bench.db -n 50000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
}

type config struct {
	db      string // postgres:// URL, or a SQLite path prefix
	n       int
	rounds  int
	canal   []string // which canal benchmarks: outbox, work
	workers int
}

func parse(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	var which string
	fs.StringVar(&c.db, "db", "", "postgres:// URL (each run gets its own fresh schema, dropped after), or a SQLite file path whose directory gets one new file per run (default: a temporary directory)")
	fs.IntVar(&c.n, "n", 20000, "jobs, messages and work items drained per run (1-1000000)")
	fs.IntVar(&c.rounds, "rounds", 3, "interleaved rounds (1-21; medians are over them)")
	fs.StringVar(&which, "canal", "outbox,work", "Canal benchmarks to run: outbox, work, or both comma-separated")
	// River's bench runs MaxWorkers 2000; Canal gets the same count, so
	// that neither side's batches are bounded by a default sized for
	// publishers that wait on I/O.
	fs.IntVar(&c.workers, "workers", riverMaxWorkers, "passed to canal bench -workers, as River runs MaxWorkers 2000 (0: Canal's library defaults, 32 relay workers and 4 work-item workers)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	var errs []error
	if c.n < 1 || c.n > 1_000_000 {
		errs = append(errs, fmt.Errorf("-n %d: must be from 1 to 1000000", c.n))
	}
	if c.rounds < 1 || c.rounds > 21 {
		errs = append(errs, fmt.Errorf("-rounds %d: must be from 1 to 21", c.rounds))
	}
	for w := range strings.SplitSeq(which, ",") {
		switch w = strings.TrimSpace(w); w {
		case "outbox", "work":
			if !slices.Contains(c.canal, w) {
				c.canal = append(c.canal, w)
			}
		case "":
		default:
			errs = append(errs, fmt.Errorf("-canal %q: want outbox, work or both", which))
		}
	}
	if len(c.canal) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("-canal %q: name at least one of outbox, work", which))
	}
	if c.workers < 0 {
		errs = append(errs, fmt.Errorf("-workers %d: must be 0 or more", c.workers))
	}
	return c, errors.Join(errs...)
}

func isPostgres(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// figure names, as printed: round values are <name>_r<i>, then median_<name>.
const riverFigure = "river_jobs_per_s"

var canalFigure = map[string]string{"outbox": "canal_relay_msgs_per_s", "work": "canal_work_items_per_s"}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parse(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := ""
	if !isPostgres(c.db) {
		if c.db == "" {
			if dir, err = os.MkdirTemp("", "canal-vs-river-"); err != nil {
				return err
			}
			defer os.RemoveAll(dir)
		} else {
			dir = filepath.Dir(c.db)
		}
	}
	dialect := "sqlite"
	if isPostgres(c.db) {
		dialect = "postgres"
	}
	fmt.Fprintf(stdout, "dialect=%s\nn=%d\nrounds=%d\n", dialect, c.n, c.rounds)

	results := map[string][]float64{}
	record := func(name string, round int, v float64) {
		results[name] = append(results[name], v)
		fmt.Fprintf(stdout, "%s_r%d=%.0f\n", name, round, v)
	}
	// sqliteFile names a new file for one run, beside -db.
	sqliteFile := func(what string, round int) string {
		base := "bench"
		if c.db != "" {
			base = strings.TrimSuffix(filepath.Base(c.db), filepath.Ext(c.db))
		}
		return filepath.Join(dir, fmt.Sprintf("%s-%s-r%d-%d.db", base, what, round, os.Getpid()))
	}
	for round := 1; round <= c.rounds; round++ {
		steps := []func() error{
			func() error {
				db := c.db
				if !isPostgres(db) {
					db = sqliteFile("river", round)
				}
				v, err := riverDrain(ctx, db, c.n, log)
				if err != nil {
					return fmt.Errorf("round %d, river: %w", round, err)
				}
				record(riverFigure, round, v)
				return nil
			},
		}
		for _, what := range c.canal {
			steps = append(steps, func() error {
				db := c.db
				if !isPostgres(db) {
					db = sqliteFile("canal-"+what, round)
				}
				v, err := canalBench(ctx, what, db, c.n, c.workers, stderr)
				if err != nil {
					return fmt.Errorf("round %d, canal %s: %w", round, what, err)
				}
				record(canalFigure[what], round, v)
				return nil
			})
		}
		// Alternate who goes first, so neither always meets a warmer machine.
		if round%2 == 0 {
			slices.Reverse(steps)
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
	}
	river := median(results[riverFigure])
	fmt.Fprintf(stdout, "median_%s=%.0f\n", riverFigure, river)
	for _, what := range c.canal {
		m := median(results[canalFigure[what]])
		fmt.Fprintf(stdout, "median_%s=%.0f\n", canalFigure[what], m)
		fmt.Fprintf(stdout, "ratio_%s_vs_river=%s\n", what, strconv.FormatFloat(m/river, 'f', 2, 64))
	}
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
