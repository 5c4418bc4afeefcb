package web

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/coder/websocket"
)

// BenchmarkFanout measures the hub's fan-out over real WebSockets on
// loopback: N browsers' worth of /ws connections, each event a discrete job
// failure that every client receives as its own HTML frame.
//
// The clients live in a child process (this test binary again, which TestMain
// turns into fanoutClients), so that 10 000 connections fit in two processes' file
// descriptor limits and the memory measured here is the server's alone. The
// producer keeps at most inflight events not yet received by every client:
// with 1 the latency is one event's fan-out to all clients; with 8 the hub
// runs flat out and the rate is what it sustains without dropping anyone.
// Both processes share this machine's cores: the figures are a lower bound
// for a server whose browsers are elsewhere.
//
//	go test -bench Fanout -run '^$' -benchtime 5s ./web/
func BenchmarkFanout(b *testing.B) {
	if err := raiseFileLimit(); err != nil {
		b.Log(err)
	}
	for _, n := range []int{100, 1000, 10000} {
		for _, inflight := range []int{1, 8} {
			b.Run(fmt.Sprintf("clients=%d/inflight=%d", n, inflight), func(b *testing.B) { benchFanout(b, n, inflight) })
		}
	}
}

func benchFanout(b *testing.B, n, inflight int) {
	je := make(chan jobs.Event, 1024)
	h := NewHub(HubConfig{JobEvents: je, ClientBuffer: 64, Burst: 1 << 30, FlushEvery: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	hubDone := make(chan struct{})
	go func() { h.Run(ctx); close(hubDone) }()
	srv := httptest.NewServer(New(Deps{Hub: h, WS: WSConfig{WriteTimeout: 30 * time.Second}}))
	defer func() { cancel(); <-hubDone; srv.CloseClientConnections(); srv.Close() }()

	heap0, g0 := memNow()
	cmd := exec.Command(os.Args[0]) // TestMain makes it the client process
	cmd.Env = append(os.Environ(), "CANAL_FANOUT_URL="+wsURL(srv, "/ws"), "CANAL_FANOUT_CLIENTS="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(prefix string) string {
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					b.Fatalf("client process ended while waiting for %q", prefix)
				}
				if rest, ok := strings.CutPrefix(l, prefix); ok {
					return rest
				}
			case <-time.After(120 * time.Second):
				b.Fatalf("client process: no %q within 120s", prefix)
			}
		}
	}
	expect("ready")
	heap1, g1 := memNow()

	acked := -1
	waitAck := func(upTo int) {
		for acked < upTo {
			acked, _ = strconv.Atoi(expect("ack "))
		}
	}
	sent := 0
	start := time.Now()
	for b.Loop() {
		waitAck(sent - inflight)
		now := time.Now().UnixNano()
		je <- jobs.Event{Type: jobs.EventRunFailed, At: time.Now(), Job: &jobs.Status{
			Name: "bench", Running: true, Executions: int64(sent), LastError: fmt.Sprintf("%d:%d", sent, now)}}
		sent++
	}
	waitAck(sent - 1)
	elapsed := time.Since(start)
	fmt.Fprintln(stdin, "done")
	lat := strings.Fields(expect("latency "))
	st, err := h.Stats(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	p50, _ := strconv.ParseFloat(lat[0], 64)
	p99, _ := strconv.ParseFloat(lat[1], 64)
	b.ReportMetric(float64(sent*n)/elapsed.Seconds(), "frames/s")
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "events/s")
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(float64(heap1-heap0)/float64(n), "B/conn")
	b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/conn")
	b.ReportMetric(float64(st.SlowClosed), "slow-closed")
	b.ReportMetric(float64(st.BytesPerPage), "B/frame")
}

// memNow is the heap and stacks in use after a GC, and the goroutine count.
func memNow() (uint64, int) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse, runtime.NumGoroutine()
}

// raiseFileLimit lifts the soft limit on open files to the hard one.
func raiseFileLimit() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("open-file limit: %w", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return fmt.Errorf("raise open-file limit: %w", err)
		}
	}
	return nil
}

// TestMain runs the test binary as BenchmarkFanout's client process when the
// benchmark starts it with CANAL_FANOUT_URL set, and as the tests otherwise.
func TestMain(m *testing.M) {
	if url := os.Getenv("CANAL_FANOUT_URL"); url != "" {
		n, _ := strconv.Atoi(os.Getenv("CANAL_FANOUT_CLIENTS"))
		if err := fanoutClients(url, n); err != nil {
			fmt.Fprintln(os.Stderr, "fanout clients:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fanoutClients is the client side of BenchmarkFanout. It dials n
// connections, prints "ready" once every snapshot is in, "ack I" once every
// client has event I, and on "done" from stdin the latency percentiles of a
// sample of clients.
func fanoutClients(url string, n int) error {
	if err := raiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	var dialErrs atomic.Int64
	const ring = 1 << 12
	var (
		counts  [ring]atomic.Int64
		ready   atomic.Int64
		printMu sync.Mutex
		samples = make([][]float64, n)
		every   = max(1, n/100) // sample about a hundred clients
	)
	say := func(format string, args ...any) {
		printMu.Lock()
		defer printMu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	marker := []byte(`data-testid="last-error" title="`)
	conns := make([]*websocket.Conn, n)
	var dialers sync.WaitGroup
	idx := make(chan int)
	for range 64 {
		dialers.Go(func() {
			for i := range idx {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				c, _, err := websocket.Dial(ctx, url, nil)
				cancel()
				if err != nil {
					fmt.Fprintf(os.Stderr, "dial %d: %v\n", i, err)
					dialErrs.Add(1)
					continue
				}
				c.SetReadLimit(1 << 20)
				conns[i] = c
			}
		})
	}
	for i := range n {
		idx <- i
	}
	close(idx)
	dialers.Wait()
	if e := dialErrs.Load(); e > 0 {
		return fmt.Errorf("%d of %d dials failed", e, n)
	}
	var readers sync.WaitGroup
	for i, c := range conns {
		readers.Go(func() {
			first := true
			for {
				_, msg, err := c.Read(context.Background())
				if err != nil {
					return
				}
				if first {
					first = false
					if ready.Add(1) == int64(n) {
						say("ready")
					}
					continue
				}
				at := time.Now().UnixNano()
				// Frames queued behind each other arrive joined in one
				// message: take every marker in it.
				for {
					j := bytes.Index(msg, marker)
					if j < 0 {
						break
					}
					msg = msg[j+len(marker):]
					end := bytes.IndexByte(msg, '"')
					seqS, tsS, ok := strings.Cut(string(msg[:end]), ":")
					if !ok {
						continue
					}
					seq, _ := strconv.Atoi(seqS)
					ts, _ := strconv.ParseInt(tsS, 10, 64)
					if i%every == 0 {
						samples[i] = append(samples[i], float64(at-ts)/1e6)
					}
					if counts[seq%ring].Add(1) == int64(n) {
						counts[seq%ring].Store(0)
						say("ack %d", seq)
					}
				}
			}
		})
	}
	_, _ = io.ReadAll(io.LimitReader(os.Stdin, 4)) // "done"
	for _, c := range conns {
		c.CloseNow()
	}
	readers.Wait()
	var all []float64
	for _, s := range samples {
		all = append(all, s...)
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return all[int(p*float64(len(all)-1))]
	}
	say("latency %.3f %.3f %d", pct(0.50), pct(0.99), len(all))
	return nil
}
