package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
)

// fakeJobs is a JobController that answers like the processor and publishes
// the events the processor would.
type fakeJobs struct {
	mu     sync.Mutex
	jobs   map[string]*jobs.Status
	order  []string
	events chan<- jobs.Event
}

func newFakeJobs(events chan<- jobs.Event, names ...string) *fakeJobs {
	f := &fakeJobs{jobs: map[string]*jobs.Status{}, events: events}
	for _, n := range names {
		f.jobs[n] = &jobs.Status{Name: n, Running: true, Interval: time.Second}
		f.order = append(f.order, n)
	}
	return f
}

func (f *fakeJobs) cmd(name, verb string, apply func(s *jobs.Status) error) (jobs.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.jobs[name]
	if !ok {
		return jobs.Status{}, fmt.Errorf("%s %q: %w", verb, name, jobs.ErrUnknownJob)
	}
	if err := apply(s); err != nil {
		return jobs.Status{}, fmt.Errorf("%s %q: %w", verb, name, err)
	}
	return *s, nil
}

func (f *fakeJobs) publish(t jobs.EventType, s jobs.Status) {
	if f.events != nil {
		f.events <- jobs.Event{Type: t, At: time.Now(), Job: &s}
	}
}

func (f *fakeJobs) Start(_ context.Context, name string) (jobs.Status, error) {
	return f.cmd(name, "start", func(s *jobs.Status) error {
		if s.Running {
			return jobs.ErrAlreadyRunning
		}
		s.Running, s.Message = true, "started"
		f.publish(jobs.EventJobStarted, *s)
		return nil
	})
}

func (f *fakeJobs) Stop(_ context.Context, name string) (jobs.Status, error) {
	return f.cmd(name, "stop", func(s *jobs.Status) error {
		if !s.Running {
			return jobs.ErrNotRunning
		}
		s.Running, s.Message = false, "stopped"
		f.publish(jobs.EventJobStopped, *s)
		return nil
	})
}

func (f *fakeJobs) Trigger(_ context.Context, name string) (jobs.Status, error) {
	return f.cmd(name, "trigger", func(s *jobs.Status) error { s.Message = "triggered"; return nil })
}

func (f *fakeJobs) Status(_ context.Context, name string) (jobs.Status, error) {
	return f.cmd(name, "status", func(*jobs.Status) error { return nil })
}

func (f *fakeJobs) SetInterval(_ context.Context, name string, d time.Duration) (jobs.Status, error) {
	return f.cmd(name, "set interval", func(s *jobs.Status) error { s.Interval = d; return nil })
}

func (f *fakeJobs) List(context.Context) ([]jobs.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []jobs.Status
	for _, n := range f.order {
		out = append(out, *f.jobs[n])
	}
	return out, nil
}

// fakeOutbox is an OutboxAdmin over a few records in memory.
type fakeOutbox struct {
	mu      sync.Mutex
	recs    []outbox.Record
	retried []string
	lastF   outbox.ListFilter
}

func (f *fakeOutbox) find(id string) (int, error) {
	for i, r := range f.recs {
		if r.ID == id {
			return i, nil
		}
	}
	return 0, outbox.ErrNotFound
}

func (f *fakeOutbox) List(_ context.Context, lf outbox.ListFilter) (outbox.Page, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastF = lf
	var p outbox.Page
	for _, r := range f.recs {
		if (lf.Status == "" || r.Status == lf.Status) && (lf.Topic == "" || r.Topic == lf.Topic) {
			p.Items = append(p.Items, r)
		}
	}
	return p, nil
}

func (f *fakeOutbox) Get(_ context.Context, id string) (outbox.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.find(id)
	if err != nil {
		return outbox.Record{}, err
	}
	return f.recs[i], nil
}

func (f *fakeOutbox) Stats(context.Context) (outbox.Stats, error) {
	return outbox.Stats{Pending: 1, Dead: 1}, nil
}

