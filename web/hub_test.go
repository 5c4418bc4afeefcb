package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/canalhq/canal/internal/audit"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/templates"
	"github.com/canalhq/canal/testenv"
	"github.com/coder/websocket"
)

// testHub runs a hub fed by the returned channels until the test ends.
func testHub(t testing.TB, cfg HubConfig) (*Hub, chan jobs.Event, chan outbox.Event) {
	t.Helper()
	// Unbuffered: once a send returns the hub has the event, and handles
	// it before anything a test asks next.
	je, oe := make(chan jobs.Event), make(chan outbox.Event)
	cfg.JobEvents, cfg.OutboxEvents = je, oe
	h := NewHub(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return h, je, oe
}

// attach registers an in-process client, as serveWS does, without a socket.
func attach(t testing.TB, h *Hub, v view, buffer int) *client {
	t.Helper()
	c := newClient(v, buffer)
	select {
	case h.register <- c:
	case <-time.After(60 * time.Second):
		t.Fatal("hub did not take the client")
	}
	return c
}

// next waits for the client's next frame; a hub that never sends fails the
// test after a generous bound (a hang, not a timing assertion).
func next(t testing.TB, c *client) []byte {
	t.Helper()
	select {
	case f := <-c.send:
		return f
	case <-c.quit:
		t.Fatalf("client was dropped with %d %q", c.closeCode, c.reason)
	case <-time.After(60 * time.Second):
		t.Fatal("no frame within 10s")
	}
	return nil
}

func status(name string, running bool, execs, fails int64, lastErr string) *jobs.Status {
	now := time.Now().UTC()
	return &jobs.Status{Name: name, Running: running, Interval: time.Second, Executions: execs, Failures: fails,
		LastRun: &now, LastDuration: 12 * time.Millisecond, LastError: lastErr}
}

func doc(t testing.TB, frame []byte) *goquery.Document {
	t.Helper()
	d, err := goquery.NewDocumentFromReader(bytes.NewReader(frame))
	if err != nil {
		t.Fatalf("parse frame: %v", err)
	}
	return d
}

func seqOf(t testing.TB, frame []byte) string {
	t.Helper()
	s, ok := doc(t, frame).Find(`[data-testid="seq"]`).Attr("data-seq")
	if !ok {
		t.Fatalf("frame has no seq marker: %.200s", frame)
	}
	return s
}

func TestHubFanOutSameBytesToEveryClient(t *testing.T) {
	h, je, _ := testHub(t, HubConfig{FlushEvery: time.Hour})
	var cs []*client
	for range 5 {
		c := attach(t, h, viewPage, 8)
		next(t, c) // snapshot
		cs = append(cs, c)
	}
	je <- jobs.Event{Type: jobs.EventJobStopped, At: time.Now(), Job: status("report", false, 3, 0, "")}

	var first []byte
	for i, c := range cs {
		f := next(t, c)
		card := doc(t, f).Find(`[data-testid="job-card"][data-job="report"]`)
		if card.Length() != 1 {
			t.Fatalf("client %d: frame has no card for report: %s", i, f)
		}
		if oob, _ := card.Attr("hx-swap-oob"); oob != "true" {
			t.Errorf("client %d: card is not swapped out of band: %q", i, oob)
		}
		if st, _ := card.Attr("data-state"); st != "stopped" {
			t.Errorf("client %d: state %q, want stopped", i, st)
		}
		if first == nil {
			first = f
		} else if &f[0] != &first[0] {
			t.Errorf("client %d got its own copy of the frame: it was rendered more than once", i)
		}
	}
	st, err := h.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Clients != 5 || st.FramesSent != 10 || st.FramesDrop != 0 {
		t.Errorf("stats = %+v, want 5 clients, 10 frames sent, none dropped", st)
	}
}

func TestHubSlowClientClosedWith1013WhileFastKeepUp(t *testing.T) {
	const buffer, events = 4, 40
	h, je, _ := testHub(t, HubConfig{FlushEvery: time.Hour, ClientBuffer: buffer, Burst: 1000})
	slow := attach(t, h, viewPage, buffer) // never reads
	fast := make([]*client, 3)
	for i := range fast {
		fast[i] = attach(t, h, viewPage, buffer)
		next(t, fast[i]) // snapshot
	}
	for i := range events {
		// Each failed run is discrete: one frame each, at once. The fast
		// clients read every one; the slow one reads none.
		je <- jobs.Event{Type: jobs.EventRunFailed, At: time.Now(), Job: status("report", true, int64(i+1), int64(i+1), "boom")}
		for _, c := range fast {
			f := next(t, c)
			if got := doc(t, f).Find(`[data-testid="executions"]`).Text(); got != fmt.Sprint(i+1) {
				t.Fatalf("fast client got executions %q, want %d", got, i+1)
			}
		}
	}
	select {
	case <-slow.quit:
	default:
		t.Fatal("slow client was never dropped")
	}
	if slow.closeCode != websocket.StatusTryAgainLater {
		t.Errorf("slow client closed with %d, want 1013", slow.closeCode)
	}
	if n := len(slow.send); n != buffer {
		t.Errorf("slow client had %d frames queued when dropped, want %d", n, buffer)
	}
	st, _ := h.Stats(context.Background())
	if st.SlowClosed != 1 || st.FramesDrop != 1 || st.Clients != 3 {
		t.Errorf("stats = %+v, want 1 slow client closed, 1 frame dropped, 3 clients left", st)
	}
}

func TestHubCoalescesCountsButNotDiscreteEvents(t *testing.T) {
	h, je, oe := testHub(t, HubConfig{FlushEvery: 20 * time.Millisecond, Burst: 2})
	c := attach(t, h, viewJSON, 1024)
	var snap frame
	if err := json.Unmarshal(next(t, c), &snap); err != nil {
		t.Fatal(err)
	}

	const runs, failures = 2000, 30
	for i := range runs {
		je <- jobs.Event{Type: jobs.EventRunSucceeded, At: time.Now(), Job: status("report", true, int64(i+1), 0, "")}
		oe <- outbox.Event{Type: outbox.EventDispatched, At: time.Now()}
	}
	for i := range failures {
		je <- jobs.Event{Type: jobs.EventRunFailed, At: time.Now(), Job: status("report", true, int64(runs+i+1), int64(i+1), fmt.Sprint("fail ", i))}
	}
	frames, seen := 0, map[string]bool{}
	lastSeq := snap.Seq
	for len(seen) < failures {
		var f frame
		raw := next(t, c)
		if err := json.Unmarshal(raw, &f); err != nil {
			t.Fatalf("frame is not JSON: %v: %s", err, raw)
		}
		frames++
		if f.Seq != lastSeq+1 {
			t.Fatalf("seq went from %d to %d", lastSeq, f.Seq)
		}
		lastSeq = f.Seq
		for _, e := range discreteIn(t, raw) {
			seen[e] = true
		}
	}
	// 4000 coalesced events and 30 discrete ones: far fewer frames than
	// events, and every failure arrived.
	if frames > 200 {
		t.Errorf("%d frames for %d events: counts were not coalesced", frames, 2*runs+failures)
	}
	for i := range failures {
		if !seen[fmt.Sprint("fail ", i)] {
			t.Errorf("failure %d never reached the client", i)
		}
	}
}

// discreteIn returns the lastError of every job.run.failed in a JSON frame,
// whether sent alone or in an "events" batch.
func discreteIn(t testing.TB, raw []byte) []string {
	t.Helper()
	type ev struct {
		Type string `json:"type"`
		Data struct {
			Job *jobs.Status `json:"job"`
		} `json:"data"`
	}
	var f struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	var evs []ev
	switch f.Type {
	case "events":
		var d struct {
			Events []ev `json:"events"`
		}
		if err := json.Unmarshal(f.Data, &d); err != nil {
			t.Fatal(err)
		}
		evs = d.Events
	case string(jobs.EventRunFailed):
		var e ev
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		evs = []ev{e}
	}
	var out []string
	for _, e := range evs {
		if e.Type == string(jobs.EventRunFailed) && e.Data.Job != nil {
			out = append(out, e.Data.Job.LastError)
		}
	}
	return out
}

func TestHubSnapshotThenLiveOnReconnect(t *testing.T) {
	h, je, _ := testHub(t, HubConfig{FlushEvery: time.Hour})
	je <- jobs.Event{Type: jobs.EventJobStarted, At: time.Now(), Job: status("report", true, 0, 0, "")}

	c := attach(t, h, viewPage, 8)
	snap := next(t, c)
	if doc(t, snap).Find(`[data-job="report"]`).Length() != 1 {
		t.Fatalf("first frame is not a snapshot with the job: %s", snap)
	}
	je <- jobs.Event{Type: jobs.EventJobStopped, At: time.Now(), Job: status("report", false, 0, 0, "")}
	live := next(t, c)
	if seqNum(t, seqOf(t, live)) <= seqNum(t, seqOf(t, snap)) {
		t.Errorf("live seq %s is not after snapshot seq %s", seqOf(t, live), seqOf(t, snap))
	}

	// The browser goes away; things happen; it comes back.
	h.unregister <- c
	je <- jobs.Event{Type: jobs.EventJobStarted, At: time.Now(), Job: status("report", true, 0, 0, "")}
	je <- jobs.Event{Type: jobs.EventRunFailed, At: time.Now(), Job: status("report", true, 1, 1, "went wrong while away")}
	if err := h.query(context.Background(), func(*hubState) {}); err != nil { // the events are in
		t.Fatal(err)
	}
	c2 := attach(t, h, viewPage, 8)
	snap2 := next(t, c2)
	d := doc(t, snap2)
	if st, _ := d.Find(`[data-job="report"]`).Attr("data-state"); st != "failing" {
		t.Errorf("reconnect snapshot shows state %q, want failing", st)
	}
	if !strings.Contains(d.Find(`[data-testid="feed"]`).Text(), "went wrong while away") {
		t.Errorf("reconnect snapshot's feed misses the failure: %s", d.Find(`[data-testid="feed"]`).Text())
	}
	je <- jobs.Event{Type: jobs.EventJobStopped, At: time.Now(), Job: status("report", false, 1, 1, "")}
	live2 := next(t, c2)
	if a, b := seqNum(t, seqOf(t, snap2)), seqNum(t, seqOf(t, live2)); b != a+1 {
		t.Errorf("after snapshot seq %d the next frame has seq %d, want %d", a, b, a+1)
	}
}

func seqNum(t testing.TB, s string) uint64 {
	t.Helper()
	var n uint64
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("seq %q: %v", s, err)
	}
	return n
}

