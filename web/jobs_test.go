package web

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
	"github.com/labstack/echo/v4"
)

// apiAnswer is one HTTP answer as a test reads it.
type apiAnswer struct {
	status int
	header http.Header
	raw    string
}

// apiDo serves one request through the whole router.
func apiDo(t testing.TB, e *echo.Echo, method, path, body string) apiAnswer {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Host = "127.0.0.1" // the loopback names are the allowed hosts by default
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); rec.Body.Len() > 0 && !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: content type %q", method, path, ct)
	}
	return apiAnswer{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
}

func (a apiAnswer) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(a.raw), v); err != nil {
		t.Fatalf("body %q: %v", a.raw, err)
	}
}

// runProcessor runs p until the test ends.
func runProcessor(t testing.TB, p *jobs.Processor) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestJobsAPI(t *testing.T) {
	p := jobs.NewProcessor(jobs.Config{})
	noop := func(context.Context) error { return nil }
	if err := p.Register("report", time.Hour, true, noop); err != nil {
		t.Fatal(err)
	}
	if err := p.Register("cleanup", time.Hour, false, noop); err != nil {
		t.Fatal(err)
	}
	runProcessor(t, p)
	e := New(Deps{Jobs: p})

	tests := []struct {
		name, method, path, body string
		want                     int
		wantField                string // for 400s
		check                    func(t *testing.T, a apiAnswer)
	}{
		{name: "list", method: "GET", path: "/api/jobs", want: 200, check: func(t *testing.T, a apiAnswer) {
			var list []jobs.Status
			a.decode(t, &list)
			if len(list) != 2 || list[0].Name != "report" || !list[0].Running || list[1].Running {
				t.Errorf("list = %+v", list)
			}
		}},
		{name: "one job", method: "GET", path: "/api/jobs/report", want: 200, check: wantJob("report", true)},
		{name: "unknown job", method: "GET", path: "/api/jobs/nope", want: 404},
		{name: "stop", method: "POST", path: "/api/jobs/report/stop", want: 200, check: wantJob("report", false)},
		{name: "stop a stopped job", method: "POST", path: "/api/jobs/report/stop", want: 409},
		{name: "start", method: "POST", path: "/api/jobs/report/start", want: 200, check: wantJob("report", true)},
		{name: "start a running job", method: "POST", path: "/api/jobs/report/start", want: 409},
		{name: "start unknown", method: "POST", path: "/api/jobs/nope/start", want: 404},
		{name: "trigger", method: "POST", path: "/api/jobs/cleanup/trigger", want: 200, check: func(t *testing.T, a apiAnswer) {
			var st jobs.Status
			a.decode(t, &st)
			if st.Name != "cleanup" || st.Message != "triggered" {
				t.Errorf("trigger answered %+v", st)
			}
		}},
		{name: "trigger unknown", method: "POST", path: "/api/jobs/nope/trigger", want: 404},
		{name: "set interval", method: "PUT", path: "/api/jobs/cleanup/interval", body: `{"interval":"5s"}`, want: 200,
			check: func(t *testing.T, a apiAnswer) {
				var st jobs.Status
				a.decode(t, &st)
				if st.Interval != 5*time.Second {
					t.Errorf("interval %s, want 5s", st.Interval)
				}
			}},
		{name: "interval on unknown job", method: "PUT", path: "/api/jobs/nope/interval", body: `{"interval":"5s"}`, want: 404},
		{name: "interval not a duration", method: "PUT", path: "/api/jobs/cleanup/interval", body: `{"interval":"soon"}`, want: 400, wantField: "interval"},
		{name: "interval too small", method: "PUT", path: "/api/jobs/cleanup/interval", body: `{"interval":"1ns"}`, want: 400, wantField: "interval"},
		{name: "interval missing", method: "PUT", path: "/api/jobs/cleanup/interval", body: `{}`, want: 400, wantField: "interval"},
		{name: "interval wrong type", method: "PUT", path: "/api/jobs/cleanup/interval", body: `{"interval":5}`, want: 400, wantField: "interval"},
		{name: "interval unknown field", method: "PUT", path: "/api/jobs/cleanup/interval", body: `{"interval":"5s","every":"1s"}`, want: 400, wantField: "every"},
		{name: "interval bad JSON", method: "PUT", path: "/api/jobs/cleanup/interval", body: `{"interval":`, want: 400},
		{name: "interval empty body", method: "PUT", path: "/api/jobs/cleanup/interval", want: 400},
		{name: "interval finer than a millisecond", method: "PUT", path: "/api/jobs/cleanup/interval", body: `{"interval":"250.5ms"}`, want: 400, wantField: "interval"},
		{name: "interval body an array", method: "PUT", path: "/api/jobs/cleanup/interval", body: `["5s"]`, want: 400},
		{name: "interval body too large", method: "PUT", path: "/api/jobs/cleanup/interval", body: `{"interval":"` + strings.Repeat("5", 1<<20) + `s"}`, want: 413},
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
			}
			if tc.check != nil {
				tc.check(t, a)
			}
		})
	}
}

func wantJob(name string, running bool) func(t *testing.T, a apiAnswer) {
	return func(t *testing.T, a apiAnswer) {
		var st jobs.Status
		a.decode(t, &st)
		if st.Name != name || st.Running != running {
			t.Errorf("job %+v, want %s running=%v", st, name, running)
		}
	}
}

