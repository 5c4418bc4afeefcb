package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
	"github.com/labstack/echo/v4"
)

func newWorkProcessor(t *testing.T, cfg jobs.Config) *jobs.Processor {
	t.Helper()
	db := testenv.SQLite(t)
	if err := jobs.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	s, err := jobs.NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store = s
	p := jobs.NewProcessor(cfg)
	if err := p.RegisterKind("email", func(context.Context, jobs.WorkItem) error { return nil }, jobs.KindOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWorkAPI(t *testing.T) {
	p := newWorkProcessor(t, jobs.Config{})
	runProcessor(t, p)
	e := New(Deps{Work: p})

	tests := []struct {
		name, method, path, body string
		want                     int
		wantField                string
	}{
		{"accepted", "POST", "/api/work", `{"kind":"email","priority":"high","payload":{"to":"ana@example.com"}}`, 202, ""},
		{"default priority and no payload", "POST", "/api/work", `{"kind":"email"}`, 202, ""},
		{"bad JSON", "POST", "/api/work", `{"kind":`, 400, ""},
		{"empty body", "POST", "/api/work", ``, 400, ""},
		{"trailing data", "POST", "/api/work", `{"kind":"email"} {}`, 400, ""},
		{"missing kind", "POST", "/api/work", `{"priority":"low"}`, 400, "kind"},
		{"unknown kind", "POST", "/api/work", `{"kind":"fax"}`, 400, "kind"},
		{"unknown priority", "POST", "/api/work", `{"kind":"email","priority":"urgent"}`, 400, "priority"},
		{"priority wrong type", "POST", "/api/work", `{"kind":"email","priority":1}`, 400, "priority"},
		{"unknown field", "POST", "/api/work", `{"kind":"email","when":"now"}`, 400, "when"},
		{"payload not an object", "POST", "/api/work", `{"kind":"email","payload":[1,2]}`, 400, "payload"},
		{"body an array", "POST", "/api/work", `[{"kind":"email"}]`, 400, ""},
		{"body a string", "POST", "/api/work", `"email"`, 400, ""},
		{"body too large", "POST", "/api/work", `{"kind":"email","payload":{"x":"` + strings.Repeat("a", 1<<20) + `"}}`, 413, ""},
		{"payload not UTF-8", "POST", "/api/work", "{\"kind\":\"email\",\"payload\":{\"a\":\"\xff\"}}", 400, "payload"},
		{"unknown item", "GET", "/api/work/nope", ``, 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := apiDo(t, e, tc.method, tc.path, tc.body)
			if a.status != tc.want {
				t.Fatalf("status %d, want %d: %s", a.status, tc.want, a.raw)
			}
			if tc.want >= 400 {
				var body apiError
				a.decode(t, &body)
				if body.Error == "" || body.Field != tc.wantField || strings.HasPrefix(body.Error, ":") {
					t.Errorf("error body %+v, want a message and field %q", body, tc.wantField)
				}
				return
			}
			var it jobs.WorkItem
			a.decode(t, &it)
			if it.ID == "" || it.Kind != "email" || a.header.Get("Location") != "/api/work/"+it.ID {
				t.Fatalf("accepted item %+v, Location %q", it, a.header.Get("Location"))
			}
			// The item is stored before the 202, and it runs.
			testenv.Eventually(t, 60*time.Second, "item done via GET /api/work/{id}", func() bool {
				var got jobs.WorkItem
				g := apiDo(t, e, "GET", "/api/work/"+it.ID, "")
				g.decode(t, &got)
				return g.status == 200 && got.ID == it.ID && got.State == jobs.WorkDone && got.Attempts == 1
			})
			// Who enqueued it is stored with it (its page shows it:
			// templates' TestWorkAttemptsReadAgainstTheBudget).
			var got jobs.WorkItem
			apiDo(t, e, "GET", "/api/work/"+it.ID, "").decode(t, &got)
			if !strings.HasPrefix(got.EnqueuedBy, "POST /api/work by ") {
				t.Errorf("enqueuedBy %q, want the API and its caller", got.EnqueuedBy)
			}

		})
	}
}

func TestQueueHealthAPI(t *testing.T) {
	p := newWorkProcessor(t, jobs.Config{})
	e := New(Deps{Work: p})
	if a := apiDo(t, e, "GET", "/api/queue", ""); a.status != 503 || a.header.Get("Retry-After") == "" || !strings.Contains(a.raw, `"status":"down"`) {
		t.Fatalf("before Run: %d %s", a.status, a.raw)
	}
	runProcessor(t, p)
	testenv.Eventually(t, 60*time.Second, "ok once running", func() bool {
		a := apiDo(t, e, "GET", "/api/queue", "")
		var h jobs.Health
		a.decode(t, &h)
		return a.status == 200 && h.Status == jobs.HealthOK && h.Queue.Workers == 4 && h.Queue.Capacity == 256
	})
}

// A queue that stays full past the deadline answers 503 with Retry-After.
func TestWorkAPIFullQueue(t *testing.T) {
	tests := []struct {
		name    string
		policy  jobs.Policy
		handler func(p *jobs.Processor) echo.HandlerFunc
	}{
		{"drop-newest through the router", jobs.DropNewest, nil},
		// The request's wait is short: it is the wait for room that is cut.
		{"wait past the deadline", jobs.Wait, func(p *jobs.Processor) echo.HandlerFunc { return postWork(p, p, nil, 250*time.Millisecond) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Not running: nothing drains the queue of one.
			p := newWorkProcessor(t, jobs.Config{WorkCapacity: 1, WorkPolicy: tc.policy})
			e := New(Deps{Work: p})
			if tc.handler != nil {
				e = echo.New()
				e.POST("/api/work", tc.handler(p))
			}
			// The queue is filled without a deadline: a loaded machine's
			// insert may take longer than the request's wait.
			if _, err := p.Enqueue(context.Background(), jobs.NewWork{Kind: "email"}); err != nil {
				t.Fatalf("first: %v", err)
			}
			a := apiDo(t, e, "POST", "/api/work", `{"kind":"email"}`)
			if a.status != 503 || a.header.Get("Retry-After") == "" {
				t.Fatalf("full queue: %d Retry-After=%q %s", a.status, a.header.Get("Retry-After"), a.raw)
			}
			if !strings.Contains(a.raw, "full") {
				t.Errorf("503 body should say the queue is full: %s", a.raw)
			}
		})
	}
}

// A store that fails is a server error, not the client's: 500, logged.
func TestWorkAPIStoreFailureIs500(t *testing.T) {
	e := New(Deps{Work: brokenQueue{}})
	if a := apiDo(t, e, "GET", "/api/work/x", ""); a.status != 500 || strings.Contains(a.raw, "disk") {
		t.Fatalf("store failure: %d %s", a.status, a.raw)
	}
}

type brokenQueue struct{}

func (brokenQueue) Enqueue(context.Context, jobs.NewWork) (jobs.WorkItem, error) {
	return jobs.WorkItem{}, errors.New("disk on fire")
}
func (brokenQueue) Work(context.Context, string) (jobs.WorkItem, error) {
	return jobs.WorkItem{}, errors.New("disk on fire")
}
func (brokenQueue) WorkAttempts(context.Context, string) ([]jobs.WorkAttempt, error) {
	return nil, errors.New("store down")
}
func (brokenQueue) Health() jobs.Health { return jobs.Health{Status: jobs.HealthDown} }

func TestWorkListAPI(t *testing.T) {
	eachDB(t, func(t *testing.T, s jobs.Store) {
		base := time.Now().Add(-time.Hour).UTC()
		states := []jobs.WorkState{jobs.WorkDone, jobs.WorkFailed, jobs.WorkPending}
		for i := range 9 {
			at := base.Add(time.Duration(i) * time.Second)
			w := jobs.WorkItem{ID: fmt.Sprintf("W%d", i), Kind: []string{"email", "sms"}[i%2], State: states[i%3],
				Attempts: 1, MaxAttempts: 3, CreatedAt: at, UpdatedAt: at, RunAt: at, Payload: json.RawMessage(`{"big":true}`)}
			if err := jobs.ImportWork(context.Background(), s, w); err != nil {
				t.Fatal(err)
			}
		}
		p := jobs.NewProcessor(jobs.Config{Store: s})
		e := New(Deps{History: p})

		type list struct {
			Items  []jobs.WorkItem               `json:"items"`
			Next   string                        `json:"next"`
			Counts map[jobs.WorkState]jobs.Count `json:"counts"`
		}
		pages := []struct {
			query string
			want  []string
		}{
			{"", []string{"W8", "W7", "W6", "W5", "W4", "W3", "W2", "W1", "W0"}},
			{"state=failed", []string{"W7", "W4", "W1"}},
			{"kind=sms", []string{"W7", "W5", "W3", "W1"}},
			{"state=done&kind=email", []string{"W6", "W0"}},
		}
		for _, tc := range pages {
			t.Run(tc.query, func(t *testing.T) {
				var got []string
				path := "/api/work?limit=2&" + tc.query
				for range 10 {
					a := apiDo(t, e, "GET", path, "")
					if a.status != 200 {
						t.Fatalf("GET %s: %d %s", path, a.status, a.raw)
					}
					var l list
					a.decode(t, &l)
					for _, it := range l.Items {
						if it.Payload != nil {
							t.Errorf("list carries %s's payload", it.ID)
						}
						got = append(got, it.ID)
					}
					if len(l.Counts) != 6 {
						t.Errorf("counts %v", l.Counts)
					}
					if l.Next == "" {
						break
					}
					path = "/api/work?limit=2&" + tc.query + "&before=" + url.QueryEscape(l.Next)
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("items %v, want %v", got, tc.want)
				}
			})
		}
		var l list
		apiDo(t, e, "GET", "/api/work?kind=sms", "").decode(t, &l)
		if l.Counts[jobs.WorkFailed] != (jobs.Count{N: 2}) || l.Counts[jobs.WorkDone] != (jobs.Count{N: 1}) {
			t.Errorf("sms counts %v", l.Counts)
		}

		errs := []struct{ name, query, field string }{
			{"unknown state", "state=lost", "state"},
			{"limit zero", "limit=0", "limit"},
			{"limit too large", "limit=501", "limit"},
			{"limit not a number", "limit=x", "limit"},
			{"cursor without id", "before=123", "before"},
			{"cursor garbage", "before=abc_def", "before"},
		}
		for _, tc := range errs {
			t.Run(tc.name, func(t *testing.T) {
				a := apiDo(t, e, "GET", "/api/work?"+tc.query, "")
				var body apiError
				a.decode(t, &body)
				if a.status != 400 || body.Error == "" || body.Field != tc.field {
					t.Errorf("%d %s, want 400 naming %q", a.status, a.raw, tc.field)
				}
			})
		}
	})
}

// Filters Go cannot read are refused, not dropped: a malformed query string
// anywhere, a kind that is not text.
func TestMalformedFiltersAre400(t *testing.T) {
	p := newWorkProcessor(t, jobs.Config{})
	e := New(Deps{Work: p, History: p})
	for _, tc := range []struct{ path, field string }{
		{"/api/work?before=%%%", "query"},
		{"/api/work?state=%zz", "query"},
		{"/api/work?kind=%ff", "kind"},
	} {
		a := apiDo(t, e, "GET", tc.path, "")
		var body apiError
		a.decode(t, &body)
		if a.status != 400 || body.Field != tc.field || body.Error == "" {
			t.Errorf("%s: %d %+v, want 400 naming %q", tc.path, a.status, body, tc.field)
		}
	}
}