func TestHubWallFramesReplaceWholeRegions(t *testing.T) {
	h, je, oe := testHub(t, HubConfig{FlushEvery: 10 * time.Millisecond})
	c := attach(t, h, viewWall, 64)
	d := doc(t, next(t, c))
	for _, id := range []string{"wall-jobs", "wall-outbox", "wall-queues", "chart", "wall-failures", "wall-stamp"} {
		if d.Find("#"+id).Length() != 1 {
			t.Errorf("wall snapshot lacks #%s", id)
		}
	}
	if d.Find("button, form").Length() != 0 {
		t.Error("the wall's frames carry buttons")
	}
	oe <- outbox.Event{Type: outbox.EventStats, At: time.Now(), Stats: &outbox.Stats{Pending: 7, Dead: 2}}
	oe <- outbox.Event{Type: outbox.EventDead, At: time.Now(), Message: &outbox.Summary{ID: "m1", Topic: "orders", LastError: "http 500"}}
	var dead, failed bool // may come in one frame or two
	until(t, c, "dead letters and the failure count", func(d *goquery.Document) bool {
		dead = dead || d.Find(`#wall-outbox [data-testid="dead"]`).Text() == "2"
		failed = failed || d.Find(`[data-testid="failure-count"]`).Text() == "1" && d.Find(`[data-testid="wall-failure"]`).Length() == 1
		return dead && failed
	})
	je <- jobs.Event{Type: jobs.EventJobStopped, At: time.Now(), Job: status("report", false, 0, 0, "")}
	until(t, c, "the job's tile", func(d *goquery.Document) bool {
		return d.Find(`#wall-jobs [data-job="report"][data-state="stopped"]`).Length() == 1
	})
}