// The tutorial's own endpoints drive the default (first) job.
func TestTutorialJobAPI(t *testing.T) {
	p := jobs.NewProcessor(jobs.Config{})
	if err := p.Register("report", time.Hour, false, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	runProcessor(t, p)
	e := New(Deps{Jobs: p})

	steps := []struct {
		method, path string
		running      bool
		message      string
	}{
		{"GET", "/api/job/status", false, "stopped"},
		{"POST", "/api/job/start", true, "started"},
		{"POST", "/api/job/start", true, "already running"},
		{"GET", "/api/job/status", true, "running"}, // the state, not the last answer
		{"POST", "/api/job/stop", false, "stopped"},
		{"POST", "/api/job/stop", false, "already stopped"},
	}
	for _, s := range steps {
		a := apiDo(t, e, s.method, s.path, "")
		if a.status != 200 {
			t.Fatalf("%s %s: %d %s", s.method, s.path, a.status, a.raw)
		}
		var raw map[string]any
		a.decode(t, &raw)
		for _, k := range []string{"isRunning", "executionCount", "lastExecutionTime", "message"} {
			if _, ok := raw[k]; !ok {
				t.Fatalf("%s %s: no %q in %s", s.method, s.path, k, a.raw)
			}
		}
		if raw["isRunning"] != s.running || raw["message"] != s.message {
			t.Fatalf("%s %s = %s, want running=%v message=%q", s.method, s.path, a.raw, s.running, s.message)
		}
	}
	if _, err := p.Trigger(context.Background(), "report"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "execution counted in the tutorial status", func() bool {
		var st tutorialStatus
		apiDo(t, e, "GET", "/api/job/status", "").decode(t, &st)
		return st.ExecutionCount == 1 && st.LastExecutionTime != nil
	})

	// No job at all: 404, not 500.
	empty := jobs.NewProcessor(jobs.Config{})
	runProcessor(t, empty)
	if a := apiDo(t, New(Deps{Jobs: empty}), "GET", "/api/job/status", ""); a.status != 404 {
		t.Fatalf("no jobs: %d %s", a.status, a.raw)
	}
}

func TestRunsAPI(t *testing.T) {
	eachDB(t, func(t *testing.T, s jobs.Store) {
		runs := make([]jobs.JobRun, 5)
		for i := range runs {
			runs[i] = jobs.JobRun{Job: "report", At: time.Now().UTC(), Duration: 1500 * time.Microsecond, Manual: i == 4}
		}
		runs[3].Error = "disk full"
		if err := s.RecordRuns(context.Background(), runs, nil); err != nil {
			t.Fatal(err)
		}
		p := jobs.NewProcessor(jobs.Config{Store: s})
		if err := p.Register("report", time.Hour, false, noopJob); err != nil {
			t.Fatal(err)
		}
		if err := p.Register("idle", time.Hour, false, noopJob); err != nil {
			t.Fatal(err)
		}
		e := New(Deps{Jobs: p, History: p})

		// Two at a time, newest first, by the next cursor.
		var ids []int64
		path := "/api/jobs/report/runs?limit=2"
		for range 10 {
			a := apiDo(t, e, "GET", path, "")
			if a.status != 200 {
				t.Fatalf("GET %s: %d %s", path, a.status, a.raw)
			}
			var page struct {
				Runs []struct {
					ID         int64   `json:"id"`
					Error      string  `json:"error"`
					Manual     bool    `json:"manual"`
					DurationMS float64 `json:"durationMs"`
				} `json:"runs"`
				Next int64 `json:"next"`
			}
			a.decode(t, &page)
			for _, r := range page.Runs {
				if r.DurationMS != 1.5 {
					t.Errorf("run %d durationMs %v", r.ID, r.DurationMS)
				}
				if len(ids) == 0 && !r.Manual || len(ids) == 1 && r.Error != "disk full" {
					t.Errorf("run %d of the newest page: %+v", len(ids), r)
				}
				ids = append(ids, r.ID)
			}
			if page.Next == 0 {
				break
			}
			path = "/api/jobs/report/runs?limit=2&before=" + strconv.FormatInt(page.Next, 10)
		}
		if len(ids) != 5 || !slices.IsSortedFunc(ids, func(a, b int64) int { return cmp.Compare(b, a) }) || len(slices.Compact(slices.Clone(ids))) != 5 {
			t.Errorf("ids across pages %v", ids)
		}
		if a := apiDo(t, e, "GET", "/api/jobs/idle/runs", ""); a.status != 200 || !strings.Contains(a.raw, `"runs":[]`) {
			t.Errorf("a job without runs: %d %s", a.status, a.raw)
		}

		errs := []struct {
			name, path string
			want       int
			field      string
		}{
			{"unknown job", "/api/jobs/nope/runs", 404, ""},
			{"limit zero", "/api/jobs/report/runs?limit=0", 400, "limit"},
			{"limit too large", "/api/jobs/report/runs?limit=501", 400, "limit"},
			{"limit not a number", "/api/jobs/report/runs?limit=ten", 400, "limit"},
			{"negative cursor", "/api/jobs/report/runs?before=-1", 400, "before"},
			{"cursor not a number", "/api/jobs/report/runs?before=abc", 400, "before"},
		}
		for _, tc := range errs {
			t.Run(tc.name, func(t *testing.T) {
				a := apiDo(t, e, "GET", tc.path, "")
				var body apiError
				a.decode(t, &body)
				if a.status != tc.want || body.Error == "" || body.Field != tc.field {
					t.Errorf("%d %s, want %d naming %q", a.status, a.raw, tc.want, tc.field)
				}
			})
		}
	})
}
