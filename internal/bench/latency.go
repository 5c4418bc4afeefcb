package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/canalhq/canal/outbox"
	"gorm.io/gorm"
)

// roleConsumer is the child side of `latency -procs 2`: it runs the relay,
// says consumer_ready=1, reads sent=N on stdin and prints its figures once
// it has dispatched N messages.
const roleConsumer = "consumer"

// grace is how long dispatch may trail the last commit before bench gives up.
const grace = 30 * time.Second

// stamp is the payload of a latency message: when its INSERT was issued,
// just before the COMMIT, in Unix nanoseconds. Latencies are measured from
// it, so they include the commit itself (reported as commit_*).
type stamp struct {
	T int64 `json:"t"`
}

// benchLatency commits one message at a time at o.rate for o.duration
// through Relay.Transaction and measures, at the publisher, how long after
// its commit each one is dispatched: by a relay in this process, or with
// -procs 2 by one in a child process (what a second server on the same
// database sees).
func benchLatency(ctx context.Context, t *target, o options, out *printer, stderr io.Writer, log *slog.Logger) error {
	if o.role == roleConsumer {
		return consume(ctx, t, o, os.Stdin, out, log)
	}
	if err := outbox.Migrate(ctx, t.db); err != nil {
		return err
	}
	relay, err := outbox.New(t.db, outbox.Config{Workers: o.workers, Logger: log.With("component", "outbox")})
	if err != nil {
		return err
	}
	if o.procs == 2 {
		return latencyTwoProcs(ctx, t, o, relay, out, stderr)
	}
	lat, stop := runMeasured(ctx, relay)
	defer stop()
	sent, commits, err := produce(ctx, relay, o.rate, o.duration)
	if err != nil {
		return err
	}
	waitErr := lat.waitFor(ctx, sent, grace)
	if err := stop(); err != nil {
		return err
	}
	printProducer(out, t, o, sent, commits)
	lat.print(out)
	return waitErr
}

// produce commits one message per 1/rate for d, each in its own
// transaction, and returns how many it committed and how long each took
// from its stamp until Transaction returned.
func produce(ctx context.Context, relay *outbox.Relay, rate float64, d time.Duration) (int, []time.Duration, error) {
	interval := time.Duration(float64(time.Second) / rate)
	var commits []time.Duration
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := 0; time.Duration(i)*interval < d; i++ {
		// A fixed schedule: a slow commit is followed by the next one at
		// once, so the offered rate holds unless commits cannot keep up.
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return len(commits), commits, ctx.Err()
			case <-timer.C:
			}
		}
		var at time.Time
		err := relay.Transaction(ctx, func(tx *gorm.DB) error {
			at = time.Now()
			p, _ := json.Marshal(stamp{T: at.UnixNano()})
			_, err := outbox.Add(ctx, tx, outbox.Message{Topic: topic, Payload: json.RawMessage(p)})
			return err
		})
		if err != nil {
			return len(commits), commits, fmt.Errorf("commit message %d: %w", i+1, err)
		}
		commits = append(commits, time.Since(at))
	}
	return len(commits), commits, nil
}

func printProducer(out *printer, t *target, o options, sent int, commits []time.Duration) {
	c := sortedCopy(commits)
	out.str("dialect", t.dialect)
	out.int("procs", int64(o.procs))
	out.float("offered_rate", o.rate)
	out.float("duration_s", o.duration.Seconds())
	out.int("sent", int64(sent))
	out.float("commit_p50_ms", quantile(c, 0.50))
	out.float("commit_p99_ms", quantile(c, 0.99))
}