// until reads frames until one satisfies ok; a hub that never sends one
// fails the test after next's bound.
func until(t *testing.T, c *client, what string, ok func(*goquery.Document) bool) {
	t.Helper()
	for range 1000 {
		if ok(doc(t, next(t, c))) {
			return
		}
	}
	t.Fatalf("no frame with %s", what)
}

func TestHubKeepsEverythingBounded(t *testing.T) {
	h, je, oe := testHub(t, HubConfig{FlushEvery: time.Hour, FeedSize: 10})
	for i := range 3000 {
		je <- jobs.Event{Type: jobs.EventRunFailed, At: time.Now(), Job: status("report", true, int64(i), int64(i), "x")}
		je <- jobs.Event{Type: jobs.EventWorkDone, At: time.Now(), Work: &jobs.WorkItem{ID: fmt.Sprint("w", i), State: jobs.WorkDone}}
		oe <- outbox.Event{Type: outbox.EventDead, At: time.Now(), Message: &outbox.Summary{ID: fmt.Sprint("m", i)}}
	}
	ctx := context.Background()
	v, err := h.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Feed) != 10 || len(v.Failures) != maxFailuresKept {
		t.Errorf("feed %d, failures %d: want 10, %d", len(v.Feed), len(v.Failures), maxFailuresKept)
	}
	if v.FailureCount != 6000 {
		t.Errorf("failure count %d, want 6000", v.FailureCount)
	}
	if err := h.query(ctx, func(st *hubState) {
		if len(st.pending) >= batchEvents {
			t.Errorf("%d pending events", len(st.pending))
		}
	}); err != nil {
		t.Fatal(err)
	}
}

