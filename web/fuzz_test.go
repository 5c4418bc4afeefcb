package web

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/audit"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/testenv"
	"github.com/labstack/echo/v4"
	"gorm.io/gorm"
)

// The fuzz targets below send every request decoder and query parser
// (cursors, filters, intervals, payloads) arbitrary input through the real
// router, backed by a real processor and relay on SQLite: no input may
// panic or answer 5xx. Their seeds run with every go test; go test -fuzz
// explores further.

// fuzzRouter is the whole surface on real stores, built once per fuzz
// target (the target itself runs thousands of times) and stopped with it.
func fuzzRouter(tb testing.TB) *echo.Echo {
	tb.Helper()
	return routerOn(tb, testenv.SQLite(tb))
}

// routerOn is the whole surface on real stores in db, the audit log
// included.
func routerOn(tb testing.TB, db *gorm.DB) *echo.Echo {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	tb.Cleanup(func() { cancel(); wg.Wait() })
	if err := jobs.Migrate(ctx, db); err != nil {
		tb.Fatal(err)
	}
	store, err := jobs.NewStore(db)
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	p := jobs.NewProcessor(jobs.Config{Store: store, Logger: log})
	if err := p.Register("report", time.Hour, false, func(context.Context) error { return nil }); err != nil {
		tb.Fatal(err)
	}
	if err := p.RegisterKind("email", func(context.Context, jobs.WorkItem) error { return errors.New("smtp down") },
		jobs.KindOptions{MaxAttempts: 1, BreakerFailures: -1}); err != nil {
		tb.Fatal(err)
	}
	wg.Go(func() { _ = p.Run(ctx) })
	if err := outbox.Migrate(ctx, db); err != nil {
		tb.Fatal(err)
	}
	r, err := outbox.New(db, outbox.Config{Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	h := NewHub(HubConfig{})
	wg.Go(func() { h.Run(ctx) })
	if err := audit.Migrate(ctx, db); err != nil {
		tb.Fatal(err)
	}
	return New(Deps{Logger: log, Hub: h, Jobs: p, Work: p, History: p, Outbox: r, Orders: &fakePlacer{}, Audit: audit.New(db)})
}

// noServerError sends one request and fails on a 5xx, or on an API answer
// that is not JSON; it returns the status.
func noServerError(t *testing.T, e *echo.Echo, method, target, body string) int {
	t.Helper()
	req := httptest.NewRequest(method, "/", strings.NewReader(body))
	u, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatalf("bad target %q: %v", target, err)
	}
	req.URL = u
	req.RequestURI = target
	req.Host = "127.0.0.1"
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("%s %s %q: %d %s", method, target, body, rec.Code, rec.Body.String())
	}
	if strings.HasPrefix(u.Path, "/api/") && rec.Body.Len() > 0 && !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("%s %s: not JSON: %s", method, target, rec.Body.String())
	}
	return rec.Code
}

// sameRefusal fails unless a page and its API twin both refuse the query
// as bad input (400) or both take it.
func sameRefusal(t *testing.T, e *echo.Echo, page, api string) {
	t.Helper()
	p, a := noServerError(t, e, "GET", page, ""), noServerError(t, e, "GET", api, "")
	if (p == http.StatusBadRequest) != (a == http.StatusBadRequest) {
		t.Fatalf("%s answers %d but %s answers %d", page, p, api, a)
	}
}

func query(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return "?" + v.Encode()
}