func (f *fakeOutbox) Retry(_ context.Context, id string) (outbox.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.find(id)
	if err != nil {
		return outbox.Record{}, err
	}
	if f.recs[i].Status != outbox.StatusDead && f.recs[i].Status != outbox.StatusPending {
		return outbox.Record{}, outbox.ErrNotRetryable
	}
	f.recs[i].Status = outbox.StatusPending
	f.retried = append(f.retried, id)
	return f.recs[i], nil
}

func (f *fakeOutbox) RetryDead(_ context.Context, topic string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for i := range f.recs {
		if f.recs[i].Status == outbox.StatusDead && (topic == "" || f.recs[i].Topic == topic) {
			f.recs[i].Status = outbox.StatusPending
			n++
		}
	}
	return n, nil
}

func (f *fakeOutbox) Delete(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.find(id)
	if err != nil {
		return err
	}
	if f.recs[i].Status != outbox.StatusDead {
		return outbox.ErrNotDead
	}
	f.recs = append(f.recs[:i], f.recs[i+1:]...)
	return nil
}

func newFakeOutbox() *fakeOutbox {
	t0 := time.Date(2026, 11, 23, 17, 0, 0, 0, time.UTC)
	return &fakeOutbox{recs: []outbox.Record{
		{ID: "m-dead", Topic: "orders.created", Status: outbox.StatusDead, Attempts: 8, LastError: "webhook: 500", CreatedAt: t0,
			Payload: []byte(`{"order":42}`), Headers: map[string]string{"traceparent": "00-abc"},
			AttemptLog: []outbox.Attempt{{Number: 1, StartedAt: t0, Duration: time.Millisecond, Error: "webhook: 500"}}},
		{ID: "m-pending", Topic: "orders.created", Status: outbox.StatusPending, CreatedAt: t0, Payload: []byte(`{}`)},
		{ID: "m-done", Topic: "invoices.paid", Status: outbox.StatusDispatched, Attempts: 1, CreatedAt: t0, Payload: []byte(`{}`)},
	}}
}

// uiServer serves the whole surface with fakes behind it.
func uiServer(t *testing.T) (*httptest.Server, *fakeJobs, *fakeOutbox, *Hub) {
	t.Helper()
	h, je, _ := testHub(t, HubConfig{FlushEvery: time.Hour})
	fj := newFakeJobs(je, "report", "cleanup")
	fo := newFakeOutbox()
	srv := httptest.NewServer(New(Deps{Hub: h, Jobs: fj, Outbox: fo}))
	t.Cleanup(srv.Close)
	return srv, fj, fo, h
}

// post presses a button as htmx does (hx=true) or as a plain form post.
func post(t *testing.T, srv *httptest.Server, path string, hx bool) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(url.Values{}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Referer", srv.URL+"/outbox?status=dead")
	if hx {
		req.Header.Set("HX-Request", "true")
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = fmt.Fprint(&b, mustRead(t, resp))
	return resp, b.String()
}

func resultOf(t *testing.T, body string) (ok, text string) {
	t.Helper()
	r := doc(t, []byte(body)).Find(`[data-testid="result"]`)
	if r.Length() != 1 {
		t.Fatalf("no result fragment in %q", body)
	}
	ok, _ = r.Attr("data-ok")
	return ok, r.Text()
}

func TestUIJobButtonsShowTheProcessorsReply(t *testing.T) {
	srv, fj, _, h := uiServer(t)
	resp, body := post(t, srv, "/ui/jobs/report/stop", true)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stop: %d", resp.StatusCode)
	}
	if ok, text := resultOf(t, body); ok != "true" || !strings.Contains(text, "report: stopped") {
		t.Errorf("stop answered %s %q", ok, text)
	}
	if s, _ := fj.Status(context.Background(), "report"); s.Running {
		t.Error("the job still runs after Stop")
	}
	// The processor refuses a second stop; the button shows why.
	_, body = post(t, srv, "/ui/jobs/report/stop", true)
	if ok, text := resultOf(t, body); ok != "false" || !strings.Contains(text, jobs.ErrNotRunning.Error()) {
		t.Errorf("second stop answered %s %q", ok, text)
	}
	_, body = post(t, srv, "/ui/jobs/nope/trigger", true)
	if ok, text := resultOf(t, body); ok != "false" || !strings.Contains(text, jobs.ErrUnknownJob.Error()) {
		t.Errorf("unknown job answered %s %q", ok, text)
	}
	_, body = post(t, srv, "/ui/jobs/report/start", true)
	if ok, _ := resultOf(t, body); ok != "true" {
		t.Errorf("start answered %q", body)
	}
	// The hub saw the processor's events: every page learns of the change.
	v, err := h.View(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Jobs) != 1 || !v.Jobs[0].Running || len(v.Feed) != 2 {
		t.Errorf("hub view after stop+start: jobs %+v, feed %+v", v.Jobs, v.Feed)
	}
}