func TestRingAndSeries(t *testing.T) {
	r := newRing[int](3)
	for i := range 5 {
		r.push(i)
	}
	if got := fmt.Sprint(r.newestFirst()); got != "[4 3 2]" {
		t.Errorf("ring = %s, want [4 3 2]", got)
	}
	if n := r.dropOlder(func(v int) bool { return v < 4 }); n != 2 || fmt.Sprint(r.newestFirst()) != "[4]" {
		t.Errorf("dropOlder removed %d, left %v", n, r.newestFirst())
	}

	t0 := time.Unix(1000, 0)
	s := newSeries(time.Second, 3, t0)
	s.add(t0, &s.outbox)
	s.add(t0.Add(time.Second), &s.outbox)
	s.add(t0.Add(time.Second), &s.outbox)
	s.advance(t0.Add(2 * time.Second))
	if got := fmt.Sprint(s.export().Outbox); got != "[0 1 2]" {
		t.Errorf("series = %s, want [0 1 2]", got)
	}
	s.advance(t0.Add(time.Hour)) // a long gap clears everything
	if got := fmt.Sprint(s.export().Outbox); got != "[0 0 0]" {
		t.Errorf("series after a gap = %s, want [0 0 0]", got)
	}
	if s.span() != 3*time.Second {
		t.Errorf("span = %s", s.span())
	}
}

