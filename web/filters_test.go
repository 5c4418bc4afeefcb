package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// Every list filter, on every list page, fragment and API, answers a bad
// value with 400 and a body that names the problem, never 500, on both
// databases: PostgreSQL refuses NUL and invalid UTF-8 in text (SQLSTATE
// 22021) where SQLite takes them, so a value that got as far as a query
// was a 500 there.
func TestEveryBadFilterIs400(t *testing.T) {
	// Each list and the filters it takes; free text (a kind, a name) may
	// be anything readable, so a comma in it is a filter that matches
	// nothing, not a bad one.
	type param struct {
		name string
		text bool // free text: commas and spaces are fine
	}
	lists := []struct {
		path   string
		params []param
	}{
		{"/api/outbox", []param{{"status", false}, {"topic", false}, {"key", true}, {"limit", false}, {"before", false}}},
		{"/outbox", []param{{"status", false}, {"topic", false}, {"key", true}, {"before", false}}},
		{"/fragments/outbox", []param{{"status", false}, {"topic", false}, {"key", true}, {"before", false}}},
		{"/api/work", []param{{"state", false}, {"kind", true}, {"limit", false}, {"before", false}}},
		{"/work", []param{{"state", false}, {"kind", true}, {"before", false}}},
		{"/fragments/work", []param{{"state", false}, {"kind", true}, {"before", false}}},
		{"/api/jobs/report/runs", []param{{"limit", false}, {"before", false}}},
		{"/jobs/report", []param{{"before", false}}},
		{"/api/audit", []param{{"who", true}, {"action", true}, {"result", false}, {"limit", false}, {"before", false}}},
		{"/audit", []param{{"who", true}, {"action", true}, {"result", false}, {"before", false}}},
	}
	bad := []struct {
		name, value string
		always      bool // bad for free text too
	}{
		{"invalid UTF-8", "\xff", true},
		{"broken UTF-8", "ab\xc3\x28", true},
		{"NUL", "a\x00b", true},
		{"overlong", strings.Repeat("x", 5000), true},
		{"commas", "a,b", false},
	}
	for _, db := range []struct {
		name string
		open func(testing.TB) *gorm.DB
	}{{"sqlite", testenv.SQLite}, {"postgres", testenv.Postgres}} {
		t.Run(db.name, func(t *testing.T) {
			e := routerOn(t, db.open(t))
			for _, l := range lists {
				for _, p := range l.params {
					for _, b := range bad {
						target := l.path + "?" + url.Values{p.name: {b.value}}.Encode()
						get := func(accept string) *httptest.ResponseRecorder {
							req := httptest.NewRequest(http.MethodGet, target, nil)
							req.Host = "127.0.0.1"
							req.Header.Set("Accept", accept)
							rec := httptest.NewRecorder()
							e.ServeHTTP(rec, req)
							return rec
						}
						rec := get("application/json")
						if !b.always && p.text {
							if rec.Code >= 500 {
								t.Errorf("GET %s %s=%s: %d %.300s", l.path, p.name, b.name, rec.Code, rec.Body.String())
							}
							continue
						}
						var body apiError
						if rec.Code != http.StatusBadRequest || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Error == "" {
							t.Errorf("GET %s %s=%s: %d %.300s; want 400 with a JSON error", l.path, p.name, b.name, rec.Code, rec.Body.String())
						}
						// A browser asking for the page reads the error page.
						if isPagePath(l.path) {
							if rec := get("text/html"); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `data-testid="problem-text"`) {
								t.Errorf("GET %s %s=%s as a page: %d %.300s; want the 400 error page", l.path, p.name, b.name, rec.Code, rec.Body.String())
							}
						}
					}
				}
			}
		})
	}
}

func isPagePath(p string) bool {
	return !strings.HasPrefix(p, "/api/") && !strings.HasPrefix(p, "/fragments/")
}