func TestUIPlainFormPostRedirectsBack(t *testing.T) {
	srv, fj, _, _ := uiServer(t)
	resp, _ := post(t, srv, "/ui/jobs/cleanup/stop", false)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/outbox?status=dead" {
		t.Errorf("plain post: %d to %q, want 303 back to the referring page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if s, _ := fj.Status(context.Background(), "cleanup"); s.Running {
		t.Error("the plain post did not stop the job")
	}
}

// Without JavaScript a failed press is a page that says why, with the
// status the API would answer, and a way back: not a redirect that loses it.
func TestUIPlainFormPostFailureSaysWhy(t *testing.T) {
	srv, _, _, _ := uiServer(t)
	for _, tt := range []struct {
		path string
		want int
		says string
	}{
		{"/ui/jobs/nope/stop", http.StatusNotFound, "nope"},
		{"/ui/outbox/m-done/delete", http.StatusConflict, "dead"},
	} {
		resp, body := post(t, srv, tt.path, false)
		d := doc(t, []byte(body))
		text := d.Find(`[data-testid="problem-text"]`).Text()
		back, _ := d.Find(`[data-testid="back"]`).Attr("href")
		if resp.StatusCode != tt.want || !strings.Contains(text, tt.says) || back != "/outbox?status=dead" {
			t.Errorf("%s: %d %q back to %q; want %d naming %q, back to the referring page", tt.path, resp.StatusCode, text, back, tt.want, tt.says)
		}
	}
}

func TestUIOutboxButtons(t *testing.T) {
	srv, _, fo, _ := uiServer(t)
	_, body := post(t, srv, "/ui/outbox/m-done/delete", true)
	if ok, text := resultOf(t, body); ok != "false" || !strings.Contains(text, outbox.ErrNotDead.Error()) {
		t.Errorf("deleting a dispatched message answered %s %q", ok, text)
	}
	_, body = post(t, srv, "/ui/outbox/m-dead/retry", true)
	if ok, text := resultOf(t, body); ok != "true" || !strings.Contains(text, "pending") {
		t.Errorf("retry answered %s %q", ok, text)
	}
	if len(fo.retried) != 1 || fo.retried[0] != "m-dead" {
		t.Errorf("retried %v", fo.retried)
	}
	fo.recs[0].Status = outbox.StatusDead
	_, body = post(t, srv, "/ui/outbox/retry-dead?topic=orders.created", true)
	if ok, text := resultOf(t, body); ok != "true" || !strings.Contains(text, "retried 1 dead messages of orders.created") {
		t.Errorf("retry all answered %s %q", ok, text)
	}
	fo.recs[0].Status = outbox.StatusDead
	_, body = post(t, srv, "/ui/outbox/m-dead/delete", true)
	if ok, _ := resultOf(t, body); ok != "true" || len(fo.recs) != 2 {
		t.Errorf("delete answered %q; %d records left", body, len(fo.recs))
	}
}