func TestHubShutdownClosesClientsWith1012AndLeaksNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		je := make(chan jobs.Event)
		h := NewHub(HubConfig{JobEvents: je})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { h.Run(ctx); close(done) }()
		srv := newTestServer(t, h, nil)
		var conns []*websocket.Conn
		for i := range 20 {
			path := "/ws"
			if i%2 == 1 {
				path = "/ws/events"
			}
			conns = append(conns, dial(t, srv, path))
		}
		for _, c := range conns {
			readOne(t, c) // snapshot
		}
		cancel()
		<-done
		for i, c := range conns {
			if code := closeCode(t, c); code != websocket.StatusServiceRestart {
				t.Errorf("conn %d closed with %d, want 1012", i, code)
			}
		}
		srv.Close()
	}()
	testenv.Eventually(t, 60*time.Second, "goroutines back to where they were", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// A frame type the JSON view sends must be decodable into the documented
// shape, and the snapshot must carry the view model.
func TestHubJSONSnapshotShape(t *testing.T) {
	h, je, _ := testHub(t, HubConfig{FlushEvery: time.Hour})
	je <- jobs.Event{Type: jobs.EventSnapshot, Jobs: []jobs.Status{*status("a", true, 1, 0, ""), *status("b", false, 0, 0, "")},
		Queue: &jobs.QueueStats{Depths: map[string]int{"high": 3}, Workers: 2}}
	if err := h.query(context.Background(), func(*hubState) {}); err != nil {
		t.Fatal(err)
	}
	c := attach(t, h, viewJSON, 8)
	var f struct {
		Seq  uint64         `json:"seq"`
		Type string         `json:"type"`
		At   time.Time      `json:"at"`
		Data templates.View `json:"data"`
	}
	if err := json.Unmarshal(next(t, c), &f); err != nil {
		t.Fatal(err)
	}
	if f.Type != "snapshot" || f.At.IsZero() || len(f.Data.Jobs) != 2 || f.Data.Queue == nil || f.Data.Queue.Depths["high"] != 3 {
		t.Errorf("snapshot = %+v", f)
	}
}

// marksIn lists a page frame's #changes marks as kind:id ("*" for all).
func marksIn(t testing.TB, frame []byte) []string {
	t.Helper()
	var out []string
	doc(t, frame).Find(`[hx-swap-oob="beforeend:#changes"] i`).Each(func(_ int, s *goquery.Selection) {
		out = append(out, s.AttrOr("data-live", "")+":"+s.AttrOr("data-id", "*"))
	})
	return out
}

// Page frames name what changed, so live regions re-read themselves: each
// change once, bounded, and never in the snapshot.
func TestHubNamesWhatChangedForLiveRegions(t *testing.T) {
	h, je, oe := testHub(t, HubConfig{FlushEvery: time.Hour})
	c := attach(t, h, viewPage, 64)
	if m := marksIn(t, next(t, c)); len(m) != 0 {
		t.Fatalf("the snapshot carries marks %v; a fresh page has nothing to re-read", m)
	}
	msg := func(id string) *outbox.Summary { return &outbox.Summary{ID: id, Topic: "order.placed"} }

	// Dispatches are coalesced; the retry by hand is discrete and takes
	// them along in its frame.
	oe <- outbox.Event{Type: outbox.EventDispatched, At: time.Now(), Message: msg("m2")}
	oe <- outbox.Event{Type: outbox.EventRetried, At: time.Now(), Message: msg("m1")}
	if got, want := marksIn(t, next(t, c)), []string{"outbox:m1", "outbox:m2"}; !slices.Equal(got, want) {
		t.Errorf("marks %v, want %v", got, want)
	}

	// A job's run, work moving and a bulk retry (no ids): the failed run is
	// discrete and carries all three.
	wi := jobs.WorkItem{ID: "w1", Kind: "email", State: jobs.WorkDone}
	je <- jobs.Event{Type: jobs.EventWorkDone, At: time.Now(), Work: &wi}
	oe <- outbox.Event{Type: outbox.EventRetried, At: time.Now(), Count: 3}
	je <- jobs.Event{Type: jobs.EventRunFailed, At: time.Now(), Job: status("report", true, 1, 1, "boom")}
	var got []string
	for len(got) == 0 || !slices.Contains(got, "job:report") {
		got = append(got, marksIn(t, next(t, c))...)
	}
	slices.Sort(got)
	if want := []string{"job:report", "outbox:*", "work:*"}; !slices.Equal(got, want) {
		t.Errorf("marks %v, want %v", got, want)
	}

	// Past maxChangedIDs the frame stops naming ids.
	for i := range maxChangedIDs + 5 {
		oe <- outbox.Event{Type: outbox.EventDispatched, At: time.Now(), Message: msg(fmt.Sprint("x", i))}
	}
	oe <- outbox.Event{Type: outbox.EventDead, At: time.Now(), Message: msg("last")}
	if got, want := marksIn(t, next(t, c)), []string{"outbox:*"}; !slices.Equal(got, want) {
		t.Errorf("marks %v after %d changes, want %v", got, maxChangedIDs+6, want)
	}

	// Taken once: the next frame names only its own change.
	oe <- outbox.Event{Type: outbox.EventDeleted, At: time.Now(), Message: msg("last")}
	if got, want := marksIn(t, next(t, c)), []string{"outbox:last"}; !slices.Equal(got, want) {
		t.Errorf("marks %v, want %v", got, want)
	}
}

// A change alone is reason enough for a frame at the next tick: a message
// dispatched while nothing else moved still refreshes the pages showing it.
func TestHubSendsChangesAloneAtTheTick(t *testing.T) {
	// A stopped clock: the chart never moves, so only the change is new.
	at := time.Now()
	h, _, oe := testHub(t, HubConfig{FlushEvery: 10 * time.Millisecond, Now: func() time.Time { return at }})
	c := attach(t, h, viewPage, 64)
	next(t, c) // snapshot
	oe <- outbox.Event{Type: outbox.EventDispatched, At: time.Now(), Message: &outbox.Summary{ID: "m9"}}
	until(t, c, "the mark of m9", func(d *goquery.Document) bool {
		return d.Find(`[hx-swap-oob="beforeend:#changes"] i[data-id="m9"]`).Length() == 1
	})
}

// Operators' and viewers' pages get the same fragments, rendered once per
// role: the viewers' without buttons, in the snapshot and in every update.
// An audit entry marks the audit pages' region and reaches JSON clients.
func TestHubRendersButtonsForOperatorsOnly(t *testing.T) {
	h, je, _ := testHub(t, HubConfig{FlushEvery: 20 * time.Millisecond})
	je <- jobs.Event{Type: jobs.EventJobUpdated, At: time.Now(), Job: status("report", true, 1, 0, "")}
	op, ro, js := attach(t, h, viewPage, 8), attach(t, h, viewPageRO, 8), attach(t, h, viewJSON, 8)
	buttons := func(f []byte) int { return doc(t, f).Find(`[data-job="report"] [hx-post]`).Length() }
	if o, r := buttons(next(t, op)), buttons(next(t, ro)); o == 0 || r != 0 {
		t.Fatalf("snapshot buttons: operator %d, viewer %d; want some and none", o, r)
	}
	next(t, js)
	je <- jobs.Event{Type: jobs.EventJobStopped, At: time.Now(), Job: status("report", false, 1, 0, "")}
	// The card's frame: a frame of the chart's tick alone may come first.
	card := func(c *client) []byte {
		for range 20 {
			if f := next(t, c); doc(t, f).Find(`[data-job="report"]`).Length() > 0 {
				return f
			}
		}
		t.Fatalf("%s: no frame with the job's card", c.view)
		return nil
	}
	if o, r := buttons(card(op)), buttons(card(ro)); o == 0 || r != 0 {
		t.Fatalf("update buttons: operator %d, viewer %d; want some and none", o, r)
	}

	// Frames of the earlier changes may come first.
	h.PublishAudit(context.Background(), audit.Entry{ID: 7, Who: "ada", Action: "jobs.stop", Result: audit.ResultOK, At: time.Now()})
	for _, c := range []*client{op, ro} {
		marked := false
		for i := 0; i < 20 && !marked; i++ {
			marked = slices.Contains(marksIn(t, next(t, c)), "audit:*")
		}
		if !marked {
			t.Errorf("%s frames do not mark the audit region", c.view)
		}
	}
	var f []byte
	for i := 0; i < 20 && !strings.Contains(string(f), `"type":"audit"`); i++ {
		f = next(t, js)
	}
	if !strings.Contains(string(f), `"type":"audit"`) || !strings.Contains(string(f), `"who":"ada"`) {
		t.Errorf("JSON frame %s: want the audit entry", f)
	}
}

// TestHubQueryWaitsForTheClosureItHandedOver ends the caller's context while
// the hub runs the caller's closure: query must not return (and let the caller
// read what the closure writes) before the closure is done. Under -race the
// old query, which returned on ctx.Done, reported a data race here.
func TestHubQueryWaitsForTheClosureItHandedOver(t *testing.T) {
	h, _, _ := testHub(t, HubConfig{})
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		var seen int
		err := h.query(ctx, func(st *hubState) {
			cancel() // the caller gives up while the hub holds its closure
			time.Sleep(time.Millisecond)
			seen = len(st.clients) + 1
		})
		got := seen // a race with the closure's write, unless query waited
		if got != 1 || err != nil {
			t.Fatalf("query returned (%v) before the closure it handed over was done: saw %d", err, got)
		}
	}
}

