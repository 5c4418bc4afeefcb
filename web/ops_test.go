package web

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/canalhq/canal/internal/audit"
	"github.com/canalhq/canal/testenv"
	"github.com/labstack/echo/v4"
)

func TestReadyzSaysWhy(t *testing.T) {
	ok := ReadyCheck{Name: "database", Check: func(context.Context) error { return nil }}
	down := ReadyCheck{Name: "relay", Check: func(context.Context) error { return errors.New("stuck for 40s") }}
	slow := ReadyCheck{Name: "queue", Check: func(ctx context.Context) error { <-ctx.Done(); return nil }}
	for _, tt := range []struct {
		name    string
		checks  []ReadyCheck
		ready   bool
		want    int
		reasons []string
	}{
		{"all good", []ReadyCheck{ok}, true, 200, nil},
		{"starting", []ReadyCheck{ok}, false, 503, []string{"program"}},
		{"one down", []ReadyCheck{ok, down}, true, 503, []string{"relay"}},
		{"one too slow", []ReadyCheck{ok, slow}, true, 503, []string{"queue"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := New(Deps{Ready: func() bool { return tt.ready }, Checks: tt.checks})
			req := httptest.NewRequest("GET", "/readyz", nil)
			req.Host = "10.1.2.3:8080" // probes ask by address: not refused by the Host check
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			var body struct {
				Status  string            `json:"status"`
				Reasons map[string]string `json:"reasons"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != tt.want || len(body.Reasons) != len(tt.reasons) {
				t.Fatalf("%d %s, want %d with reasons %v", rec.Code, rec.Body.String(), tt.want, tt.reasons)
			}
			for _, r := range tt.reasons {
				if body.Reasons[r] == "" {
					t.Errorf("no reason for %s: %v", r, body.Reasons)
				}
			}
		})
	}
}

// auditedRouter is securedRouter with a stored audit log.
func auditedRouter(t *testing.T) (*echo.Echo, *audit.Log) {
	db := testenv.SQLite(t)
	if err := audit.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	log := audit.New(db)
	h, _, _ := testHub(t, HubConfig{FlushEvery: time.Hour})
	tok := testTokens(t)
	e := New(Deps{Hub: h, Jobs: newFakeJobs(nil, "report"), Outbox: newFakeOutbox(), Audit: log,
		Access: Access{Authenticator: tok, Login: tok}})
	return e, log
}

func TestAuditRecordsEveryWrite(t *testing.T) {
	e, log := auditedRouter(t)
	do := func(method, path, bearer string, hdr map[string]string) int {
		req := httptest.NewRequest(method, path, nil)
		req.Host = goodHost
		req.RemoteAddr = "198.51.100.7:4242"
		req.Header.Set("Authorization", "Bearer "+bearer)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec.Code
	}
	steps := []struct {
		method, path, bearer string
		hdr                  map[string]string
		status               int
	}{
		{"POST", "/api/jobs/report/stop", testOperator, nil, 200},
		{"POST", "/api/jobs/report/start", testViewer, nil, 403},
		{"DELETE", "/api/outbox/m-pending", testOperator, nil, 409},
		{"POST", "/ui/jobs/nope/trigger", testOperator, map[string]string{"HX-Request": "true"}, 200},
		{"GET", "/api/jobs", testOperator, nil, 200}, // a read: not audited
	}
	for _, s := range steps {
		if got := do(s.method, s.path, s.bearer, s.hdr); got != s.status {
			t.Fatalf("%s %s: %d, want %d", s.method, s.path, got, s.status)
		}
	}
	page, err := log.List(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ who, role, action, target, result string }
	var got []row
	for _, e := range page.Items {
		got = append(got, row{e.Who, e.Role, e.Action, e.Target, e.Result})
		if e.From != "198.51.100.7" || e.At.IsZero() || e.RequestID == "" {
			t.Errorf("entry %+v: want the client address, a time and a request id", e)
		}
	}
	want := []row{
		{"operator", "operator", "jobs.trigger", "nope", "failed"},
		{"operator", "operator", "outbox.delete", "m-pending", "failed"},
		{"viewer", "viewer", "jobs.start", "report", "denied"},
		{"operator", "operator", "jobs.stop", "report", "ok"},
	}
	if len(got) != len(want) {
		t.Fatalf("audit rows %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if !strings.Contains(page.Items[0].Detail, "nope") {
		t.Errorf("a failed button's detail %q should say why", page.Items[0].Detail)
	}

	// The API and the page list them, filtered.
	req := httptest.NewRequest("GET", "/api/audit?result=denied", nil)
	req.Host = goodHost
	req.Header.Set("Authorization", "Bearer "+testViewer)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	var p audit.Page
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || rec.Code != 200 || len(p.Items) != 1 || p.Items[0].Who != "viewer" {
		t.Errorf("/api/audit?result=denied: %d %s", rec.Code, rec.Body.String())
	}
	for path, want := range map[string]int{"/api/audit?result=maybe": 400, "/api/audit?limit=0": 400, "/audit?before=x": 400, "/audit?action=jobs.stop": 200} {
		req := httptest.NewRequest("GET", path, nil)
		req.Host = goodHost
		req.Header.Set("Authorization", "Bearer "+testViewer)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("%s: %d, want %d: %.200s", path, rec.Code, want, rec.Body.String())
		}
		if path == "/audit?action=jobs.stop" && strings.Count(rec.Body.String(), `data-testid="audit-row"`) != 1 {
			t.Errorf("the audit page filtered by action shows %d rows, want 1", strings.Count(rec.Body.String(), `data-testid="audit-row"`))
		}
	}
}

func TestCommandNames(t *testing.T) {
	for _, tt := range []struct{ method, route, want string }{
		{"POST", "/api/jobs/:name/stop", "jobs.stop"},
		{"POST", "/ui/jobs/:name/stop", "jobs.stop"},
		{"PUT", "/api/jobs/:name/interval", "jobs.interval"},
		{"DELETE", "/api/outbox/:id", "outbox.delete"},
		{"POST", "/ui/outbox/:id/delete", "outbox.delete"},
		{"POST", "/api/outbox/retry-dead", "outbox.retry-dead"},
		{"POST", "/api/work", "work.post"},
		{"POST", "/api/orders", "orders.post"},
		{"POST", "/api/job/start", "job.start"},
	} {
		if got := commandName(tt.method, tt.route); got != tt.want {
			t.Errorf("commandName(%s %s) = %q, want %q", tt.method, tt.route, got, tt.want)
		}
	}
}

func TestAuditRecordsLogins(t *testing.T) {
	e, log := auditedRouter(t)
	for _, token := range []string{"wrong-token-0123456789", testOperator} {
		v := url.Values{"token": {token}, csrfField: {testCSRF}}
		req := httptest.NewRequest("POST", "/login", strings.NewReader(v.Encode()))
		req.Host = goodHost
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", csrfCookie+"="+testCSRF)
		e.ServeHTTP(httptest.NewRecorder(), req)
	}
	req := httptest.NewRequest("GET", "/login?token="+testViewer, nil)
	req.Host = goodHost
	e.ServeHTTP(httptest.NewRecorder(), req)
	req = httptest.NewRequest("GET", "/login", nil) // a look at the form: not recorded
	req.Host = goodHost
	e.ServeHTTP(httptest.NewRecorder(), req)

	page, err := log.List(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range page.Items {
		got = append(got, e.Who+" "+e.Action+" "+e.Result)
	}
	want := "viewer login.link ok|operator login ok|anonymous login denied"
	if strings.Join(got, "|") != want {
		t.Errorf("audit %q, want %q", strings.Join(got, "|"), want)
	}
	for _, e := range page.Items {
		if strings.Contains(e.Detail+e.Target, "token-0123456789") {
			t.Errorf("a token is in the audit log: %+v", e)
		}
	}
}

// TestReadyzHidesDetailsFromAnonymousCallers: a probe (anonymous) learns
// which check failed in general words; the connection details (user,
// database, host:port) go to an authenticated caller and to the log.
func TestReadyzHidesDetailsFromAnonymousCallers(t *testing.T) {
	const detail = `failed to connect to user=canal database=orders host=10.9.8.7:5432: connection refused`
	var logs strings.Builder
	tok := testTokens(t)
	e := New(Deps{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Ready:  func() bool { return true },
		Checks: []ReadyCheck{
			{Name: "database", Down: "database unreachable", Check: func(context.Context) error { return errors.New(detail) }},
			{Name: "queue", Check: func(context.Context) error { return errors.New("normal queue 95/100 at 10.9.8.7") }},
		},
		Access: Access{Authenticator: tok, Login: tok},
	})
	ask := func(bearer string) (int, map[string]string, string) {
		req := httptest.NewRequest("GET", "/readyz", nil)
		req.Host = "10.1.2.3:8080"
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		var body struct {
			Reasons map[string]string `json:"reasons"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, body.Reasons, rec.Body.String()
	}
	code, reasons, raw := ask("")
	if code != 503 || reasons["database"] != "database unreachable" || reasons["queue"] != "queue not ready" {
		t.Errorf("anonymous: %d %s", code, raw)
	}
	for _, secret := range []string{"10.9.8.7", "user=canal", "orders", "5432"} {
		if strings.Contains(raw, secret) {
			t.Errorf("anonymous caller sees %q: %s", secret, raw)
		}
	}
	if !strings.Contains(logs.String(), "10.9.8.7:5432") {
		t.Errorf("the log lacks the details: %s", logs.String())
	}
	// A viewer asking by an address that is not an allowed Host name
	// (a probe's, or a page's of another site that resolves here) sees
	// the general words too.
	code, reasons, raw = ask(testViewer)
	if code != 503 || reasons["database"] != "database unreachable" || strings.Contains(raw, "10.9.8.7") {
		t.Errorf("viewer on a host that is not allowed: %d %s", code, raw)
	}
	if code, _, raw := ask("wrong-token"); code != 401 || strings.Contains(raw, "10.9.8.7") {
		t.Errorf("wrong token: %d %s", code, raw)
	}
}

// /readyz shows a failing check's error only to an authorised caller on an
// allowed Host name; everyone else reads the general words, in open mode
// (no tokens: every caller is an operator) too.
func TestReadyzDetailsOnlyToAuthorisedCallersOnAllowedHosts(t *testing.T) {
	const detail = `failed to connect to user=canal database=orders host=10.9.8.7:5432: connection refused`
	checks := []ReadyCheck{{Name: "database", Down: "database unreachable", Check: func(context.Context) error { return errors.New(detail) }}}
	tok := testTokens(t)
	open := New(Deps{Ready: func() bool { return true }, Checks: checks})
	tokens := New(Deps{Ready: func() bool { return true }, Checks: checks,
		Access: Access{Authenticator: tok, Login: tok, Hosts: []string{"canal.example"}}})
	for _, tt := range []struct {
		name     string
		e        http.Handler
		host     string
		bearer   string
		detailed bool
	}{
		{"open, loopback name", open, "localhost:8080", "", true},
		{"open, loopback address", open, "127.0.0.1:8080", "", true},
		{"open, another name", open, "evil.example", "", false},
		{"open, a probe's address", open, "10.1.2.3:8080", "", false},
		{"tokens, anonymous on an allowed name", tokens, "canal.example", "", false},
		{"tokens, viewer on an allowed name", tokens, "canal.example", testViewer, true},
		{"tokens, operator on loopback", tokens, "localhost", testOperator, true},
		{"tokens, operator on another name", tokens, "evil.example", testOperator, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/readyz", nil)
			req.Host = tt.host
			if tt.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tt.bearer)
			}
			rec := httptest.NewRecorder()
			tt.e.ServeHTTP(rec, req)
			var body struct {
				Reasons map[string]string `json:"reasons"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusServiceUnavailable {
				t.Fatalf("%d %s, want 503 with JSON", rec.Code, rec.Body.String())
			}
			want := "database unreachable"
			if tt.detailed {
				want = detail
			}
			if body.Reasons["database"] != want {
				t.Errorf("reason %q, want %q", body.Reasons["database"], want)
			}
		})
	}
}

// The API's intake is summarised: a burst of N orders by one caller is a
// row or two (a minute's boundary) whose counts sum to N, and /audit shows
// the count; an operator's action and a refused write are a row each,
// however many; reads make no row.
func TestAuditSummarisesIntakeNotOperatorActions(t *testing.T) {
	db := testenv.SQLite(t)
	if err := audit.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	log := audit.New(db)
	h, _, _ := testHub(t, HubConfig{FlushEvery: time.Hour})
	tok := testTokens(t)
	e := New(Deps{Hub: h, Jobs: newFakeJobs(nil, "report"), Outbox: newFakeOutbox(), Audit: log, Orders: &fakePlacer{},
		Access: Access{Authenticator: tok, Login: tok}})
	do := func(method, path, bearer, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Host = goodHost
		req.RemoteAddr = "198.51.100.7:4242"
		req.Header.Set("Authorization", "Bearer "+bearer)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec
	}
	const burst = 60
	for range burst {
		if rec := do("POST", "/api/orders", testOperator, `{"customer":"ada","amount":1}`); rec.Code != 201 {
			t.Fatalf("order: %d %s", rec.Code, rec.Body)
		}
	}
	for range 3 {
		if rec := do("POST", "/api/jobs/report/trigger", testOperator, ""); rec.Code != 200 {
			t.Fatalf("trigger: %d %s", rec.Code, rec.Body)
		}
		if rec := do("POST", "/api/orders", testViewer, `{"customer":"ada","amount":1}`); rec.Code != 403 {
			t.Fatalf("viewer's order: %d %s", rec.Code, rec.Body)
		}
	}
	for _, r := range []struct{ method, path string }{{"GET", "/api/jobs"}, {"HEAD", "/healthz"}, {"GET", "/api/audit"}, {"GET", "/"}, {"GET", "/metrics"}} {
		if rec := do(r.method, r.path, testOperator, ""); rec.Code != 200 {
			t.Fatalf("%s %s: %d", r.method, r.path, rec.Code)
		}
	}
	page, err := log.List(context.Background(), audit.Filter{Limit: audit.MaxPage})
	if err != nil {
		t.Fatal(err)
	}
	rows, sums := map[string]int{}, map[string]int64{}
	for _, en := range page.Items {
		k := en.Action + " " + en.Result
		rows[k]++
		sums[k] += en.Count
	}
	if rows["orders.post ok"] < 1 || rows["orders.post ok"] > 2 || sums["orders.post ok"] != burst {
		t.Errorf("the burst: %d rows summing to %d, want 1 or 2 summing to %d", rows["orders.post ok"], sums["orders.post ok"], burst)
	}
	if rows["jobs.trigger ok"] != 3 || sums["jobs.trigger ok"] != 3 || rows["orders.post denied"] != 3 || sums["orders.post denied"] != 3 {
		t.Errorf("operator actions and refusals: rows %v counts %v, want 3 rows of 1 each", rows, sums)
	}
	if len(page.Items) != rows["orders.post ok"]+6 {
		t.Errorf("%d rows (%v): reads must make none", len(page.Items), rows)
	}
	// The audit page shows the summary's count.
	rec := do("GET", "/audit?action=orders.post&result=ok", testOperator, "")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `data-testid="audit-count"`) {
		t.Fatalf("/audit: %d, no count shown", rec.Code)
	}
	var shown int64
	d, err := goquery.NewDocumentFromReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	d.Find(`[data-testid="audit-count"]`).Each(func(_ int, s *goquery.Selection) {
		n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s.Text()), "×")), 10, 64)
		shown += n
	})
	if shown < burst-1 || shown > burst {
		t.Errorf("/audit shows counts summing to %d, want %d (a minute's single row shows none)", shown, burst)
	}
}
