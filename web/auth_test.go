package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/web/auth"
	"github.com/labstack/echo/v4"
)

const (
	testCSRF     = "csrf-0123456789abcdef0123456789abcdef"
	testOperator = "operator-token-0123456789"
	testViewer   = "viewer-token-0123456789"
	goodHost     = "127.0.0.1:8080"
	evilHost     = "evil.example:8080"
)

// fakeWork is a WorkQueue and History with one item and no runs.
type fakeWork struct{}

func (fakeWork) Enqueue(_ context.Context, nw jobs.NewWork) (jobs.WorkItem, error) {
	return jobs.WorkItem{ID: "w1", Kind: nw.Kind, State: jobs.WorkPending}, nil
}
func (fakeWork) Work(_ context.Context, id string) (jobs.WorkItem, error) {
	if id != "w1" {
		return jobs.WorkItem{}, jobs.ErrUnknownWork
	}
	return jobs.WorkItem{ID: "w1", State: jobs.WorkPending}, nil
}
func (fakeWork) WorkAttempts(context.Context, string) ([]jobs.WorkAttempt, error) { return nil, nil }
func (fakeWork) Health() jobs.Health                                              { return jobs.Health{Status: jobs.HealthOK} }
func (fakeWork) Runs(context.Context, string, int64, int) (jobs.RunPage, error) {
	return jobs.RunPage{}, nil
}
func (fakeWork) ListWork(context.Context, jobs.WorkFilter, jobs.WorkCursor, int) (jobs.WorkPage, error) {
	return jobs.WorkPage{}, nil
}
func (fakeWork) CountWork(context.Context, string) (map[jobs.WorkState]jobs.Count, error) {
	return map[jobs.WorkState]jobs.Count{}, nil
}

