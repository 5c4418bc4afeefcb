package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/outage"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/server/servertest"
	"github.com/canalhq/canal/testenv"
	"github.com/coder/websocket"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// idempotentReceiver counts each webhook message once by its
// Idempotency-Key, and how often it came.
type idempotentReceiver struct {
	mu   sync.Mutex
	seen map[string]int
}

func (rc *idempotentReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	rc.mu.Lock()
	rc.seen[r.Header.Get("Idempotency-Key")]++
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (rc *idempotentReceiver) missing(ids []string) []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, id := range ids {
		if rc.seen[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// traffic adds outbox messages in the test's own transactions and work
// items through the API until stopped, and keeps what was accepted: a
// committed transaction, a 202. What fails while the database is away was
// not accepted, and the caller was told.
type traffic struct {
	mu       sync.Mutex
	messages []string
	work     []string
	refused  int
}

func (tr *traffic) run(ctx context.Context, t *testing.T, db *gorm.DB, base string) {
	for i := 0; ctx.Err() == nil; i++ {
		var id string
		err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			var err error
			id, err = outbox.Add(ctx, tx, outbox.Message{Topic: "order.placed", Key: fmt.Sprintf("k%d", i%5), Payload: map[string]int{"n": i}})
			return err
		})
		tr.mu.Lock()
		if err == nil {
			tr.messages = append(tr.messages, id)
		} else {
			tr.refused++
		}
		tr.mu.Unlock()
		if i%3 == 0 {
			body := fmt.Sprintf(`{"kind":"email","payload":{"n":%d}}`, i)
			resp, err := http.Post(base+"/api/work", "application/json", strings.NewReader(body))
			if err == nil {
				var it struct{ ID string }
				_ = json.NewDecoder(resp.Body).Decode(&it)
				resp.Body.Close()
				tr.mu.Lock()
				switch {
				case resp.StatusCode == http.StatusAccepted:
					tr.work = append(tr.work, it.ID)
				case resp.StatusCode == http.StatusServiceUnavailable:
					tr.refused++
				default:
					t.Errorf("POST /api/work = %d, want 202, or 503 while the database is away", resp.StatusCode)
				}
				tr.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (tr *traffic) accepted() (messages, work []string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.messages...), append([]string(nil), tr.work...)
}

// banners reads /ws frames and reports each change of the "database
// unavailable" banner (true: shown).
func banners(ctx context.Context, t *testing.T, addr string) <-chan bool {
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatalf("dial /ws: %v", err)
	}
	conn.SetReadLimit(8 << 20)
	out := make(chan bool, 16)
	go func() {
		defer conn.CloseNow()
		last := -1
		for {
			_, frame, err := conn.Read(ctx)
			if err != nil {
				return
			}
			i := bytes.Index(frame, []byte(`id="db-banner"`))
			if i < 0 {
				continue
			}
			down := 0
			if bytes.Contains(frame[i:min(len(frame), i+300)], []byte(`data-down="true"`)) {
				down = 1
			}
			if down != last {
				last = down
				out <- down == 1
			}
		}
	}()
	return out
}

func waitBanner(t *testing.T, ch <-chan bool, want bool) {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case got := <-ch:
			if got == want {
				return
			}
		case <-timeout:
			t.Fatalf("the /ws banner never showed down=%v", want)
		}
	}
}

func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v (the dashboard must answer while the database is away)", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A PostgreSQL restart, then a stop of several seconds, of a cluster of
// the test's own, with outbox messages and work items flowing into a real
// Canal: while the database is away the dashboard answers (liveness 200,
// readiness 503 naming the database, the banner over /ws, 503 from what
// needs the database); after each return everything resumes by itself,
// every accepted message reaches the receiver and every accepted work item
// finishes, and the log says "database unavailable" and "database available
// again" once per outage, not once per poll.
func TestDatabaseOutagesAreSurvivedAndLoggedOnce(t *testing.T) {
	t.Parallel() // waits on processes, browsers and timers, not the CPU
	pg := testenv.PrivatePostgres(t)
	rc := &idempotentReceiver{seen: map[string]int{}}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	inst := servertest.Start(t, nil, "-db", pg.URL, "-webhook-url", hook.URL, "-log-level", "info")

	db, err := gorm.Open(postgres.Open(pg.URL), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shown := banners(ctx, t, inst.Addr)
	waitBanner(t, shown, false) // the snapshot: no banner

	var tr traffic
	var flowing sync.WaitGroup
	flowing.Go(func() { tr.run(ctx, t, db, inst.URL) })
	progress := func(what string) {
		t.Helper()
		m0, _ := tr.accepted()
		testenv.Eventually(t, 60*time.Second, what, func() bool {
			m, _ := tr.accepted()
			return len(m) > len(m0)+20 && len(rc.missing(m[:len(m0)+10])) == 0
		})
	}
	progress("traffic flows before any outage")

	// 1. A restart mid-run.
	pg.Restart()
	progress("messages are accepted and delivered again after the restart")

	// 2. A stop of several seconds: the dashboard keeps answering.
	pg.Stop()
	waitBanner(t, shown, true)
	if code, body := getStatus(t, inst.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while the database is away = %d %s, want 200 (the process is alive)", code, body)
	}
	testenv.Eventually(t, 30*time.Second, "/readyz fails naming the database", func() bool {
		code, body := getStatus(t, inst.URL+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"database"`)
	})
	for _, path := range []string{"/api/work?limit=5", "/work", "/outbox"} {
		if code, body := getStatus(t, inst.URL+path); code != http.StatusServiceUnavailable {
			t.Errorf("GET %s while the database is away = %d, want 503:\n%.300s", path, code, body)
		}
	}
	if code, body := getStatus(t, inst.URL+"/"); code != http.StatusOK || !strings.Contains(body, `data-down="true"`) {
		t.Errorf("GET / while the database is away = %d, want 200 with the banner shown:\n%.300s", code, body)
	}
	time.Sleep(5 * time.Second) // several seconds of outage: every loop polls and backs off meanwhile
	pg.Start()
	waitBanner(t, shown, false)
	testenv.Eventually(t, 30*time.Second, "/readyz answers 200 again", func() bool {
		code, _ := getStatus(t, inst.URL+"/readyz")
		return code == http.StatusOK
	})
	progress("messages are accepted and delivered again after the stop")
	cancel()
	flowing.Wait()

	// Nothing accepted is lost.
	messages, work := tr.accepted()
	testenv.Eventually(t, 60*time.Second, "every accepted message reaches the receiver", func() bool {
		return len(rc.missing(messages)) == 0
	})
	for _, id := range work {
		testenv.Eventually(t, 90*time.Second, "work item "+id+" finishes", func() bool {
			code, body := getStatus(t, inst.URL+"/api/work/"+id)
			var it struct{ State string }
			_ = json.Unmarshal([]byte(body), &it)
			return code == http.StatusOK && (it.State == "done" || it.State == "failed")
		})
	}
	rc.mu.Lock()
	dup := 0
	for _, id := range messages {
		if rc.seen[id] > 1 {
			dup++
		}
	}
	rc.mu.Unlock()
	t.Logf("accepted %d messages and %d work items, %d refused while the database was away; %d messages sent more than once",
		len(messages), len(work), tr.refused, dup)
	// One live process held every claim throughout: its outcomes were kept
	// and written after each outage and its leases renewed, so nothing was
	// taken from it and sent again.
	if dup > 0 {
		t.Errorf("%d messages were sent more than once, though the one process that held them lived on", dup)
	}

	// Once per outage each way, however many loops and polls.
	logs := inst.Logs()
	for _, msg := range []string{outage.LogUnavailable, outage.LogAvailable} {
		if n := strings.Count(logs, `"msg":"`+msg+`"`); n != 2 {
			t.Errorf("%q logged %d times over two outages, want 2", msg, n)
		}
	}
	for _, poll := range []string{"queue: claim failed", "queue: heartbeat failed", "queue: rescue failed", "outbox stats failed", "not ready"} {
		if n := strings.Count(logs, `"msg":"`+poll); n > 2 {
			t.Errorf("%q logged %d times: an outage's errors are logged once, not per poll", poll, n)
		}
	}
	if t.Failed() {
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, "available again") {
				t.Log(l)
			}
		}
	}
}
