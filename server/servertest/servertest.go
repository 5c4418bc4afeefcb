// Package servertest starts the whole Canal program in-process, through the
// same server.Run that main calls, for end-to-end tests.
package servertest

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/server"
	"github.com/canalhq/canal/testenv"
)

// Instance is one running program.
type Instance struct {
	URL    string // http://127.0.0.1:PORT
	Addr   string // 127.0.0.1:PORT
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
	once   sync.Once
	err    error
}

// Start runs Canal with args (without the program name) and env, waits until
// /healthz answers 200, and stops it when the test ends. Unless args name
// them, it listens on a free loopback port and uses a SQLite file in a
// temporary directory.
func Start(t testing.TB, env map[string]string, args ...string) *Instance {
	t.Helper()
	full := []string{"canal"}
	if !hasFlag(args, "addr") {
		full = append(full, "-addr", "127.0.0.1:0")
	}
	if !hasFlag(args, "db") {
		full = append(full, "-db", filepath.Join(t.TempDir(), "canal.db"))
	}
	full = append(full, args...)
	getenv := func(k string) string { return env[k] }

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	inst := &Instance{cancel: cancel, done: make(chan error, 1), logs: &syncBuffer{}}
	go func() {
		err := server.Run(ctx, full, getenv, pw, inst.logs)
		pw.Close()
		inst.done <- err
	}()
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "canal: listening on "); ok {
				urlc <- u
			}
		}
	}()
	select {
	case inst.URL = <-urlc:
	case err := <-inst.done:
		t.Fatalf("servertest: canal exited before listening: %v\n%s", err, inst.logs.String())
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("servertest: canal did not start within 30s\n%s", inst.logs.String())
	}
	inst.Addr = strings.TrimPrefix(inst.URL, "http://")
	t.Cleanup(func() {
		if err := inst.Stop(); err != nil {
			t.Errorf("servertest: canal stopped with error: %v", err)
		}
	})
	testenv.Eventually(t, 30*time.Second, "GET /healthz answers 200", func() bool {
		resp, err := http.Get(inst.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return inst
}

// Stop cancels the program's context, as SIGINT does, and returns what Run
// returned. It may be called more than once.
func (i *Instance) Stop() error {
	i.once.Do(func() {
		i.cancel()
		select {
		case i.err = <-i.done:
		case <-time.After(60 * time.Second):
			i.err = context.DeadlineExceeded
		}
	})
	return i.err
}

// Logs returns what the program has logged so far.
func (i *Instance) Logs() string { return i.logs.String() }

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		a = strings.TrimLeft(a, "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

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