func testTokens(t testing.TB) *auth.Tokens {
	t.Helper()
	tok, err := auth.NewTokens(testOperator, testViewer, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// securedRouter is the whole surface, with fakes behind it and tokens
// configured, as server builds it.
func securedRouter(t testing.TB) *echo.Echo {
	h, _, _ := testHub(t, HubConfig{FlushEvery: time.Hour})
	tok := testTokens(t)
	return New(Deps{
		Hub: h, Jobs: newFakeJobs(nil, "report"), Outbox: newFakeOutbox(), Work: fakeWork{}, History: fakeWork{},
		Orders: &fakePlacer{}, Access: Access{Authenticator: tok, Login: tok},
	})
}

type route struct {
	method, path, body string
	role               auth.Role // what it needs
	ok                 int       // its answer when let through
}

// everyRoute is the HTTP surface of routes.go (the login routes are
// tested on their own below).
var everyRoute = []route{
	{"GET", "/", "", auth.Viewer, 200},
	{"GET", "/jobs/report", "", auth.Viewer, 200},
	{"GET", "/work", "", auth.Viewer, 200},
	{"GET", "/outbox", "", auth.Viewer, 200},
	{"GET", "/outbox/m-dead", "", auth.Viewer, 200},
	{"GET", "/wall", "", auth.Viewer, 200},
	{"GET", "/ws", "", auth.Viewer, 426},        // let through, then no upgrade asked for
	{"GET", "/ws/events", "", auth.Viewer, 426}, // idem
	{"GET", "/api/hub/stats", "", auth.Viewer, 200},
	{"POST", "/ui/jobs/report/start", "", auth.Operator, 200}, // htmx: the result line says "already running"
	{"POST", "/ui/jobs/report/stop", "", auth.Operator, 200},
	{"POST", "/ui/jobs/report/trigger", "", auth.Operator, 200},
	{"POST", "/ui/outbox/retry-dead", "", auth.Operator, 200},
	{"POST", "/ui/outbox/m-dead/retry", "", auth.Operator, 200},
	{"POST", "/ui/outbox/m-dead/delete", "", auth.Operator, 200},
	{"GET", "/api/jobs", "", auth.Viewer, 200},
	{"GET", "/api/jobs/report", "", auth.Viewer, 200},
	{"POST", "/api/jobs/report/start", "", auth.Operator, 409},
	{"POST", "/api/jobs/report/stop", "", auth.Operator, 200},
	{"POST", "/api/jobs/report/trigger", "", auth.Operator, 200},
	{"PUT", "/api/jobs/report/interval", `{"interval":"5s"}`, auth.Operator, 200},
	{"POST", "/api/job/start", "", auth.Operator, 200},
	{"POST", "/api/job/stop", "", auth.Operator, 200},
	{"GET", "/api/job/status", "", auth.Viewer, 200},
	{"GET", "/api/jobs/report/runs", "", auth.Viewer, 200},
	{"GET", "/api/work", "", auth.Viewer, 200},
	{"POST", "/api/work", `{"kind":"email"}`, auth.Operator, 202},
	{"GET", "/api/work/w1", "", auth.Viewer, 200},
	{"GET", "/api/queue", "", auth.Viewer, 200},
	{"GET", "/api/outbox", "", auth.Viewer, 200},
	{"GET", "/api/outbox/stats", "", auth.Viewer, 200},
	{"POST", "/api/outbox/retry-dead", "", auth.Operator, 200},
	{"GET", "/api/outbox/m-dead", "", auth.Viewer, 200},
	{"POST", "/api/outbox/m-dead/retry", "", auth.Operator, 200},
	{"DELETE", "/api/outbox/m-dead", "", auth.Operator, 204},
	{"POST", "/api/orders", `{"customer":"ada","amount":12.5}`, auth.Operator, 201},
}

// want is the exact status of one cell of the matrix: the Host check
// first (403), then who (anonymous: a page redirects to the login page,
// the rest are 401), then the role (403), then a browser write's CSRF
// token (403).
func (r route) want(who auth.Role, csrf, rebinding bool) int {
	isPage := !strings.HasPrefix(r.path, "/api/") && !strings.HasPrefix(r.path, "/ws") && !strings.HasPrefix(r.path, "/ui/")
	switch {
	case rebinding:
		return http.StatusForbidden
	case who == auth.Anonymous && isPage && r.method == "GET":
		return http.StatusSeeOther
	case who == auth.Anonymous:
		return http.StatusUnauthorized
	case who < r.role:
		return http.StatusForbidden
	case r.method != "GET" && !csrf:
		return http.StatusForbidden
	}
	return r.ok
}

// browserRequest is what a same-origin page sends: its session cookie (if
// logged in), its CSRF cookie and, if csrf, the token htmx sends.
func browserRequest(t testing.TB, tok *auth.Tokens, r route, who auth.Role, csrf bool, host string) *http.Request {
	req := httptest.NewRequest(r.method, "http://"+host+r.path, strings.NewReader(r.body))
	req.Host = host
	req.Header.Set("Origin", "http://"+host)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Accept", "text/html")
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if strings.HasPrefix(r.path, "/ui/") {
		req.Header.Set("HX-Request", "true")
	}
	cookies := []string{csrfCookie + "=" + testCSRF}
	if who != auth.Anonymous {
		v, _ := tok.NewSession(auth.Principal{Name: who.String(), Role: who}, false)
		cookies = append(cookies, auth.SessionCookie+"="+v)
	}
	req.Header.Set("Cookie", strings.Join(cookies, "; "))
	if csrf {
		req.Header.Set(csrfHeader, testCSRF)
	}
	return req
}

func TestAccessMatrix(t *testing.T) {
	tok := testTokens(t)
	for _, r := range everyRoute {
		for _, who := range []auth.Role{auth.Anonymous, auth.Viewer, auth.Operator} {
			for _, csrf := range []bool{true, false} {
				for _, rebinding := range []bool{false, true} {
					host := goodHost
					if rebinding {
						host = evilHost
					}
					name := fmt.Sprintf("%s %s/%s/csrf=%v/host=%s", r.method, r.path, who, csrf, host)
					t.Run(name, func(t *testing.T) {
						e := securedRouter(t)
						rec := httptest.NewRecorder()
						e.ServeHTTP(rec, browserRequest(t, tok, r, who, csrf, host))
						want := r.want(who, csrf, rebinding)
						if rec.Code != want {
							t.Fatalf("status %d, want %d: %.300s", rec.Code, want, rec.Body.String())
						}
						if want == http.StatusSeeOther {
							if loc := rec.Header().Get("Location"); loc != "/login?next="+url.QueryEscape(r.path) {
								t.Errorf("Location %q, want the login page with next", loc)
							}
						}
					})
				}
			}
		}
	}
}

// API clients: a Bearer token needs no CSRF token; a wrong one is 401.
func TestAccessBearer(t *testing.T) {
	tests := []struct {
		name, method, path, bearer string
		want                       int
	}{
		{"operator writes", "POST", "/api/jobs/report/trigger", testOperator, 200},
		{"operator reads", "GET", "/api/outbox", testOperator, 200},
		{"viewer reads", "GET", "/api/outbox/m-dead", testViewer, 200},
		{"viewer may not write", "POST", "/api/jobs/report/trigger", testViewer, 403},
		{"viewer may not delete", "DELETE", "/api/outbox/m-dead", testViewer, 403},
		{"wrong token", "GET", "/api/outbox", "nope-nope-nope-nope-nope", 401},
		{"wrong token on a page", "GET", "/", "nope-nope-nope-nope-nope", 401},
		{"no token", "GET", "/api/outbox", "", 401},
		{"health needs none", "GET", "/healthz", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, nil)
			req.Host = goodHost
			if tt.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tt.bearer)
			}
			rec := httptest.NewRecorder()
			securedRouter(t).ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body.String())
			}
			if tt.want >= 400 {
				var body apiError
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == "" {
					t.Errorf("body %q: want a JSON error", rec.Body.String())
				}
				if strings.Contains(rec.Body.String(), testOperator) || strings.Contains(rec.Body.String(), testViewer) {
					t.Errorf("the answer shows a token: %s", rec.Body.String())
				}
			}
		})
	}
}

