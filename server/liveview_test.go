package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/queue"
	queuedialect "github.com/canalhq/canal/internal/queue/dialect"
	"github.com/canalhq/canal/testenv"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

func postJSON(t *testing.T, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

type processesAnswer struct {
	Processes []queue.ProcessInfo `json:"processes"`
}

func getProcesses(t *testing.T, base string) processesAnswer {
	t.Helper()
	res, err := http.Get(base + "/api/processes")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out processesAnswer
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/processes: %d", res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Two real processes on one PostgreSQL schema: A is a standalone dashboard
// (-demo=false: no job, no work kind, no publisher), B runs the demo; the
// events go by NOTIFY, or by NATS with -events-nats-url. A
// command posted to B changes a job that only B has, and A's /ws/events
// socket carries that change; A's queue figures count B's workers (A has
// none), and A's /api/processes lists both with their versions.
func TestTwoProcessesOneLiveView(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real program; skipped with -short")
	}
	t.Parallel() // waits on processes, browsers and timers, not the CPU
	bin := buildCanal(t)
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"notify", nil},
		{"nats", []string{"-events-nats-url", testenv.NATSURL(t)}},
	} {
		t.Run(tc.name, func(t *testing.T) { twoProcessesOneLiveView(t, bin, tc.extra) })
	}
}

func twoProcessesOneLiveView(t *testing.T, bin string, extra []string) {
	url := testenv.PostgresSchemaURL(t)
	a := startCanal(t, bin, append([]string{"-db", url, "-demo=false"}, extra...)...)
	b := startCanal(t, bin, append([]string{"-db", url}, extra...)...)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, strings.Replace(a.url, "http", "ws", 1)+"/ws/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(8 << 20)
	frames := make(chan []byte, 1024)
	go func() {
		defer close(frames)
		for {
			_, msg, err := ws.Read(ctx)
			if err != nil {
				return
			}
			frames <- msg
		}
	}()
	// Wait for any frame naming B's demo job (its runs reach A), then stop
	// the job on B and wait for A to say so.
	next := func(what string, ok func([]byte) bool) {
		t.Helper()
		for {
			select {
			case f, open := <-frames:
				if !open {
					t.Fatalf("A's socket closed before %s", what)
				}
				if ok(f) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("A's socket never carried %s", what)
			}
		}
	}
	next("B's demo job", func(f []byte) bool { return bytes.Contains(f, []byte(`"name":"cleanup"`)) })
	if code, body := postJSON(t, b.url+"/api/jobs/cleanup/stop", ""); code != http.StatusOK {
		t.Fatalf("stop on B: %d %s", code, body)
	}
	next("the stop of B's job", func(f []byte) bool {
		return bytes.Contains(f, []byte(`"job.stopped"`)) && bytes.Contains(f, []byte(`"cleanup"`))
	})

	// Cluster figures: A runs no worker, B four.
	testenv.Eventually(t, 30*time.Second, "A's dashboard counts B's workers", func() bool {
		res, err := http.Get(a.url + "/api/dashboard")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		var v struct {
			Queue *struct {
				Workers int `json:"workers"`
			} `json:"queue"`
		}
		return json.NewDecoder(res.Body).Decode(&v) == nil && v.Queue != nil && v.Queue.Workers == 4
	})

	ps := getProcesses(t, a.url)
	if len(ps.Processes) != 2 {
		t.Fatalf("A lists %d processes, want 2: %+v", len(ps.Processes), ps.Processes)
	}
	self := 0
	for _, p := range ps.Processes {
		if p.Lost || p.Version == "" || p.Host == "" || p.PID == 0 || p.Started.IsZero() || p.Heartbeat.IsZero() {
			t.Fatalf("process %+v: want live, with host, pid, version, start and heartbeat", p)
		}
		if p.Self {
			self++
			if p.PID != a.cmd.Process.Pid {
				t.Fatalf("A says it is pid %d, it is %d", p.PID, a.cmd.Process.Pid)
			}
		}
	}
	if self != 1 {
		t.Fatalf("%d processes marked as the one answering, want 1", self)
	}
}

