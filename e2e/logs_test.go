package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
)

// TestLogLinesAreValidJSON runs the binary for a few seconds with its demo
// traffic and a few API writes at debug level, stops it, and reads every
// line of its log: each must be one JSON object with no key twice (the
// binary's lines had "component" twice: tagged by the caller and again by
// the callee) and no value slog could not write.
func TestLogLinesAreValidJSON(t *testing.T) {
	bin := canalBinary(t)
	for _, tc := range []struct {
		name string
		db   func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "canal.db") }},
		{"postgres", func(t *testing.T) string { return testenv.PostgresSchemaURL(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProcess(t, bin, "-addr", "127.0.0.1:0", "-db", tc.db(t), "-log-level", "debug")
			if err := p.start(); err != nil {
				t.Fatal(err)
			}
			if err := p.waitReady(upWithin); err != nil {
				t.Fatalf("did not come up: %v\n%s", err, p.stderr.String())
			}
			url := p.addr
			for i := range 10 {
				post(t, url+"/api/orders", fmt.Sprintf(`{"customer":"c%d","amount":%d.5}`, i, i+1), http.StatusCreated)
				post(t, url+"/api/work", `{"kind":"email","payload":{"to":"a@example.com"}}`, http.StatusAccepted)
				post(t, url+"/api/work", `{"kind":"nope"}`, http.StatusBadRequest) // a refused request logs too
			}
			// A few seconds of the demo's jobs, work and outbox.
			time.Sleep(3 * time.Second)
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.done:
			case <-time.After(stopWithin):
				t.Fatalf("still running %s after SIGTERM", stopWithin)
			}
			if p.err != nil {
				t.Fatalf("exit: %v\n%s", p.err, p.stderr.String())
			}
			objs := testenv.LogLines(t, []byte(p.stderr.String()))
			components := map[string]bool{}
			for _, o := range objs {
				if c, ok := o["component"].(string); ok {
					components[c] = true
				}
			}
			// Enough lines from enough parts to mean something.
			if len(objs) < 20 || !testenv.Logged(objs, "stopped") {
				t.Errorf("%d log lines, want at least 20 and a clean stop:\n%s", len(objs), p.stderr.String())
			}
			for _, c := range []string{"jobs", "outbox"} {
				if !components[c] {
					t.Errorf("no line with component %q (have %v)", c, components)
				}
			}
		})
	}
}

func post(t *testing.T, url, body string, want int) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("POST %s %s = %d, want %d", url, body, resp.StatusCode, want)
	}
}