// Wrong Bearer tokens are failed logins too: without a limit a program
// could try tokens as fast as the server answers.
func TestAccessBearerGuessesAreLimited(t *testing.T) {
	e := securedRouter(t)
	call := func(addr, bearer string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/api/jobs", nil)
		req.Host, req.RemoteAddr = goodHost, addr
		req.Header.Set("Authorization", "Bearer "+bearer)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec
	}
	for i := range 10 {
		if rec := call("192.0.2.7:4000", fmt.Sprintf("guess-%02d-0123456789abcdef", i)); rec.Code != 401 {
			t.Fatalf("guess %d: %d, want 401", i, rec.Code)
		}
	}
	for _, bearer := range []string{"guess-10-0123456789abcdef", testOperator} {
		rec := call("192.0.2.7:4001", bearer)
		var body apiError
		if rec.Code != 429 || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Error == "" {
			t.Errorf("after 10 wrong tokens, %s: %d %s, want 429 with a JSON error", bearer[:5], rec.Code, rec.Body.String())
		}
	}
	if rec := call("192.0.2.8:4000", testOperator); rec.Code != 200 {
		t.Errorf("another address: %d, want 200", rec.Code)
	}
}

// With no authentication configured (the loopback default) everybody is
// an operator, programs need no CSRF token, browsers do, and the Host
// allow-list still holds.
func TestAccessOpen(t *testing.T) {
	h, _, _ := testHub(t, HubConfig{FlushEvery: time.Hour})
	e := New(Deps{Hub: h, Jobs: newFakeJobs(nil, "report"), Access: Access{Hosts: []string{"Canal.Example", "ops.example:9000"}}})
	do := func(host string, hdr map[string]string) int {
		req := httptest.NewRequest("POST", "/api/jobs/report/trigger", nil)
		req.Host = host
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec.Code
	}
	browser := map[string]string{"Origin": "http://localhost:8080", "Sec-Fetch-Site": "same-origin", "Cookie": csrfCookie + "=" + testCSRF}
	withToken := map[string]string{"Origin": "http://localhost:8080", "Sec-Fetch-Site": "same-origin", "Cookie": csrfCookie + "=" + testCSRF, csrfHeader: testCSRF}
	for _, tt := range []struct {
		name string
		host string
		hdr  map[string]string
		want int
	}{
		{"curl", "127.0.0.1:8080", nil, 200},
		{"curl by name", "localhost:8080", nil, 200},
		{"curl over IPv6", "[::1]:8080", nil, 200},
		{"browser without token", "localhost:8080", browser, 403},
		{"browser with token", "localhost:8080", withToken, 200},
		{"rebinding", "evil.example:8080", nil, 403},
		{"rebinding browser with token", "evil.example:8080", withToken, 403},
		{"listed name", "canal.example:8080", nil, 200},
		{"listed name, another port", "canal.example", nil, 200},
		{"listed with a port in the list", "ops.example", nil, 200},
		{"a name that ends like a listed one", "evilcanal.example", nil, 403},
	} {
		if got := do(tt.host, tt.hdr); got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestLogin(t *testing.T) {
	e := securedRouter(t)
	form := func(token, csrf string, hdr map[string]string) *httptest.ResponseRecorder {
		v := url.Values{"token": {token}, "next": {"/outbox"}, csrfField: {csrf}}
		req := httptest.NewRequest("POST", "/login", strings.NewReader(v.Encode()))
		req.Host = goodHost
		req.RemoteAddr = "192.0.2.7:5555"
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", csrfCookie+"="+testCSRF)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec
	}
	session := func(rec *httptest.ResponseRecorder) *http.Cookie {
		for _, c := range rec.Result().Cookies() {
			if c.Name == auth.SessionCookie {
				return c
			}
		}
		return nil
	}

	// The login page sets the CSRF cookie its form needs.
	req := httptest.NewRequest("GET", "/login?next=/outbox", nil)
	req.Host = goodHost
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Header().Get("Set-Cookie"), csrfCookie+"=") {
		t.Fatalf("GET /login: %d, Set-Cookie %q", rec.Code, rec.Header().Get("Set-Cookie"))
	}

	if rec := form(testOperator, "", nil); rec.Code != 403 || session(rec) != nil {
		t.Errorf("login without the CSRF field: %d, want 403 and no session", rec.Code)
	}
	rec = form(testOperator, testCSRF, map[string]string{"X-Forwarded-Proto": "https"})
	c := session(rec)
	if rec.Code != 303 || rec.Header().Get("Location") != "/outbox" || c == nil {
		t.Fatalf("operator login: %d to %q, session %v", rec.Code, rec.Header().Get("Location"), c)
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || !c.Secure || c.MaxAge <= 0 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Secure behind TLS", c)
	}
	if strings.Contains(c.Value, testOperator) {
		t.Errorf("the session cookie holds the token")
	}
	if rec := form(testOperator, testCSRF, nil); session(rec).Secure {
		t.Errorf("without TLS the cookie must not be Secure (the browser would drop it)")
	}

	// Failed logins are limited per address: 10 a minute, then 429 even
	// for the right token.
	for i := range 10 {
		if rec := form("wrong-token-0123456789", testCSRF, nil); rec.Code != 401 {
			t.Fatalf("failed login %d: %d, want 401", i, rec.Code)
		}
	}
	if rec := form(testOperator, testCSRF, nil); rec.Code != 429 || session(rec) != nil {
		t.Errorf("after 10 failures: %d, want 429 and no session", rec.Code)
	}

	// A wall screen's viewer link logs in for long and goes to the wall;
	// an operator token is refused in a link.
	link := func(token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/login?token="+url.QueryEscape(token), nil)
		req.Host = goodHost
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec
	}
	rec = link(testViewer)
	if c := session(rec); rec.Code != 303 || rec.Header().Get("Location") != "/wall" || c == nil || c.MaxAge < 7*24*3600 {
		t.Errorf("viewer link: %d to %q, cookie %+v", rec.Code, rec.Header().Get("Location"), c)
	}
	if rec := link(testOperator); rec.Code != 400 || session(rec) != nil {
		t.Errorf("operator link: %d, want 400 and no session", rec.Code)
	}

	// Redirects stay on this site.
	// Browsers drop tabs and newlines from a Location and read a
	// backslash as a slash, so "/\t/evil.example" is "//evil.example".
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example",
		"/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "/\x00/evil.example", "/\x7f/evil.example", "\t//evil.example"} {
		if got := safeNext(next, "/"); got != "/" {
			t.Errorf("safeNext(%q) = %q", next, got)
		}
	}
}

