package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
)

// Deadlines, not expected durations: a loaded 2-core machine may be slow.
const (
	upWithin   = 90 * time.Second // from exec to /readyz 200
	stopWithin = 60 * time.Second // from SIGTERM to exit
)

// TestReplicasStartTogether starts 4 processes at the same moment on an
// empty database, 10 times on PostgreSQL (a fresh schema each round, as a
// Deployment's first rollout does) and once on a SQLite file: every one
// must come up (its /readyz answers 200, it has not exited, its log has
// no "duplicate key") and stop cleanly on SIGTERM. Before migrations took
// a lock, half of such processes exited with a unique violation in
// pg_type_typname_nsp_index.
func TestReplicasStartTogether(t *testing.T) {
	bin := canalBinary(t)
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		testenv.PostgresURL(t) // skips without PostgreSQL
		for round := range 10 {
			t.Run(fmt.Sprint("round", round), func(t *testing.T) {
				startTogether(t, bin, 4, testenv.PostgresSchemaURL(t))
			})
		}
	})
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		startTogether(t, bin, 4, filepath.Join(t.TempDir(), "canal.db"))
	})
}

// startTogether runs n processes of bin on db, exec'd together after a
// barrier, and checks each comes up and stops cleanly.
func startTogether(t *testing.T, bin string, n int, db string) {
	t.Helper()
	procs := make([]*process, n)
	for i := range procs {
		procs[i] = newProcess(t, bin, "-addr", "127.0.0.1:0", "-db", db)
	}
	var ready, started sync.WaitGroup
	gate := make(chan struct{})
	errs := make([]error, n)
	for i, p := range procs {
		ready.Add(1)
		started.Add(1)
		go func() {
			defer started.Done()
			ready.Done()
			<-gate
			errs[i] = p.start()
		}()
	}
	ready.Wait()
	close(gate)
	started.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("exec: %v", err)
	}

	var wg sync.WaitGroup
	upErrs := make([]error, n)
	for i, p := range procs {
		wg.Go(func() { upErrs[i] = p.waitReady(upWithin) })
	}
	wg.Wait()
	for i, err := range upErrs {
		if err != nil {
			t.Errorf("process %d of %d did not come up: %v\n%s", i+1, n, err, procs[i].stderr.String())
		}
	}
	if t.Failed() {
		return
	}

	for _, p := range procs {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatalf("SIGTERM: %v", err)
		}
	}
	for i, p := range procs {
		select {
		case <-p.done:
			if p.err != nil {
				t.Errorf("process %d exited after SIGTERM: %v\n%s", i+1, p.err, p.stderr.String())
			}
		case <-time.After(stopWithin):
			t.Errorf("process %d still running %s after SIGTERM\n%s", i+1, stopWithin, p.stderr.String())
		}
	}
	for i, p := range procs {
		log := p.stderr.String()
		if strings.Contains(log, "duplicate key") {
			t.Errorf("process %d logged a duplicate key:\n%s", i+1, log)
		}
		objs := testenv.LogLines(t, []byte(log))
		if !testenv.Logged(objs, "stopped") {
			t.Errorf("process %d: no clean stop in its log:\n%s", i+1, log)
		}
	}
}

// process is one canal process a test runs; it is killed when the test
// ends if it is still running.
type process struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr *syncBuffer
	url    chan string   // the address from its "listening on" line
	addr   string        // that address, once waitReady has read it
	done   chan struct{} // closed when it has exited, with err set
	err    error
}

func newProcess(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	p := &process{cmd: cmd, stderr: &syncBuffer{}, url: make(chan string, 1), done: make(chan struct{})}
	cmd.Stderr = p.stderr
	var err error
	if p.stdout, err = cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.Process == nil {
			return
		}
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// start execs the process and follows its stdout and exit.
func (p *process) start() error {
	if err := p.cmd.Start(); err != nil {
		return err
	}
	go func() {
		sc := bufio.NewScanner(p.stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "canal: listening on "); ok {
				p.url <- u
			}
		}
		// Wait after stdout is read to its end, as exec asks.
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return nil
}

// waitReady waits for the listening line, then for /readyz to answer 200,
// failing if the process exits first or within does not suffice.
func (p *process) waitReady(within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var url string
	select {
	case url = <-p.url:
		p.addr = url
	case <-p.done:
		return fmt.Errorf("exited before listening: %v", p.err)
	case <-ctx.Done():
		return errors.New("no listening line")
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v (last /readyz: %s)", p.err, last)
		case <-ctx.Done():
			return fmt.Errorf("/readyz not 200 within %s: %s", within, last)
		case <-tick.C:
		}
	}
}

// syncBuffer is a process's stderr, read while exec writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
