package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/coder/websocket"
)

// newTestServer serves the whole HTTP surface around h on loopback.
func newTestServer(t testing.TB, h *Hub, jc JobController, origins ...string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(Deps{Hub: h, Jobs: jc, WS: WSConfig{OriginPatterns: origins}}))
	t.Cleanup(srv.Close)
	return srv
}

func wsURL(srv *httptest.Server, path string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + path
}

func dial(t testing.TB, srv *httptest.Server, path string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, wsURL(srv, path), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	c.SetReadLimit(16 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func readOne(t testing.TB, c *websocket.Conn) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}

// closeCode reads until the connection closes and returns the peer's code.
func closeCode(t testing.TB, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := c.Read(ctx); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

func TestWSEventsSnapshotFirstThenSequencedFrames(t *testing.T) {
	h, je, _ := testHub(t, HubConfig{FlushEvery: time.Hour})
	srv := newTestServer(t, h, nil)
	c := dial(t, srv, "/ws/events")
	var snap frame
	if err := json.Unmarshal(readOne(t, c), &snap); err != nil || snap.Type != "snapshot" {
		t.Fatalf("first frame = %+v, %v; want a snapshot", snap, err)
	}
	je <- jobs.Event{Type: jobs.EventJobStopped, At: time.Now(), Job: status("report", false, 0, 0, "")}
	var ev struct {
		Seq  uint64 `json:"seq"`
		Type string `json:"type"`
		Data struct {
			Job   jobs.Status `json:"job"`
			State struct {
				Jobs []jobs.Status `json:"jobs"`
			} `json:"state"`
		} `json:"data"`
	}
	if err := json.Unmarshal(readOne(t, c), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "job.stopped" || ev.Seq != snap.Seq+1 || ev.Data.Job.Name != "report" || len(ev.Data.State.Jobs) != 1 {
		t.Errorf("frame after snapshot %d: %+v; want job.stopped with seq %d, the job and the changed state", snap.Seq, ev, snap.Seq+1)
	}
}

func TestWSPageSocketSpeaksHTML(t *testing.T) {
	h, _, _ := testHub(t, HubConfig{FlushEvery: time.Hour})
	srv := newTestServer(t, h, nil)
	for path, id := range map[string]string{"/ws": "#feed", "/ws?view=wall": "#wall-failures"} {
		d := doc(t, readOne(t, dial(t, srv, path)))
		if d.Find(id).Length() != 1 || d.Find(`[data-testid="seq"]`).Length() != 1 {
			t.Errorf("%s: snapshot lacks %s or the seq marker", path, id)
		}
	}
	resp, err := http.Get(srv.URL + "/ws?view=nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown view: %d, want 400", resp.StatusCode)
	}
}

func TestWSChecksOrigin(t *testing.T) {
	h, _, _ := testHub(t, HubConfig{})
	srv := newTestServer(t, h, nil, "dash.example.com")
	try := func(origin string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, wsURL(srv, "/ws"), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {origin}}})
		if err == nil {
			c.CloseNow()
			return nil
		}
		if resp != nil && resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %s: status %d, want 403", origin, resp.StatusCode)
		}
		return err
	}
	if err := try("http://evil.example.org"); err == nil {
		t.Error("a foreign origin was accepted")
	}
	if err := try(srv.URL); err != nil {
		t.Errorf("the server's own origin was refused: %v", err)
	}
	if err := try("https://dash.example.com"); err != nil {
		t.Errorf("an allowed origin was refused: %v", err)
	}
}

func TestWSClosesClientsThatSend(t *testing.T) {
	h, _, _ := testHub(t, HubConfig{})
	srv := newTestServer(t, h, nil)
	c := dial(t, srv, "/ws")
	readOne(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", 8<<10))); err != nil {
		t.Fatal(err)
	}
	if code := closeCode(t, c); code != websocket.StatusPolicyViolation && code != websocket.StatusMessageTooBig {
		t.Errorf("closed with %d, want 1008 or 1009", code)
	}
}

func TestWSDroppedClientGets1013OnTheWire(t *testing.T) {
	h, _, _ := testHub(t, HubConfig{})
	srv := newTestServer(t, h, nil)
	c := dial(t, srv, "/ws/events")
	readOne(t, c)
	// What the hub does to a client whose queue is full.
	if err := h.query(context.Background(), func(st *hubState) {
		for cl := range st.clients {
			h.drop(st, cl, websocket.StatusTryAgainLater, "too slow, reconnect")
		}
	}); err != nil {
		t.Fatal(err)
	}
	if code := closeCode(t, c); code != websocket.StatusTryAgainLater {
		t.Errorf("closed with %d, want 1013", code)
	}
}

