package server_test

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSignalShutsDownWithExitZero runs the built binary and sends it SIGINT
// and SIGTERM: it must stop serving, drain and exit 0.
func TestSignalShutsDownWithExitZero(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	t.Parallel() // waits on processes, browsers and timers, not the CPU
	bin := buildCanal(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-db", filepath.Join(t.TempDir(), "c.db"))
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stdout)
			if !sc.Scan() || !strings.HasPrefix(sc.Text(), "canal: listening on ") {
				_ = cmd.Process.Kill()
				t.Fatalf("no listening line; stderr:\n%s", stderr.String())
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("exit after %v: %v\n%s", sig, err, stderr.String())
				}
			case <-time.After(60 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("still running 60s after %v\n%s", sig, stderr.String())
			}
			if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
				t.Errorf("no clean stop in logs:\n%s", stderr.String())
			}
		})
	}
}

// TestSecondSignalExitsAtOnce queues slow work so that a graceful stop would
// take most of a minute, sends SIGINT, then SIGINT again: the second one
// must end the process at once, by the signal, without waiting for the drain.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	t.Parallel() // waits on processes, browsers and timers, not the CPU
	bin := buildCanal(t)
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-db", filepath.Join(t.TempDir(), "c.db"),
		"-workers", "1", "-shutdown-timeout", "2m")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer // read here while exec writes it
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		t.Fatalf("no listening line; stderr:\n%s", stderr.String())
	}
	url, ok := strings.CutPrefix(sc.Text(), "canal: listening on ")
	if !ok {
		t.Fatalf("unexpected first line %q", sc.Text())
	}
	// 60 resizes of 0.3-1.2 s each on one worker: a drain of 20-70 s.
	for i := range 60 {
		body := fmt.Sprintf(`{"kind":"image.resize","priority":"low","payload":{"image":"big/%d.jpg","width":4000}}`, i)
		resp, err := http.Post(url+"/api/work", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /api/work = %d", resp.StatusCode)
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	// Wait until the first signal has been handled: the program says so.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(stderr.String(), "shutting down") {
		if time.Now().After(deadline) {
			t.Fatalf("first SIGINT not handled:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("exited (%v) before the second signal: the drain was not slow enough to test", err)
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("after the second SIGINT: %v, want the process ended by the signal", err)
		}
		if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
			t.Fatalf("after the second SIGINT: %v, want death by SIGINT", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("still draining 60s after the second SIGINT\n%s", stderr.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