func FuzzQueries(f *testing.F) {
	f.Add("dead", "order.placed", "", "10")
	f.Add("", strings.Repeat("t", 201), "x", "0")
	f.Add("pending", "a\x00b", "2026-11-28T10:00:00Z|id", "-1")
	f.Add("nope", "order..placed", "MTIzNDU2Nzg5MA", "999999999999999999999")
	f.Add("failed", "email", "2026-11-28T10:00:00.000000001Z_W1", "1")
	f.Add("running", "%zz", "9223372036854775808", "5")
	f.Add("done", " ", "-5", "")
	f.Add("", "sms\n", "\xff\xfe", "2")
	f.Add("bogus", "", "zz", "")
	f.Add("dispatched", "", "zz", "")
	f.Add("dropped", "email", "0", "")
	e := fuzzRouter(f)
	f.Fuzz(func(t *testing.T, status, text, before, limit string) {
		noServerError(t, e, "GET", "/api/outbox"+query("status", status, "topic", text, "before", before, "limit", limit), "")
		noServerError(t, e, "GET", "/outbox"+query("status", status, "topic", text, "before", before), "")
		noServerError(t, e, "GET", "/api/work"+query("state", status, "kind", text, "before", before, "limit", limit), "")
		noServerError(t, e, "GET", "/work"+query("state", status, "kind", text, "before", before), "")
		noServerError(t, e, "GET", "/api/jobs/"+url.PathEscape(text)+"/runs"+query("before", before, "limit", limit), "")
		noServerError(t, e, "GET", "/jobs/"+url.PathEscape(text)+query("before", before), "")
		noServerError(t, e, "GET", "/api/jobs/"+url.PathEscape(text), "")
		noServerError(t, e, "GET", "/outbox/"+url.PathEscape(text), "")
		noServerError(t, e, "GET", "/api/outbox/"+url.PathEscape(text), "")
		noServerError(t, e, "GET", "/api/work/"+url.PathEscape(text), "")
		noServerError(t, e, "GET", "/ws"+query("view", status), "")
		sameRefusal(t, e, "/outbox"+query("status", status, "topic", text, "before", before), "/api/outbox"+query("status", status, "topic", text, "before", before))
		sameRefusal(t, e, "/work"+query("state", status, "kind", text, "before", before), "/api/work"+query("state", status, "kind", text, "before", before))
		sameRefusal(t, e, "/jobs/report"+query("before", before), "/api/jobs/report/runs"+query("before", before))
	})
}

func FuzzBodies(f *testing.F) {
	f.Add(`{"kind":"email","priority":"high","payload":{"to":"ada"}}`)
	f.Add(`{"kind":"email","payload":[1,2]}`)
	f.Add(`{"interval":"5s"}`)
	f.Add(`{"interval":"-1s"}`)
	f.Add(`{"interval":"9999999999h"}`)
	f.Add(`{"interval":5}`)
	f.Add(`{"customer":"ada","amount":12.50}`)
	f.Add(`{"customer":"ada","amount":"12.50"}`)
	f.Add(`{"customer":"\u0000","amount":1e309}`)
	f.Add(`{"topic":"order.placed"}`)
	f.Add(`{"topic":"` + strings.Repeat("x", 300) + `"}`)
	f.Add(`{} {}`)
	f.Add(`[`)
	f.Add(`null`)
	f.Add("\xff")
	f.Add(``)
	e := fuzzRouter(f)
	f.Fuzz(func(t *testing.T, body string) {
		noServerError(t, e, "POST", "/api/work", body)
		noServerError(t, e, "PUT", "/api/jobs/report/interval", body)
		noServerError(t, e, "POST", "/api/orders", body)
		noServerError(t, e, "POST", "/api/outbox/retry-dead", body)
	})
}

// Bodies over the one limit are 413 with a JSON error on every JSON route.
func TestBodyLimitIsOneFor413(t *testing.T) {
	e := fuzzRouter(t)
	big := `{"kind":"` + strings.Repeat("x", maxBody) + `"}`
	for _, tt := range []struct{ method, path string }{
		{"POST", "/api/work"}, {"PUT", "/api/jobs/report/interval"}, {"POST", "/api/orders"}, {"POST", "/api/outbox/retry-dead"},
	} {
		req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(big))
		req.Host = "127.0.0.1"
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		var body apiError
		if rec.Code != http.StatusRequestEntityTooLarge || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Error == "" {
			t.Errorf("%s %s with %d bytes: %d %.200s, want 413 with a JSON error", tt.method, tt.path, len(big), rec.Code, rec.Body.String())
		}
	}
}