// TestHubSendsEachClientOnlyItsTopics: a job's page gets that job's card and
// not the others' nor the overview's panels; the outbox list gets the outbox
// panel and its changes and no job card; the overview gets all of them.
func TestHubSendsEachClientOnlyItsTopics(t *testing.T) {
	h, je, oe := testHub(t, HubConfig{FlushEvery: time.Hour})
	je <- jobs.Event{Type: jobs.EventSnapshot, Jobs: []jobs.Status{*status("report", true, 1, 0, ""), *status("cleanup", true, 1, 0, "")}}
	attachTo := func(names string) *client {
		tp, err := parseTopics(names)
		if err != nil {
			t.Fatal(err)
		}
		c := newClient(viewPage, 16)
		c.topics = tp
		h.register <- c
		next(t, c) // the snapshot
		return c
	}
	overview, job, list := attachTo("overview"), attachTo("job:report"), attachTo("outbox")
	je <- jobs.Event{Type: jobs.EventRunFailed, At: time.Now(), Job: status("report", true, 2, 1, "boom")}
	je <- jobs.Event{Type: jobs.EventRunFailed, At: time.Now(), Job: status("cleanup", true, 2, 1, "boom")}
	oe <- outbox.Event{Type: outbox.EventDead, At: time.Now(), Message: &outbox.Summary{ID: "m1", Topic: "order.placed", Status: outbox.StatusDead}}
	oe <- outbox.Event{Type: outbox.EventStats, At: time.Now(), Stats: &outbox.Stats{Dead: 1}}
	if _, err := h.Stats(context.Background()); err != nil { // the events are in
		t.Fatal(err)
	}
	h.queries <- func(st *hubState) { h.flush(context.Background(), st, true) }
	read := func(c *client) *goquery.Document {
		var all []byte
		for {
			select {
			case f := <-c.send:
				all = append(all, f...)
				continue
			case <-time.After(200 * time.Millisecond):
			}
			return doc(t, all)
		}
	}
	has := func(d *goquery.Document, sel string) bool { return d.Find(sel).Length() > 0 }
	dOverview, dJob, dList := read(overview), read(job), read(list)
	for _, c := range []struct {
		who  string
		d    *goquery.Document
		sel  string
		want bool
	}{
		{"overview", dOverview, `#job-report`, true},
		{"overview", dOverview, `#job-cleanup`, true},
		{"overview", dOverview, `#outbox-stats`, true},
		{"overview", dOverview, `#feed`, true},
		{"job:report", dJob, `#job-report`, true},
		{"job:report", dJob, `#job-cleanup`, false},
		{"job:report", dJob, `#outbox-stats`, false},
		{"job:report", dJob, `#feed`, false},
		{"job:report", dJob, `#chart`, false},
		{"job:report", dJob, `[data-live="job"][data-id="report"]`, true},
		{"job:report", dJob, `[data-live="outbox"]`, false},
		{"outbox", dList, `#outbox-stats`, true},
		{"outbox", dList, `#job-report`, false},
		{"outbox", dList, `[data-live="outbox"][data-id="m1"]`, true},
		{"outbox", dList, `[data-live="job"]`, false},
		{"everyone", dList, `#seq`, true},
	} {
		if got := has(c.d, c.sel); got != c.want {
			t.Errorf("%s client has %s: %v, want %v", c.who, c.sel, got, c.want)
		}
	}
	if _, err := parseTopics("job:report,nonsense"); err == nil {
		t.Error("an unknown topic was accepted")
	}
}

