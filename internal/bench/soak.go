package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canalhq/canal/internal/sqlitestat"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/server/demo"
)

// ErrGrowing is the soak's verdict when a measure grew past the threshold
// after warm-up; `canal bench soak` then exits non-zero.
var ErrGrowing = errors.New("soak: GROWING")

// soakSample is one row of the soak's table.
type soakSample struct {
	at                   time.Duration
	orders, work         int64 // committed so far
	rss, heap            int64 // bytes
	sqliteMem            int64 // bytes; -1: not measured
	stmts, cache         int64 // bytes of the pool's connections; -1: not measured
	wal, dbSize          int64 // bytes; -1: not measured
	fds                  int
	ordersRate, workRate float64 // per second since the previous sample
}

// benchSoak places orders (an order row and its outbox message in one
// transaction, as the demo's POST /api/orders does) and enqueues work at
// full speed for o.duration while the relay and the pool drain them, and
// samples the process's memory, SQLite's, the WAL, the database and the open
// files every o.sample. After o.warmup it fits a line through each memory
// series: a rise past o.maxGrowthMB over the window is GROWING.
func benchSoak(ctx context.Context, t *target, o options, memStatus bool, stdout io.Writer, out *printer, log *slog.Logger) error {
	if err := outbox.Migrate(ctx, t.db); err != nil {
		return err
	}
	if err := jobs.Migrate(ctx, t.db); err != nil {
		return err
	}
	if err := demo.Migrate(ctx, t.db); err != nil {
		return err
	}
	relay, err := outbox.New(t.db, outbox.Config{Workers: o.workers, Logger: log.With("component", "outbox")})
	if err != nil {
		return err
	}
	defer relay.Close()
	relay.RegisterDefault(outbox.PublisherFunc(func(context.Context, outbox.Delivery) error { return nil }))
	store, err := jobs.NewStore(t.db)
	if err != nil {
		return fmt.Errorf("jobs store: %w", err)
	}
	defer store.(io.Closer).Close()
	proc := jobs.NewProcessor(jobs.Config{
		Store: store, Workers: o.workers, WorkCapacity: 10000, // full: Enqueue waits
		Instance: "soak-" + randomHex(4), Logger: log.With("component", "jobs"),
	})
	if err := proc.RegisterKind(kind, func(context.Context, jobs.WorkItem) error { return nil }, jobs.KindOptions{BreakerFailures: -1}); err != nil {
		return err
	}
	orders := demo.NewOrders(relay, nil, log.With("component", "orders"))

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var runs sync.WaitGroup
	runs.Go(func() {
		if err := relay.Run(runCtx); err != nil {
			log.Error("relay", "err", err)
		}
	})
	runs.Go(func() {
		if err := proc.Run(runCtx); err != nil {
			log.Error("processor", "err", err)
		}
	})
	defer runs.Wait()

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var nOrders, nWork atomic.Int64
	var load sync.WaitGroup
	for i := range o.producers {
		customer := "soak-" + strconv.Itoa(i)
		load.Go(func() {
			for loadCtx.Err() == nil {
				if _, _, err := orders.PlaceOrder(loadCtx, customer, 100); err == nil {
					nOrders.Add(1)
				} else if loadCtx.Err() == nil {
					log.Warn("place order", "err", err)
				}
			}
		})
		load.Go(func() {
			for n := 0; loadCtx.Err() == nil; n++ {
				nw := jobs.NewWork{Kind: kind, Priority: jobs.Normal, Payload: json.RawMessage(`{"n":` + strconv.Itoa(n) + `}`)}
				if _, err := proc.Enqueue(loadCtx, nw); err == nil {
					nWork.Add(1)
				} else if loadCtx.Err() == nil {
					log.Warn("enqueue", "err", err)
				}
			}
		})
	}

	sqlDB, err := t.db.DB()
	if err != nil {
		return err
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Fprintf(stdout, "%8s %9s %9s %8s %8s %9s %8s %8s %8s %8s %5s\n",
		"t", "orders/s", "work/s", "rss_mb", "heap_mb", "sqlite_mb", "stmt_kb", "cache_kb", "wal_mb", "db_mb", "fds")
	start := time.Now()
	var samples []soakSample
	tick := time.NewTicker(o.sample)
	defer tick.Stop()
	prev := soakSample{}
	for done := false; !done; {
		select {
		case <-ctx.Done():
			stopLoad()
			load.Wait()
			return ctx.Err()
		case <-tick.C:
		}
		s := measure(ctx, t, sqlDB, memStatus)
		s.at = time.Since(start)
		s.orders, s.work = nOrders.Load(), nWork.Load()
		if dt := (s.at - prev.at).Seconds(); dt > 0 {
			s.ordersRate, s.workRate = float64(s.orders-prev.orders)/dt, float64(s.work-prev.work)/dt
		}
		if o.memProfile != "" && prev.at < o.warmup && s.at >= o.warmup {
			if err := writeHeap(o.memProfile + ".warmup"); err != nil {
				return err
			}
		}
		prev = s
		samples = append(samples, s)
		printSample(stdout, s)
		done = s.at >= o.duration
	}
	if o.memProfile != "" {
		if err := writeHeap(o.memProfile); err != nil {
			return err
		}
	}
	stopLoad()
	load.Wait()
	stopRun()
	runs.Wait()

	growth, err := soakGrowth(samples, o.warmup)
	if err != nil {
		return err
	}
	last := samples[len(samples)-1]
	out.str("dialect", t.dialect)
	out.float("duration_s", last.at.Seconds())
	out.int("orders", last.orders)
	out.int("work", last.work)
	out.float("orders_per_s", float64(last.orders)/last.at.Seconds())
	out.float("work_per_s", float64(last.work)/last.at.Seconds())
	// Where the resident set goes besides the live heap: memory the
	// runtime holds for the heap (a peak it has not yet returned), stacks.
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out.float("go_heap_sys_mb", float64(ms.HeapSys-ms.HeapReleased)/(1<<20))
	out.float("go_stack_mb", float64(ms.StackSys)/(1<<20))
	out.float("go_sys_mb", float64(ms.Sys-ms.HeapReleased)/(1<<20))
	out.int("goroutines", int64(runtime.NumGoroutine()))
	if t.dialect == "sqlite" && memStatus {
		out.float("sqlite_mem_highwater_mb", float64(sqlitestat.MemoryHighwater())/(1<<20))
	}
	if allocs, bytes, mmaps := sqlitestat.Allocator(); bytes > 0 {
		// Only with -tags memory.counters.
		out.int("libc_allocs", int64(allocs))
		out.float("libc_mb", float64(bytes)/(1<<20))
		out.int("libc_mmaps", int64(mmaps))
	}
	growing := false
	for _, g := range growth {
		out.float(g.name+"_growth_mb", g.mb)
		if g.mb > o.maxGrowthMB {
			growing = true
		}
	}
	verdict := "FLAT"
	if growing {
		verdict = "GROWING"
	}
	out.str("verdict", verdict)
	if growing {
		return fmt.Errorf("%w: a measure rose more than %g MB after the warm-up", ErrGrowing, o.maxGrowthMB)
	}
	return nil
}

// growth is one series' rise over the window after warm-up, in MB.
type growth struct {
	name string
	mb   float64
}

// soakGrowth is each memory series' rise after warmup: the peak of the
// later half of those samples minus the peak of the earlier half. Peaks,
// not single samples or a fitted line, so that a series that saws up and
// down within a bound (the WAL between checkpoints, the heap between GC
// cycles) reads flat, and one that climbs reads as its climb.
func soakGrowth(samples []soakSample, warmup time.Duration) ([]growth, error) {
	var after []soakSample
	for _, s := range samples {
		if s.at >= warmup {
			after = append(after, s)
		}
	}
	if len(after) < 3 {
		return nil, fmt.Errorf("%w: %d samples after the warm-up, want 3 at least: a longer -duration or a shorter -sample", ErrUsage, len(after))
	}
	series := []struct {
		name string
		v    func(soakSample) int64
	}{
		{"rss", func(s soakSample) int64 { return s.rss }},
		{"heap", func(s soakSample) int64 { return s.heap }},
		{"sqlite_mem", func(s soakSample) int64 { return s.sqliteMem }},
		{"wal", func(s soakSample) int64 { return s.wal }},
	}
	var out []growth
	half := len(after) / 2
	for _, se := range series {
		if se.v(after[0]) < 0 {
			continue // not measured here
		}
		peak := func(ss []soakSample) int64 {
			m := se.v(ss[0])
			for _, s := range ss[1:] {
				m = max(m, se.v(s))
			}
			return m
		}
		out = append(out, growth{se.name, float64(peak(after[half:])-peak(after[:half])) / (1 << 20)})
	}
	return out, nil
}

// measure reads the process's and the database's sizes now.
func measure(ctx context.Context, t *target, sqlDB *sql.DB, memStatus bool) soakSample {
	s := soakSample{rss: rss(), sqliteMem: -1, stmts: -1, cache: -1, wal: -1, dbSize: -1, fds: openFiles()}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.heap = int64(ms.HeapAlloc)
	if t.dialect == "sqlite" {
		if memStatus {
			s.sqliteMem = sqlitestat.MemoryUsed()
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if p, err := sqlitestat.ReadPool(pctx, sqlDB, sqlDB.Stats().OpenConnections); err == nil {
			s.stmts, s.cache = p.StmtBytes, p.CacheUsed
		}
		cancel()
		s.wal, s.dbSize = fileSize(t.url+"-wal"), fileSize(t.url)
		return s
	}
	// The tables and indexes of the benchmark's own schema.
	_ = sqlDB.QueryRowContext(ctx, `SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'`).Scan(&s.dbSize)
	return s
}

func printSample(w io.Writer, s soakSample) {
	mb := func(b int64) string {
		if b < 0 {
			return "-"
		}
		return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64)
	}
	kb := func(b int64) string {
		if b < 0 {
			return "-"
		}
		return strconv.FormatInt(b>>10, 10)
	}
	fmt.Fprintf(w, "%8s %9.0f %9.0f %8s %8s %9s %8s %8s %8s %8s %5d\n",
		s.at.Round(time.Second), s.ordersRate, s.workRate, mb(s.rss), mb(s.heap), mb(s.sqliteMem),
		kb(s.stmts), kb(s.cache), mb(s.wal), mb(s.dbSize), s.fds)
}

// writeHeap writes the heap profile (live objects as of the last GC, and
// every allocation so far) to file, after a GC so that it is current.
func writeHeap(file string) error {
	runtime.GC()
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("-memprofile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("-memprofile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("-memprofile: %w", err)
	}
	return nil
}

// rss is the process's resident set (VmRSS), 0 where /proc has none.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// openFiles counts the process's open file descriptors (-1 without /proc).
func openFiles() int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(es)
}

// fileSize is path's size, 0 if it does not exist.
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
