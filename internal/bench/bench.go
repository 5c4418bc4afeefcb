// Package bench is `canal bench`: throughput and latency figures of the
// outbox relay and the work pool, measured through their public APIs only
// (outbox.Add, Relay.Run, Processor.Enqueue...), so the same commands measure
// whichever engine is underneath. Every figure is printed as one name=value
// line, so scripts (and the River comparison in bench/) read them back.
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/canalhq/canal/internal/sqlitestat"
	"gorm.io/gorm"
)

// Env is what bench needs from the program: how it opens a -db value (the
// server's own settings, pool sizes and pragmas) and which dialect it names.
type Env struct {
	Open    func(ctx context.Context, db string) (*gorm.DB, error)
	Dialect func(db string) (string, error) // "sqlite" or "postgres"
}

// ErrUsage marks a command line bench refuses; the message names the flag.
var ErrUsage = errors.New("bad usage")

const usage = `Usage: canal bench outbox|work|latency|soak [flags]

  canal bench outbox  -db URL -n N          drain a committed backlog of N outbox messages (no-op publisher)
  canal bench work    -db URL -n N          drain N no-op work items
  canal bench latency -db URL -rate R -d D  commit -> dispatch latency at R messages/s for D
                      [-procs 2]            commit in this process, dispatch in a child process
  canal bench soak    -db URL -duration D   orders and work at full speed for D, memory, WAL and files
                      [-sample 10s] [-warmup 1m] [-max-growth-mb 20]
                      [-cpuprofile F] [-memprofile F]
                                            sampled every -sample; FLAT or GROWING (exit 1) after -warmup

-db is a SQLite file path that must not exist yet (created, then removed; the
default is a temporary file) or a postgres:// URL, in which bench creates a
fresh schema (named by -schema, or canal_bench_<random>) and drops only that
schema at the end. -keep keeps the file or schema. Output: one name=value line
per figure; the headline figure is the last line.
`

// Run runs `canal bench` with args (after "bench"), printing figures on stdout.
func Run(ctx context.Context, args []string, env Env, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return fmt.Errorf("%w: name a benchmark: outbox, work, latency or soak", ErrUsage)
		}
		return nil
	}
	what := args[0]
	fs := flag.NewFlagSet("canal bench "+what, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := options{}
	fs.StringVar(&o.db, "db", "", "SQLite file path (must not exist) or postgres:// URL; default: a temporary SQLite file")
	fs.StringVar(&o.schema, "schema", "", "PostgreSQL: name of the fresh schema to create and drop (default canal_bench_<random>)")
	fs.BoolVar(&o.keep, "keep", false, "keep the SQLite file or PostgreSQL schema afterwards")
	fs.IntVar(&o.workers, "workers", 0, "workers of the relay or pool (0: the library's default)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "log level of the relay and pool on stderr: debug, info, warn or error")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the timed part (the drain; the whole run for latency and soak) to this file")
	switch what {
	case "outbox", "work":
		fs.IntVar(&o.n, "n", 10000, "backlog size (1-1000000)")
		fs.StringVar(&o.memProfile, "memprofile", "", "write a profile of the allocations to this file, and of the backlog's load to this file + \".load\" (go tool pprof -base FILE.load FILE: the drain's alone)")
	case "latency":
		fs.Float64Var(&o.rate, "rate", 100, "messages committed per second (0.1-10000)")
		fs.DurationVar(&o.duration, "d", 10*time.Second, "how long to commit messages (100ms-1h)")
		fs.IntVar(&o.procs, "procs", 1, "1: commit and dispatch in this process; 2: dispatch in a child process")
		fs.StringVar(&o.role, "role", "", "internal: consumer runs the child side of -procs 2")
	case "soak":
		fs.DurationVar(&o.duration, "duration", 30*time.Minute, "how long to run (1s-24h)")
		fs.DurationVar(&o.sample, "sample", 10*time.Second, "time between samples (100ms-10m)")
		fs.DurationVar(&o.warmup, "warmup", time.Minute, "samples before this are left out of the verdict")
		fs.Float64Var(&o.maxGrowthMB, "max-growth-mb", 20, "GROWING (exit 1) when a memory series or the WAL rises more than this after -warmup")
		fs.IntVar(&o.producers, "producers", 4, "goroutines placing orders, and as many enqueueing work (1-256)")
		fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile (in use and allocated) to this file at the end of the load, and to this file + \".warmup\" at the end of -warmup (go tool pprof -sample_index=inuse_space -base FILE.warmup FILE: what grew after the warm-up)")
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: unknown benchmark %q: want outbox, work, latency or soak", ErrUsage, what)
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (flags start with -)", ErrUsage, fs.Arg(0))
	}
	if err := o.validate(what, env); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(o.logLevel)) // validated
	if o.memProfile != "" {
		runtime.MemProfileRate = 16 << 10 // finer than the default 512 KiB
	}
	// Untagged: the benchmarks tag the components they build (outbox, jobs,
	// orders), and a second "component" would repeat the key in a line.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	out := &printer{w: stdout}

	// SQLite counts its memory only if told so before its first
	// connection: the soak's SQLite memory column needs it.
	memStatus := what == "soak" && o.dialect == "sqlite" && sqlitestat.EnableMemStatus() == nil

	t, err := prepare(ctx, env, o)
	if err != nil {
		return err
	}
	defer t.close(context.WithoutCancel(ctx), log)
	switch what {
	case "outbox":
		err = benchOutbox(ctx, t, o, out, log)
	case "work":
		err = benchWork(ctx, t, o, out, log)
	case "soak":
		err = benchSoak(ctx, t, o, memStatus, stdout, out, log)
	default:
		err = benchLatency(ctx, t, o, out, stderr, log)
	}
	if err == nil {
		err = out.err
	}
	return err
}