// latencyTwoProcs commits here and lets a child process (this program
// again, with -role consumer) dispatch, then prints the child's figures.
func latencyTwoProcs(ctx context.Context, t *target, o options, relay *outbox.Relay, out *printer, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this program to start the consumer: %w", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(cctx, exe, "bench", "latency", "-role", roleConsumer, "-db", t.url,
		"-workers", strconv.Itoa(o.workers), "-log-level", o.logLevel)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the consumer process: %w", err)
	}
	lines := bufio.NewScanner(stdout)
	waitChild := func() error {
		_ = stdin.Close()
		for lines.Scan() { // drain, so the child never blocks on a full pipe
		}
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("consumer process: %w", err)
		}
		return nil
	}
	ready := false
	for !ready && lines.Scan() {
		ready = lines.Text() == "consumer_ready=1"
	}
	if !ready {
		return errors.Join(errors.New("the consumer process ended before it was ready"), waitChild())
	}

	sent, commits, err := produce(ctx, relay, o.rate, o.duration)
	if err != nil {
		return errors.Join(err, waitChild())
	}
	if _, err := fmt.Fprintf(stdin, "sent=%d\n", sent); err != nil {
		return errors.Join(fmt.Errorf("tell the consumer: %w", err), waitChild())
	}
	_ = stdin.Close()
	printProducer(out, t, o, sent, commits)
	for lines.Scan() {
		if name, v, ok := strings.Cut(lines.Text(), "="); ok {
			out.str(name, v)
		}
	}
	return waitChild()
}

// consume is the child of -procs 2.
func consume(ctx context.Context, t *target, o options, stdin io.Reader, out *printer, log *slog.Logger) error {
	relay, err := outbox.New(t.db, outbox.Config{Workers: o.workers, Logger: log.With("component", "outbox")})
	if err != nil {
		return err
	}
	lat, stop := runMeasured(ctx, relay)
	defer stop()
	out.str("consumer_ready", "1")

	sentc := make(chan int, 1)
	go func() {
		// The parent writes sent=N once it has committed everything.
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "sent=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			n = -1
		}
		sentc <- n
	}()
	var sent int
	select {
	case sent = <-sentc:
	case <-ctx.Done():
		return ctx.Err()
	}
	if sent < 0 {
		return errors.New("consumer: expected sent=N on standard input")
	}
	waitErr := lat.waitFor(ctx, sent, grace)
	if err := stop(); err != nil {
		return err
	}
	lat.print(out)
	return waitErr
}

// runMeasured runs relay with a publisher that measures latencies; stop
// ends the run, waits for it and returns Run's error (once; later calls
// return the same).
func runMeasured(ctx context.Context, relay *outbox.Relay) (*latencies, func() error) {
	lat := newLatencies()
	relay.Register(topic, lat.publisher())
	runCtx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- relay.Run(runCtx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-errc
	})
	return lat, stop
}

// latencies collects commit-to-dispatch latencies at the publisher, once
// per message id.
type latencies struct {
	seen *counter
	mu   sync.Mutex
	d    []time.Duration
	bad  int // payloads without a stamp (not bench's)
}

func newLatencies() *latencies { return &latencies{seen: newCounter(-1)} }

func (l *latencies) publisher() outbox.Publisher {
	return outbox.PublisherFunc(func(_ context.Context, d outbox.Delivery) error {
		now := time.Now()
		var s stamp
		if err := json.Unmarshal(d.Payload, &s); err != nil || s.T == 0 {
			l.mu.Lock()
			l.bad++
			l.mu.Unlock()
			return nil
		}
		if l.seen.see(d.ID) {
			l.mu.Lock()
			l.d = append(l.d, now.Sub(time.Unix(0, s.T)))
			l.mu.Unlock()
		}
		return nil
	})
}

// waitFor waits until n messages were dispatched, or for limit.
func (l *latencies) waitFor(ctx context.Context, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if got, _ := l.seen.counts(); got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			got, _ := l.seen.counts()
			return fmt.Errorf("only %d of %d messages dispatched within %s of the last commit", got, n, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (l *latencies) print(out *printer) {
	l.mu.Lock()
	d := sortedCopy(l.d)
	bad := l.bad
	l.mu.Unlock()
	_, dups := l.seen.counts()
	out.int("received", int64(len(d)))
	out.int("duplicates", int64(dups))
	if bad > 0 {
		out.int("unstamped", int64(bad))
	}
	out.float("latency_p50_ms", quantile(d, 0.50))
	out.float("latency_max_ms", quantile(d, 1))
	out.float("latency_p99_ms", quantile(d, 0.99))
}