// TestHubSendsWallsAndProgramsOnlyWhatTheyShow: a wall and a /ws/events
// program name their topics too; a change none of their topics shows sends
// them nothing (not even the wall's stamp). Frames go out in order, so the
// first frame each gets after an unrelated change and then a related one
// must be the related one.
func TestHubSendsWallsAndProgramsOnlyWhatTheyShow(t *testing.T) {
	h, je, oe := testHub(t, HubConfig{FlushEvery: time.Hour})
	je <- jobs.Event{Type: jobs.EventSnapshot, Jobs: []jobs.Status{*status("report", true, 1, 0, ""), *status("cleanup", true, 1, 0, "")}}
	attach := func(v view, names string) *client {
		tp, err := parseTopics(names)
		if err != nil {
			t.Fatal(err)
		}
		c := newClient(v, 16)
		c.topics = tp
		h.register <- c
		next(t, c) // the snapshot
		return c
	}
	flush := func() { h.queries <- func(st *hubState) { h.flush(context.Background(), st, true) } }
	flush() // the jobs' first state, before anyone watches
	wall, outboxWall := attach(viewWall, "overview"), attach(viewWall, "outbox")
	reportProgram, auditProgram := attach(viewJSON, "job:report"), attach(viewJSON, "audit")

	// Unrelated to the walls and the report's program: an audit entry.
	h.PublishAudit(context.Background(), audit.Entry{At: time.Now(), Who: "op", Action: "outbox.retry"})
	flush()
	// Related to the wall (jobs, failures) and the report's program only.
	je <- jobs.Event{Type: jobs.EventRunFailed, At: time.Now(), Job: status("report", true, 2, 1, "boom")}
	flush()
	// Related to both walls only.
	oe <- outbox.Event{Type: outbox.EventStats, At: time.Now(), Stats: &outbox.Stats{Dead: 1}}
	flush()

	d := doc(t, next(t, wall))
	if d.Find(`#wall-jobs`).Length() != 1 || d.Find(`#wall-failures`).Length() != 1 {
		t.Errorf("the wall's first frame is not the failed run: %q", d.Text())
	}
	d = doc(t, next(t, outboxWall))
	if d.Find(`#wall-outbox`).Length() != 1 || d.Find(`#wall-jobs`).Length() != 0 || d.Find(`#chart`).Length() != 0 {
		t.Errorf("the outbox wall's first frame is not the outbox's figures alone: %q", d.Text())
	}
	var f struct {
		Type string
		Data struct {
			Job   jobs.Status
			State map[string]json.RawMessage
		}
	}
	if err := json.Unmarshal(next(t, reportProgram), &f); err != nil {
		t.Fatal(err)
	}
	if f.Type != string(jobs.EventRunFailed) || f.Data.Job.Name != "report" || f.Data.State["outbox"] != nil || f.Data.State["throughput"] != nil {
		t.Errorf("the report's program got first %s of %q with state %v, want its run failure alone", f.Type, f.Data.Job.Name, slices.Collect(maps.Keys(f.Data.State)))
	}
	if err := json.Unmarshal(next(t, auditProgram), &f); err != nil {
		t.Fatal(err)
	}
	if f.Type != "audit" {
		t.Errorf("the audit program got first a %s frame", f.Type)
	}
	select {
	case b := <-auditProgram.send:
		t.Errorf("the audit program got a frame it does not show: %s", b)
	default:
	}
}