func TestSecurityHeadersAndNoListings(t *testing.T) {
	e := securedRouter(t)
	for _, tt := range []struct {
		path string
		want int
	}{
		{"/login", 200}, {"/static/canal.css", 200}, {"/static/", 404}, {"/static/vendor/", 404}, {"/static/vendor", 404}, {"/healthz", 200},
	} {
		req := httptest.NewRequest("GET", tt.path, nil)
		req.Host = goodHost
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("%s: %d, want %d", tt.path, rec.Code, tt.want)
		}
		h := rec.Header()
		csp := h.Get("Content-Security-Policy")
		for _, d := range []string{"frame-ancestors 'none'", "script-src 'self'", "default-src 'none'"} {
			if !strings.Contains(csp, d) {
				t.Errorf("%s: CSP %q lacks %s", tt.path, csp, d)
			}
		}
		if strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "script-src 'self' 'unsafe-inline'") {
			t.Errorf("%s: CSP allows eval or inline scripts: %q", tt.path, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "same-origin" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: headers %v", tt.path, h)
		}
	}
}

// A team's single sign-on replaces the tokens through Access.Authenticator
// (here a proxy's header); roles and the rest apply unchanged.
func TestAccessWithOwnSSO(t *testing.T) {
	h, _, _ := testHub(t, HubConfig{FlushEvery: time.Hour})
	sso := auth.AuthenticatorFunc(func(r *http.Request) (auth.Principal, error) {
		switch r.Header.Get("X-Forwarded-User") {
		case "":
			return auth.Principal{}, auth.ErrNoCredentials
		case "ada":
			return auth.Principal{Name: "ada", Role: auth.Operator, Via: "sso"}, nil
		case "bob":
			return auth.Principal{Name: "bob", Role: auth.Viewer, Via: "sso"}, nil
		}
		return auth.Principal{}, auth.ErrBadCredentials
	})
	e := New(Deps{Hub: h, Jobs: newFakeJobs(nil, "report"), Access: Access{Authenticator: sso}})
	for _, tt := range []struct {
		method, path, user string
		want               int
	}{
		{"GET", "/", "", 401}, // no login page to send a browser to
		{"GET", "/", "bob", 200},
		{"POST", "/api/jobs/report/trigger", "bob", 403},
		{"POST", "/api/jobs/report/trigger", "ada", 200},
		{"GET", "/api/jobs", "mallory", 401},
	} {
		req := httptest.NewRequest(tt.method, tt.path, nil)
		req.Host = goodHost
		if tt.user != "" {
			req.Header.Set("X-Forwarded-User", tt.user)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("%s %s as %q: %d, want %d", tt.method, tt.path, tt.user, rec.Code, tt.want)
		}
	}
}