type options struct {
	db, schema, role, logLevel string
	cpuProfile, memProfile     string
	keep                       bool
	n, workers, procs          int
	rate                       float64
	duration                   time.Duration
	sample, warmup             time.Duration // soak
	maxGrowthMB                float64       // soak
	producers                  int           // soak
	dialect                    string
}

func (o *options) validate(what string, env Env) error {
	var errs []error
	if o.db != "" {
		d, err := env.Dialect(o.db)
		if err != nil {
			errs = append(errs, fmt.Errorf("-db: %w", err))
		}
		o.dialect = d
	} else {
		o.dialect = "sqlite"
	}
	if o.schema != "" {
		if o.dialect != "postgres" {
			errs = append(errs, fmt.Errorf("-schema %q: only for a postgres:// -db", o.schema))
		} else if !validSchema(o.schema) {
			errs = append(errs, fmt.Errorf("-schema %q: want lower-case letters, digits and _, starting with a letter or _, at most 63", o.schema))
		}
	}
	if o.workers < 0 || o.workers > 10000 {
		errs = append(errs, fmt.Errorf("-workers %d: must be from 0 (default) to 10000", o.workers))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("-log-level %q: want debug, info, warn or error", o.logLevel))
	}
	switch what {
	case "outbox", "work":
		if o.n < 1 || o.n > 1_000_000 {
			errs = append(errs, fmt.Errorf("-n %d: must be from 1 to 1000000", o.n))
		}
	case "soak":
		if o.duration < time.Second || o.duration > 24*time.Hour {
			errs = append(errs, fmt.Errorf("-duration %s: must be from 1s to 24h", o.duration))
		}
		if o.sample < 100*time.Millisecond || o.sample > 10*time.Minute {
			errs = append(errs, fmt.Errorf("-sample %s: must be from 100ms to 10m", o.sample))
		}
		if o.warmup < 0 || o.warmup+3*o.sample > o.duration {
			errs = append(errs, fmt.Errorf("-warmup %s: must leave 3 samples (-sample %s) before -duration %s", o.warmup, o.sample, o.duration))
		}
		if math.IsNaN(o.maxGrowthMB) || o.maxGrowthMB <= 0 {
			errs = append(errs, fmt.Errorf("-max-growth-mb %v: must be above 0", o.maxGrowthMB))
		}
		if o.producers < 1 || o.producers > 256 {
			errs = append(errs, fmt.Errorf("-producers %d: must be from 1 to 256", o.producers))
		}
	case "latency":
		if math.IsNaN(o.rate) || o.rate < 0.1 || o.rate > 10000 {
			errs = append(errs, fmt.Errorf("-rate %v: must be from 0.1 to 10000 messages per second", o.rate))
		}
		if o.duration < 100*time.Millisecond || o.duration > time.Hour {
			errs = append(errs, fmt.Errorf("-d %s: must be from 100ms to 1h", o.duration))
		}
		if o.procs != 1 && o.procs != 2 {
			errs = append(errs, fmt.Errorf("-procs %d: must be 1 or 2", o.procs))
		}
		switch o.role {
		case "":
		case roleConsumer:
			if o.db == "" {
				errs = append(errs, fmt.Errorf("-role %s: needs the -db its parent prepared", o.role))
			}
		default:
			errs = append(errs, fmt.Errorf("-role %q: only %q (used by -procs 2)", o.role, roleConsumer))
		}
	}
	return errors.Join(errs...)
}

func validSchema(s string) bool {
	if len(s) == 0 || len(s) > 63 || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// printer writes name=value lines and keeps the first write error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) int(name string, v int64) { p.line(name, strconv.FormatInt(v, 10)) }

func (p *printer) float(name string, v float64) {
	p.line(name, strconv.FormatFloat(v, 'f', precision(v), 64))
}

func (p *printer) str(name, v string) { p.line(name, v) }

func (p *printer) line(name, v string) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, "%s=%s\n", name, v)
	}
}

// precision keeps about four significant digits without exponents.
func precision(v float64) int {
	switch a := math.Abs(v); {
	case a >= 1000:
		return 0
	case a >= 100:
		return 1
	case a >= 1:
		return 2
	default:
		return 3
	}
}

// quantile returns the q-quantile (0..1) of sorted durations in ms.
func quantile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

func sortedCopy(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}
