package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canalhq/canal/server"
	"github.com/canalhq/canal/server/servertest"
	"github.com/canalhq/canal/testenv"
	"github.com/coder/websocket"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

var executionsRE = regexp.MustCompile(`id="job-report"[^>]*>.*?data-testid="executions">([\d,]+)<`)

// executions reads the report job's execution count from a page or a frame.
func executions(html string) (int, bool) {
	m := executionsRE.FindStringSubmatch(html)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	return n, true
}

func TestRunServesLiveDashboardAndShutsDownCleanly(t *testing.T) {
	inst := servertest.Start(t, nil)

	code, body := get(t, inst.URL+"/healthz")
	var health struct{ Status string }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &health) != nil || health.Status != "ok" {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	code, body = get(t, inst.URL+"/")
	if code != http.StatusOK || !strings.Contains(body, `id="job-report"`) {
		t.Fatalf("GET / = %d, want the report job's card:\n%s", code, body)
	}
	for _, asset := range []string{"/static/canal.css", "/static/vendor/htmx-2.0.11.min.js", "/static/vendor/htmx-ext-ws-2.0.4.min.js"} {
		if code, _ := get(t, inst.URL+asset); code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200 (embedded)", asset, code)
		}
	}

	// The hub learns the jobs from the processor's events (the page above
	// asks the processor): on a loaded machine it may not know them yet.
	testenv.Eventually(t, 60*time.Second, "the hub knows the report job", func() bool {
		_, body := get(t, inst.URL+"/api/dashboard")
		return strings.Contains(body, `"name":"report"`)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+inst.Addr+"/ws", nil)
	if err != nil {
		t.Fatalf("dial /ws: %v", err)
	}
	defer conn.CloseNow()

	// The first frame is a snapshot holding the job's card; a later one
	// carries a higher execution count, pushed without any request.
	first := -1
	for {
		_, frame, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("read /ws: %v", err)
		}
		n, ok := executions(string(frame))
		if first < 0 {
			if !ok {
				t.Fatalf("first frame is not a snapshot with the report card:\n%s", frame)
			}
			first = n
			continue
		}
		if ok && n > first {
			break
		}
	}

	// Shutdown closes sockets with 1012 so browsers reconnect by themselves,
	// and Run returns nil.
	stopped := make(chan error, 1)
	go func() { stopped <- inst.Stop() }()
	for {
		_, _, err := conn.Read(ctx)
		if err == nil {
			continue
		}
		if got := websocket.CloseStatus(err); got != websocket.StatusServiceRestart {
			t.Fatalf("close status on shutdown = %v (%v), want 1012", got, err)
		}
		break
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run returned %v on shutdown, want nil", err)
	}
	if !strings.Contains(inst.Logs(), `"msg":"stopped"`) {
		t.Errorf("logs do not show a clean stop:\n%s", inst.Logs())
	}
}

func TestRunOnPostgreSQL(t *testing.T) {
	url := testenv.PostgresSchemaURL(t)
	inst := servertest.Start(t, map[string]string{"CANAL_DB": url})
	code, body := get(t, inst.URL+"/")
	if code != http.StatusOK || !strings.Contains(body, `id="job-report"`) {
		t.Fatalf("GET / on PostgreSQL = %d:\n%s", code, body)
	}
}

func TestRunRejectsBadConfigurationClearly(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"canal", "-addr", "nowhere"}, `-addr "nowhere"`},
		{[]string{"canal", "-db", "redis://x"}, "unsupported scheme"},
		{[]string{"canal", "-db", "postgres://nobody@127.0.0.1:1/none?connect_timeout=2"}, "connect to postgres database"},
	}
	for _, tt := range tests {
		var stdout, stderr strings.Builder
		err := server.Run(context.Background(), tt.args, func(string) string { return "" }, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}

func TestHelpExitsCleanly(t *testing.T) {
	var stdout, stderr strings.Builder
	if err := server.Run(context.Background(), []string{"canal", "-h"}, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("canal -h: %v", err)
	}
	for _, want := range []string{"-addr (CANAL_ADDR", "-db (CANAL_DB", "-demo (CANAL_DEMO"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("canal -h does not list %q:\n%s", want, stderr.String())
		}
	}
}

func TestPortInUseIsAClearError(t *testing.T) {
	inst := servertest.Start(t, nil)
	err := server.Run(context.Background(), []string{"canal", "-addr", inst.Addr, "-db", t.TempDir() + "/b.db"},
		func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "listen on "+inst.Addr) {
		t.Fatalf("second Run on a used port = %v, want a listen error", err)
	}
}

// TestRunLeavesNoWALAtStop: a graceful stop leaves the SQLite WAL empty
// (or gone), its pages in the database file.
func TestRunLeavesNoWALAtStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "canal.db")
	inst := servertest.Start(t, nil, "-db", path)
	walSize := func() int64 {
		st, err := os.Stat(path + "-wal")
		if err != nil {
			return 0
		}
		return st.Size()
	}
	testenv.Eventually(t, 30*time.Second, "the WAL holds the demo's writes", func() bool { return walSize() > 0 })
	if err := inst.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if size := walSize(); size != 0 {
		t.Errorf("WAL %d bytes after a graceful stop, want 0 or none", size)
	}
}