func TestWSAfterHubStoppedAnswers1012(t *testing.T) {
	h := NewHub(HubConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.Run(ctx)
	srv := newTestServer(t, h, nil)
	c := dial(t, srv, "/ws")
	if code := closeCode(t, c); code != websocket.StatusServiceRestart {
		t.Errorf("closed with %d, want 1012", code)
	}
	resp, err := http.Get(srv.URL + "/api/hub/stats")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("stats of a stopped hub: %d, want 503", resp.StatusCode)
	}
	if _, err := h.View(context.Background()); !errors.Is(err, errHubStopped) {
		t.Errorf("View of a stopped hub: %v", err)
	}
}

func TestHubStatsEndpoint(t *testing.T) {
	h, _, _ := testHub(t, HubConfig{})
	srv := newTestServer(t, h, nil)
	readOne(t, dial(t, srv, "/ws"))
	resp, err := http.Get(srv.URL + "/api/hub/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s HubStats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	if s.Clients != 1 || s.PageClients != 1 || s.Connections != 1 || s.FramesSent != 1 {
		t.Errorf("stats = %+v", s)
	}
}

func TestJoinQueuedKeepsOrderAndSharedFrames(t *testing.T) {
	q := make(chan []byte, 32)
	first := []byte("<a id=x>1</a>")
	if got := joinQueued(first, q); &got[0] != &first[0] {
		t.Error("a lone frame was copied")
	}
	for i := range 20 {
		q <- []byte(fmt.Sprintf("<a id=x>%d</a>", i+2))
	}
	got := string(joinQueued(first, q))
	want := ""
	for i := range maxJoined {
		want += fmt.Sprintf("<a id=x>%d</a>", i+1)
	}
	if got != want || string(first) != "<a id=x>1</a>" {
		t.Errorf("joined %q, first now %q", got, first)
	}
	if len(q) != 20-(maxJoined-1) {
		t.Errorf("%d frames left queued", len(q))
	}
}

// TestWSClientThatStopsReadingIsClosedAndCounted connects, over a real
// socket, a client that never reads. Its writes time out before its queue in
// the hub fills, so the hub never sees it fall behind: the server must still
// close it, count it as a slow client, and keep the reading client served.
func TestWSClientThatStopsReadingIsClosedAndCounted(t *testing.T) {
	h, je, _ := testHub(t, HubConfig{FlushEvery: time.Hour, Burst: 1 << 20, ClientBuffer: 1 << 16})
	srv := httptest.NewServer(New(Deps{Hub: h, WS: WSConfig{WriteTimeout: 200 * time.Millisecond}}))
	t.Cleanup(srv.Close)

	// The stuck client: it connects and never reads.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stuck, _, err := websocket.Dial(ctx, wsURL(srv, "/ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.CloseNow()

	// The reading client takes JSON frames: one message per flush, where
	// HTML frames may be joined, so every frame can be counted.
	fast := dial(t, srv, "/ws/events")
	var read atomic.Int64
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			if _, _, err := fast.Read(ctx); err != nil {
				return
			}
			read.Add(1)
		}
	}()

	for {
		if st, err := h.Stats(ctx); err != nil || st.Clients == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}

	// Large frames, until the stuck client is gone.
	bigErr := strings.Repeat("upstream timed out ", 1000)
	sent := 0
	for ; ctx.Err() == nil; sent++ {
		je <- jobs.Event{Type: jobs.EventRunFailed, At: time.Now(), Job: status("report", true, int64(sent+1), int64(sent+1), bigErr)}
		st, err := h.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Clients == 1 {
			if st.SlowClosed != 1 {
				t.Errorf("the stuck client was closed but stats say %d slow clients closed, want 1", st.SlowClosed)
			}
			break
		}
		time.Sleep(time.Millisecond)
	}
	if ctx.Err() != nil {
		t.Fatalf("the stuck client was never closed after %d large frames", sent)
	}
	t.Logf("the stuck client was closed after %d frames", sent)
	// The reading client must get every frame: the snapshot and one per
	// event. Frames may still be in flight when the stuck one is dropped, so
	// wait for them rather than counting at once; a lost frame fails here.
	want := int64(sent + 2)
	deadline := time.Now().Add(60 * time.Second)
	for read.Load() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	fast.CloseNow()
	<-readerDone
	if n := read.Load(); n != want {
		st, _ := h.Stats(context.Background())
		t.Errorf("the reading client got %d frames, want %d (stats %+v)", n, want, st)
	}
}
