package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/server"
	"github.com/canalhq/canal/testenv"
	"github.com/canalhq/canal/web/auth"
	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"
	"gorm.io/gorm"
)

// shop is a service of its own (its routes, its login, its job and work
// kind) with Canal mounted under /canal/.
type shop struct {
	URL   string
	proc  *jobs.Processor
	work  string // a work item's id
	msgID string // an outbox message's id
}

// shopUser is the service's own authentication: its proxy's header for
// programs, its own login cookie for browsers. "ops" is an operator,
// anyone else a viewer.
var shopUser = auth.AuthenticatorFunc(func(r *http.Request) (auth.Principal, error) {
	name := r.Header.Get("X-Shop-User")
	via := "shop-header"
	if ck, err := r.Cookie("shop_user"); name == "" && err == nil {
		name, via = ck.Value, "shop-cookie"
	}
	switch name {
	case "":
		return auth.Principal{}, auth.ErrNoCredentials
	case "ops":
		return auth.Principal{Name: "ops", Role: auth.Operator, Via: via}, nil
	}
	return auth.Principal{Name: name, Role: auth.Viewer, Via: via}, nil
})

// startShop starts the service on a SQLite database of its own, with Canal
// mounted under /canal/ by a net/http mux or by Echo.
func startShop(t *testing.T, withEcho bool, tune ...func(*server.DashboardConfig)) *shop {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db := testenv.SQLite(t)
	for _, m := range []func(context.Context, *gorm.DB) error{jobs.Migrate, outbox.Migrate} {
		if err := m(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	store, err := jobs.NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	proc := jobs.NewProcessor(jobs.Config{Store: store, Logger: log})
	if err := proc.Register("report", time.Hour, false, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := proc.RegisterKind("receipt", func(context.Context, jobs.WorkItem) error { return nil }, jobs.KindOptions{}); err != nil {
		t.Fatal(err)
	}
	relay, err := outbox.New(db, outbox.Config{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	relay.RegisterDefault(outbox.PublisherFunc(func(context.Context, outbox.Delivery) error { return nil }))
	cfg := server.DashboardConfig{Prefix: "/canal/", Jobs: proc, Outbox: relay, Authenticator: shopUser, Logger: log}
	for _, f := range tune {
		f(&cfg)
	}
	dash, err := server.NewDashboard(ctx, db, cfg)
	if err != nil {
		t.Fatal(err)
	}

	// The service's own routes beside Canal: a page and its login.
	hello := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from the shop") }
	loginAs := func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "shop_user", Value: r.URL.Query().Get("user"), Path: "/", HttpOnly: true})
		http.Redirect(w, r, "/canal/", http.StatusSeeOther)
	}
	var h http.Handler
	if withEcho {
		e := echo.New()
		e.GET("/hello", echo.WrapHandler(http.HandlerFunc(hello)))
		e.GET("/login-as", echo.WrapHandler(http.HandlerFunc(loginAs)))
		e.Any("/canal", echo.WrapHandler(dash.Handler()))
		e.Any("/canal/*", echo.WrapHandler(dash.Handler()))
		h = e
	} else {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /hello", hello)
		mux.HandleFunc("GET /login-as", loginAs)
		mux.Handle("/canal/", dash.Handler())
		h = mux
	}

	var wg sync.WaitGroup
	wg.Go(func() { _ = proc.Run(ctx) })
	wg.Go(func() { _ = relay.Run(ctx) })
	wg.Go(func() { _ = dash.Run(ctx) })
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); cancel(); wg.Wait() })

	it, err := proc.Enqueue(ctx, jobs.NewWork{Kind: "receipt", Payload: json.RawMessage(`{"order":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	id, err := relay.Add(ctx, db, outbox.Message{Topic: "orders.placed", Key: "order-1", Payload: map[string]int{"order": 1}})
	if err != nil {
		t.Fatal(err)
	}
	return &shop{URL: srv.URL, proc: proc, work: it.ID, msgID: id}
}

// do makes a request as user ("" for nobody) and returns the answer, its
// body read.
func (s *shop) do(t *testing.T, method, path, user string, hdr http.Header, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if user != "" {
		req.Header.Set("X-Shop-User", user)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// urlAttrs are the attributes that hold a URL the browser may request.
var urlAttrs = []string{"href", "src", "action", "formaction", "hx-get", "hx-post", "hx-put", "hx-delete", "ws-connect", "data-live-src"}

// escapes lists the URLs of an HTML document or fragment that leave prefix:
// absolute paths outside it and URLs to another place.
func escapes(t *testing.T, html, prefix string) []string {
	t.Helper()
	d, err := goquery.NewDocumentFromReader(strings.NewReader(html))
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for _, a := range urlAttrs {
		d.Find("[" + a + "]").Each(func(_ int, s *goquery.Selection) {
			v, _ := s.Attr(a)
			if !strings.HasPrefix(v, prefix) {
				bad = append(bad, a+"="+v)
			}
		})
	}
	return bad
}

// TestDashboardMounted mounts Canal under /canal/ beside a service's own
// routes (net/http and Echo) and reads every page, fragment, JSON route
// and socket there: every URL they carry stays under /canal/, cookies are
// the prefix's, buttons and redirects work there, and the service's
// authentication decides who may read and who may press.
func TestDashboardMounted(t *testing.T) {
	for _, tt := range []struct {
		name string
		echo bool
	}{{"net/http", false}, {"echo", true}} {
		t.Run(tt.name, func(t *testing.T) {
			s := startShop(t, tt.echo)

			if res, body := s.do(t, "GET", "/hello", "", nil, nil); res.StatusCode != 200 || body != "hello from the shop" {
				t.Errorf("the service's own route: %d %q", res.StatusCode, body)
			}
			// (net/http's mux redirects it itself, with 307.)
			if res, _ := s.do(t, "GET", "/canal", "ops", nil, nil); res.StatusCode/100 != 3 || res.Header.Get("Location") != "/canal/" {
				t.Errorf("/canal: %d to %q, want a redirect to /canal/", res.StatusCode, res.Header.Get("Location"))
			}
			if res, _ := s.do(t, "GET", "/canal/", "", http.Header{"Accept": {"text/html"}}, nil); res.StatusCode != http.StatusUnauthorized {
				t.Errorf("/canal/ without the service's login: %d, want 401", res.StatusCode)
			}

			pages := []string{"/canal/", "/canal/work", "/canal/work?state=pending", "/canal/work/" + s.work,
				"/canal/outbox", "/canal/outbox?status=pending", "/canal/outbox/" + s.msgID, "/canal/jobs/report",
				"/canal/wall", "/canal/audit", "/canal/login",
				"/canal/fragments/work", "/canal/fragments/work/" + s.work, "/canal/fragments/outbox",
				"/canal/fragments/outbox/" + s.msgID, "/canal/fragments/jobs/report/runs"}
			var csrf *http.Cookie
			for _, p := range pages {
				res, body := s.do(t, "GET", p, "ops", nil, nil)
				if res.StatusCode != 200 {
					t.Errorf("GET %s: %d", p, res.StatusCode)
					continue
				}
				if bad := escapes(t, body, "/canal/"); len(bad) > 0 {
					t.Errorf("GET %s: URLs outside /canal/: %v", p, bad)
				}
				for _, ck := range res.Cookies() {
					if ck.Name == "canal_csrf" {
						csrf = ck
					}
				}
			}
			if csrf == nil || csrf.Path != "/canal" {
				t.Fatalf("the CSRF cookie: %+v, want one with Path /canal", csrf)
			}

			// The JSON API, read by a viewer and written by an operator.
			for _, p := range []string{"/canal/api/jobs", "/canal/api/jobs/report", "/canal/api/work/" + s.work, "/canal/api/work",
				"/canal/api/outbox", "/canal/api/outbox/" + s.msgID, "/canal/api/outbox/stats", "/canal/api/dashboard",
				"/canal/api/hub/stats", "/canal/api/queue", "/canal/api/audit", "/canal/readyz", "/canal/healthz", "/canal/metrics"} {
				res, body := s.do(t, "GET", p, "ann", nil, nil)
				// Readiness bounds each check to a second: on a loaded
				// machine a check may miss it once; ready means soon ready.
				for end := time.Now().Add(time.Minute); p == "/canal/readyz" && res.StatusCode == http.StatusServiceUnavailable && time.Now().Before(end); {
					time.Sleep(200 * time.Millisecond)
					res, body = s.do(t, "GET", p, "ann", nil, nil)
				}
				if res.StatusCode != 200 {
					t.Errorf("GET %s as a viewer: %d %s", p, res.StatusCode, body)
				}
			}
			if res, body := s.do(t, "POST", "/canal/api/jobs/report/trigger", "ann", nil, nil); res.StatusCode != http.StatusForbidden {
				t.Errorf("a viewer's trigger: %d %s, want 403", res.StatusCode, body)
			}
			if res, body := s.do(t, "POST", "/canal/api/jobs/report/trigger", "ops", nil, nil); res.StatusCode != 200 {
				t.Errorf("an operator's trigger: %d %s", res.StatusCode, body)
			}
			res, body := s.do(t, "POST", "/canal/api/work", "ops", http.Header{"Content-Type": {"application/json"}},
				strings.NewReader(`{"kind":"receipt","payload":{"order":2}}`))
			if res.StatusCode != http.StatusAccepted || !strings.HasPrefix(res.Header.Get("Location"), "/canal/api/work/") {
				t.Errorf("POST /canal/api/work: %d, Location %q: %s", res.StatusCode, res.Header.Get("Location"), body)
			}

			// A button posted without JavaScript, from a browser (its cookies
			// and CSRF token): back to the page it came from, under /canal/.
			browser := http.Header{
				"Cookie":       {"shop_user=ops; canal_csrf=" + csrf.Value},
				"Content-Type": {"application/x-www-form-urlencoded"},
				"Referer":      {s.URL + "/canal/jobs/report"},
				"Origin":       {s.URL},
			}
			res, body = s.do(t, "POST", "/canal/ui/jobs/report/trigger", "", browser, strings.NewReader("csrf="+url.QueryEscape(csrf.Value)))
			if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/canal/jobs/report" {
				t.Errorf("a form's Run now: %d to %q, want 303 to /canal/jobs/report: %s", res.StatusCode, res.Header.Get("Location"), body)
			}
			browser.Set("Cookie", "shop_user=ann; canal_csrf="+csrf.Value)
			res, _ = s.do(t, "POST", "/canal/ui/jobs/report/trigger", "", browser, strings.NewReader("csrf="+url.QueryEscape(csrf.Value)))
			if res.StatusCode != http.StatusForbidden {
				t.Errorf("a viewer's form post: %d, want 403", res.StatusCode)
			}

			// The sockets: the overview's fragments (their links under the
			// prefix too) and the JSON frames.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ws := "ws" + strings.TrimPrefix(s.URL, "http")
			hdr := &websocket.DialOptions{HTTPHeader: http.Header{"X-Shop-User": {"ann"}}}
			c, _, err := websocket.Dial(ctx, ws+"/canal/ws?topics=overview", hdr)
			if err != nil {
				t.Fatalf("dial /canal/ws: %v", err)
			}
			defer c.CloseNow()
			_, frame, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(frame), `href="/canal/jobs/report"`) {
				t.Errorf("the overview's first frame has no link to /canal/jobs/report: %.400s", frame)
			}
			if bad := escapes(t, string(frame), "/canal/"); len(bad) > 0 {
				t.Errorf("the socket's frame: URLs outside /canal/: %v", bad)
			}
			j, _, err := websocket.Dial(ctx, ws+"/canal/ws/events", hdr)
			if err != nil {
				t.Fatalf("dial /canal/ws/events: %v", err)
			}
			defer j.CloseNow()
			_, frame, err = j.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(frame) || !strings.Contains(string(frame), `"report"`) {
				t.Errorf("the JSON socket's first frame: %.400s", frame)
			}
			if _, _, err := websocket.Dial(ctx, ws+"/canal/ws", nil); err == nil {
				t.Error("an anonymous socket was accepted")
			}
		})
	}
}

// TestDashboardMountedLogin: with Canal's own login (tokens) under /canal/,
// an anonymous browser is sent to /canal/login and back, and the session
// and CSRF cookies are the prefix's.
func TestDashboardMountedLogin(t *testing.T) {
	const op = "operator-token-mounted-1"
	tokens, err := auth.NewTokens(op, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	s := startShop(t, false, func(c *server.DashboardConfig) { c.Authenticator, c.Login = tokens, tokens })

	res, _ := s.do(t, "GET", "/canal/work?state=failed", "", http.Header{"Accept": {"text/html"}}, nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/canal/login?next="+url.QueryEscape("/work?state=failed") {
		t.Fatalf("an anonymous page: %d to %q, want 303 to the login under /canal/", res.StatusCode, res.Header.Get("Location"))
	}
	res, body := s.do(t, "GET", res.Header.Get("Location"), "", nil, nil)
	if bad := escapes(t, body, "/canal/"); res.StatusCode != 200 || len(bad) > 0 {
		t.Fatalf("the login page: %d, URLs outside /canal/: %v", res.StatusCode, bad)
	}
	var csrf string
	for _, ck := range res.Cookies() {
		if ck.Name == "canal_csrf" && ck.Path == "/canal" {
			csrf = ck.Value
		}
	}
	if csrf == "" {
		t.Fatalf("no CSRF cookie with Path /canal: %v", res.Cookies())
	}
	form := url.Values{"token": {op}, "csrf": {csrf}, "next": {"/work?state=failed"}}
	res, body = s.do(t, "POST", "/canal/login", "", http.Header{
		"Cookie": {"canal_csrf=" + csrf}, "Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {s.URL},
	}, strings.NewReader(form.Encode()))
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/canal/work?state=failed" {
		t.Fatalf("log in: %d to %q, want 303 to /canal/work?state=failed: %s", res.StatusCode, res.Header.Get("Location"), body)
	}
	var session *http.Cookie
	for _, ck := range res.Cookies() {
		if ck.Name == auth.SessionCookie {
			session = ck
		}
	}
	if session == nil || session.Path != "/canal" {
		t.Fatalf("the session cookie: %+v, want Path /canal", session)
	}
	res, _ = s.do(t, "GET", "/canal/work?state=failed", "", http.Header{"Cookie": {session.Name + "=" + session.Value}}, nil)
	if res.StatusCode != 200 {
		t.Errorf("the work page with the session: %d", res.StatusCode)
	}
	res, _ = s.do(t, "POST", "/canal/logout", "", http.Header{
		"Cookie":       {session.Name + "=" + session.Value + "; canal_csrf=" + csrf},
		"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {s.URL},
	}, strings.NewReader("csrf="+url.QueryEscape(csrf)))
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/canal/login" {
		t.Errorf("log out: %d to %q, want 303 to /canal/login", res.StatusCode, res.Header.Get("Location"))
	}
}
