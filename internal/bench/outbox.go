package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/canalhq/canal/outbox"
	"gorm.io/gorm"
)

// topic is the only topic bench adds to and publishes.
const topic = "bench.noop"

// loadBatch is how many messages one backlog transaction commits.
const loadBatch = 1000

// benchOutbox commits a backlog of n messages, then runs the relay with a
// no-op publisher until every message is published and its outcome stored:
// the clock runs from Relay.Run's start until it returns after the last.
func benchOutbox(ctx context.Context, t *target, o options, out *printer, log *slog.Logger) error {
	if err := outbox.Migrate(ctx, t.db); err != nil {
		return err
	}
	relay, err := outbox.New(t.db, outbox.Config{Workers: o.workers, Logger: log.With("component", "outbox")})
	if err != nil {
		return err
	}
	pub := newCounter(o.n)
	relay.Register(topic, outbox.PublisherFunc(func(_ context.Context, d outbox.Delivery) error {
		pub.see(d.ID)
		return nil
	}))

	loadStart := time.Now()
	if err := addBacklog(ctx, t.db, o.n); err != nil {
		return err
	}
	load := time.Since(loadStart)

	published, drained, err := runUntil(ctx, o, relay.Run, pub.all, nil)
	if err != nil {
		return err
	}
	printDrain(out, t, o.n, pub, load, published, drained, drainNames{
		load: "load_msgs_per_s", count: "published", done: "publish_s", rate: "relay_msgs_per_s",
	})
	return nil
}

// addBacklog commits n messages in transactions of loadBatch.
func addBacklog(ctx context.Context, db *gorm.DB, n int) error {
	for i := 0; i < n; i += loadBatch {
		err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			for j := i; j < min(i+loadBatch, n); j++ {
				msg := outbox.Message{Topic: topic, Payload: json.RawMessage(`{"n":` + strconv.Itoa(j) + `}`)}
				if _, err := outbox.Add(ctx, tx, msg); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("commit the backlog: %w", err)
		}
	}
	return nil
}

// writeAllocs writes the allocation profile so far to file.
func writeAllocs(file string) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("-memprofile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("-memprofile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("-memprofile: %w", err)
	}
	return nil
}

// runUntil runs run until done is closed, then stops it (through stop if
// given, else by cancelling its context) and waits for it to return. It
// reports the time to done and the time until run returned. The profiles
// o asks for cover that part alone.
func runUntil(ctx context.Context, o options, run func(context.Context) error, done <-chan struct{}, stop func(context.Context) error) (toDone, toReturn time.Duration, err error) {
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return 0, 0, fmt.Errorf("-cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, 0, fmt.Errorf("-cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if o.memProfile != "" {
		// The allocations so far (the backlog's load) go to a base
		// profile, so that `go tool pprof -base FILE.load FILE` shows
		// the drain's alone.
		if err := writeAllocs(o.memProfile + ".load"); err != nil {
			return 0, 0, err
		}
		defer func() {
			if werr := writeAllocs(o.memProfile); werr != nil && err == nil {
				err = werr
			}
		}()
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- run(runCtx) }()
	select {
	case <-done:
		toDone = time.Since(start)
	case err := <-errc:
		return 0, 0, fmt.Errorf("stopped before the backlog drained: %v", err)
	case <-ctx.Done():
		cancel()
		<-errc
		return 0, 0, ctx.Err()
	}
	if stop != nil {
		if err := stop(ctx); err != nil {
			cancel()
			<-errc
			return 0, 0, err
		}
	} else {
		cancel()
	}
	if err := <-errc; err != nil {
		return 0, 0, err
	}
	return toDone, time.Since(start), nil
}

// drainNames are the names one drain benchmark gives its figures.
type drainNames struct{ load, count, done, rate string }

// printDrain prints a drain's figures; the rate, last, counts from the
// start of the run until it returned.
func printDrain(out *printer, t *target, n int, c *counter, load, done, drained time.Duration, names drainNames) {
	seen, dups := c.counts()
	out.str("dialect", t.dialect)
	out.int("n", int64(n))
	out.float("load_s", load.Seconds())
	out.float(names.load, float64(n)/load.Seconds())
	out.int(names.count, int64(seen))
	out.int("duplicates", int64(dups))
	out.float(names.done, done.Seconds())
	out.float("drain_s", drained.Seconds())
	out.float(names.rate, float64(n)/drained.Seconds())
}

// counter counts distinct ids and closes all once it has seen want of them.
type counter struct {
	want int
	all  chan struct{}

	mu   sync.Mutex
	seen map[string]struct{}
	dups int
}

func newCounter(want int) *counter {
	return &counter{want: want, all: make(chan struct{}), seen: make(map[string]struct{}, want)}
}

// see records id and reports whether it was new.
func (c *counter) see(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[id]; ok {
		c.dups++
		return false
	}
	c.seen[id] = struct{}{}
	if len(c.seen) == c.want {
		close(c.all)
	}
	return true
}

func (c *counter) counts() (seen, dups int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen), c.dups
}