// Behind a trusted proxy the login limit counts each client, read from
// X-Forwarded-For: one client's wrong tokens do not lock out another. An
// X-Forwarded-For from an address that is not a trusted proxy is ignored,
// so a client cannot dodge the limit by forging it; with no proxy
// trusted (the default) every request is its connection's address.
func TestLoginLimitBehindATrustedProxy(t *testing.T) {
	tok := testTokens(t)
	_, proxies, err := net.ParseCIDR("10.0.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	router := func(trusted ...*net.IPNet) *echo.Echo {
		h, _, _ := testHub(t, HubConfig{FlushEvery: time.Hour})
		return New(Deps{Hub: h, Jobs: newFakeJobs(nil, "report"), Access: Access{Authenticator: tok, Login: tok, TrustedProxies: trusted}})
	}
	call := func(e *echo.Echo, remote, xff, bearer string) int {
		req := httptest.NewRequest("GET", "/api/jobs", nil)
		req.Host, req.RemoteAddr = goodHost, remote
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		req.Header.Set("Authorization", "Bearer "+bearer)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec.Code
	}
	guess := func(i int) string { return fmt.Sprintf("guess-%02d-0123456789abcdef", i) }

	t.Run("trusted proxy", func(t *testing.T) {
		e := router(proxies)
		for i := range 10 {
			if code := call(e, "10.0.0.5:4000", "203.0.113.1", guess(i)); code != 401 {
				t.Fatalf("guess %d: %d, want 401", i, code)
			}
		}
		if code := call(e, "10.0.0.5:4000", "203.0.113.1", testOperator); code != 429 {
			t.Errorf("the guessing client with the right token: %d, want 429", code)
		}
		// Another client through the same proxy (and through a chain of
		// it) is not locked out.
		if code := call(e, "10.0.0.5:4001", "203.0.113.2", testOperator); code != 200 {
			t.Errorf("another client through the proxy: %d, want 200", code)
		}
		if code := call(e, "10.0.0.6:4001", "203.0.113.3, 10.0.0.5", testOperator); code != 200 {
			t.Errorf("another client through two proxies: %d, want 200", code)
		}
		// The proxy cannot be framed by a client that forges the header
		// in front of the proxy's own entry.
		if code := call(e, "10.0.0.5:4002", "203.0.113.2, 203.0.113.1", testOperator); code != 429 {
			t.Errorf("the guessing client behind a forged entry: %d, want 429", code)
		}
	})
	t.Run("untrusted X-Forwarded-For", func(t *testing.T) {
		e := router(proxies)
		for i := range 10 {
			if code := call(e, "198.51.100.7:4000", fmt.Sprintf("203.0.113.%d", i+10), guess(i)); code != 401 {
				t.Fatalf("guess %d: %d, want 401", i, code)
			}
		}
		if code := call(e, "198.51.100.7:4000", "203.0.113.99", testOperator); code != 429 {
			t.Errorf("a forged X-Forwarded-For dodged the limit: %d, want 429", code)
		}
	})
	t.Run("no proxy trusted", func(t *testing.T) {
		e := router()
		for i := range 10 {
			call(e, "10.0.0.5:4000", "203.0.113.1", guess(i))
		}
		if code := call(e, "10.0.0.5:4000", "203.0.113.2", testOperator); code != 429 {
			t.Errorf("without -trusted-proxies the header counted: %d, want 429 (one address)", code)
		}
	})
}