// A browser on a standalone dashboard (A) watches a work item that another
// process (B) runs: the item is due a few seconds after the page is open,
// and the page shows it finished without a reload. The processes page lists
// both, and shows B lost once it is SIGKILLed and its heartbeat ages.
func TestBrowserSeesWorkFinishOnAnotherProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real program; skipped with -short")
	}
	t.Parallel() // waits on processes, browsers and timers, not the CPU
	browser := testenv.Browser(t)
	url := testenv.PostgresSchemaURL(t)
	bin := buildCanal(t)
	a := startCanal(t, bin, "-db", url, "-demo=false")
	b := startCanal(t, bin, "-db", url)

	// The item goes straight into the shared table, due later: B claims
	// it only once the page is open.
	db, err := gorm.Open(postgres.Open(url), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
	}()
	drv, err := queuedialect.For(db)
	if err != nil {
		t.Fatal(err)
	}
	const id = "from-the-test"
	due := time.Now().Add(6 * time.Second)
	err = db.Transaction(func(tx *gorm.DB) error {
		_, err := queue.Insert(context.Background(), drv, tx, "work", time.Now(), queue.NewItem{
			PublicID: id, Kind: "image.resize", Priority: 2, Payload: json.RawMessage(`{"image":"cat.png"}`), MaxAttempts: 3, RunAt: due,
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(browser, 120*time.Second)
	defer cancel()
	var state string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(a.url+"/work/"+id),
		chromedp.WaitVisible(`[data-testid="work-detail"]`),
		chromedp.Evaluate(`window.canalNoReload = true`, nil),
		chromedp.AttributeValue(`[data-testid="work-detail"]`, "data-state", &state, nil),
	); err != nil {
		t.Fatalf("open the item on A: %v", err)
	}
	if state != "pending" {
		t.Fatalf("the item is %q when the page opens, want pending (due at %s)", state, due.Format(time.RFC3339))
	}
	var finished bool
	if err := chromedp.Run(ctx,
		chromedp.Poll(`(() => { const s = document.querySelector('[data-testid="work-detail"]').dataset.state;
			return (s === 'done' || s === 'failed') && window.canalNoReload === true })()`,
			&finished, chromedp.WithPollingTimeout(60*time.Second)),
	); err != nil || !finished {
		t.Fatalf("A's page did not show B finishing the item without a reload: %v", err)
	}

	// The processes page: both live, then B lost after a SIGKILL.
	bPID := b.cmd.Process.Pid
	rowOf := func(pid int) string {
		for _, p := range getProcesses(t, a.url).Processes {
			if p.PID == pid {
				return p.ID
			}
		}
		t.Fatalf("pid %d not listed", pid)
		return ""
	}
	bID := rowOf(bPID)
	sel := `[data-testid="process"][data-id="` + bID + `"]`
	var n int
	if err := chromedp.Run(ctx,
		chromedp.Navigate(a.url+"/processes"),
		chromedp.WaitVisible(sel),
		chromedp.Evaluate(`window.canalNoReload = true`, nil),
		chromedp.Evaluate(`document.querySelectorAll('[data-testid="process"][data-state="live"]').length`, &n),
	); err != nil {
		t.Fatalf("processes page: %v", err)
	}
	if n != 2 {
		t.Fatalf("%d live processes listed, want 2", n)
	}
	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var lost bool
	if err := chromedp.Run(ctx,
		chromedp.Poll(`document.querySelector('`+sel+`')?.dataset.state === 'lost' && window.canalNoReload === true`,
			&lost, chromedp.WithPollingTimeout(60*time.Second)),
	); err != nil || !lost {
		t.Fatalf("B is not shown lost after its kill, without a reload: %v", err)
	}
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err == nil {
		testenv.SaveScreenshot(t, "processes.png", png)
	}
}
