package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// recordSockets notes the URL of every WebSocket a page opens, from before
// its first script runs.
var recordSockets = chromedp.ActionFunc(func(ctx context.Context) error {
	_, err := page.AddScriptToEvaluateOnNewDocument(`window.canalSockets = [];
		(function () {
			var W = window.WebSocket;
			window.WebSocket = class extends W {
				constructor(u, p) { super(u, p); window.canalSockets.push(String(u)); }
			};
		})();`).Do(ctx)
	return err
})

// pageURLs is every URL the page holds or has fetched: its URL attributes
// (as written), its resources and its sockets (as paths).
const pageURLs = `(function () {
	var out = [];
	var attrs = ` + "`" + `href src action formaction hx-get hx-post hx-put hx-delete ws-connect data-live-src` + "`" + `.split(" ");
	attrs.forEach(function (a) {
		document.querySelectorAll("[" + a + "]").forEach(function (el) { out.push(a + " " + el.getAttribute(a)); });
	});
	performance.getEntriesByType("resource").forEach(function (e) { out.push("fetched " + new URL(e.name).pathname); });
	(window.canalSockets || []).forEach(function (u) { out.push("socket " + new URL(u, location.href).pathname); });
	return out;
})()`

const socketOpen = `document.querySelector('[data-conn]') && document.querySelector('[data-conn]').dataset.state === "open"`

// poll waits until expr is true, across a navigation (whose old page's
// context goes away while it is asked).
func poll(expr string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		var err error
		for {
			var ok bool
			if err = chromedp.Evaluate(expr, &ok).Do(ctx); err == nil && ok {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s: %w (last: %v)", expr, ctx.Err(), err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}

// TestBrowserDashboardMounted drives Canal mounted under /canal/ of a
// service's own mux in headless Chromium, logged in by the service's own
// login: every nav link, a job's page, Run now (with its CSRF token), a
// live update over the socket, and not one URL (link, form, htmx request,
// script, fetch or socket) outside /canal/. A viewer sees no buttons and
// cannot post.
func TestBrowserDashboardMounted(t *testing.T) {
	t.Parallel() // waits on processes, browsers and timers, not the CPU
	browser := testenv.Browser(t)
	s := startShop(t, false)
	ctx, cancel := context.WithTimeout(browser, 120*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, watchCSP, recordSockets); err != nil {
		t.Fatal(err)
	}
	under := func(where string) {
		t.Helper()
		var urls []string
		if err := chromedp.Run(ctx, chromedp.Evaluate(pageURLs, &urls)); err != nil {
			t.Fatal(err)
		}
		var sockets int
		for _, u := range urls {
			kind, v, _ := strings.Cut(u, " ")
			if kind == "socket" {
				sockets++
			}
			if !strings.HasPrefix(v, "/canal/") {
				t.Errorf("%s: %s %q is outside /canal/", where, kind, v)
			}
		}
		if len(urls) == 0 || sockets == 0 {
			t.Errorf("%s: %d URLs found, %d of them sockets; want some of each", where, len(urls), sockets)
		}
	}

	// The service's own login sends the browser on to /canal/.
	if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/login-as?user=ops"),
		chromedp.WaitVisible(`[data-job="report"]`), poll(socketOpen)); err != nil {
		t.Fatalf("open /canal/: %v", err)
	}
	var nav []string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`Array.from(document.querySelectorAll("header nav a")).map(a => a.getAttribute("href"))`, &nav)); err != nil {
		t.Fatal(err)
	}
	if len(nav) < 5 {
		t.Fatalf("nav links: %v", nav)
	}
	under("overview")
	for _, href := range append(nav, "job") {
		sel := `header nav a[href="` + href + `"]`
		want := href
		if href == "job" { // a job's own page, from its card
			sel, want = `[data-job="report"] h3 a`, "/canal/jobs/report"
		}
		if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/canal/"), chromedp.WaitVisible(`[data-job="report"]`),
			chromedp.Click(sel), poll(`location.pathname === "`+want+`" && document.readyState === "complete"`),
			poll(socketOpen)); err != nil {
			t.Fatalf("click %s: %v", sel, err)
		}
		under(want)
	}
	noCSPViolations(t, ctx, "pages under /canal/")

	// Run now: an htmx post with the page's CSRF token; the card counts the
	// run when the hub's frame comes over the socket, without a reload.
	var result string
	if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/canal/"), chromedp.WaitVisible(`[data-job="report"]`), poll(socketOpen),
		chromedp.Evaluate(`window.canalNoReload = true`, nil),
		chromedp.Click(`[data-job="report"] [data-testid="trigger"]`),
		chromedp.WaitVisible(`[data-testid="result"]`),
		chromedp.Text(`[data-testid="result"]`, &result),
	); err != nil {
		t.Fatalf("press Run now: %v", err)
	}
	if !strings.HasPrefix(result, "✓") {
		t.Errorf("Run now answered %q", result)
	}
	if err := chromedp.Run(ctx, poll(`document.querySelector('[data-job="report"] [data-testid="executions"]').textContent.trim() === "1" && window.canalNoReload === true`)); err != nil {
		t.Fatalf("the run did not show live: %v", err)
	}
	// A run the browser did not ask for shows too.
	if res, body := s.do(t, "POST", "/canal/api/jobs/report/trigger", "ops", nil, nil); res.StatusCode != 200 {
		t.Fatalf("trigger: %d %s", res.StatusCode, body)
	}
	if err := chromedp.Run(ctx, poll(`document.querySelector('[data-job="report"] [data-testid="executions"]').textContent.trim() === "2" && window.canalNoReload === true`)); err != nil {
		t.Fatalf("the second run did not show live: %v", err)
	}
	under("overview after the runs")

	// A viewer: no buttons, and a write made by hand is refused.
	if err := chromedp.Run(ctx, chromedp.Navigate(s.URL+"/login-as?user=ann"), chromedp.WaitVisible(`[data-job="report"]`), poll(socketOpen)); err != nil {
		t.Fatal(err)
	}
	var buttons, status int
	if err := chromedp.Run(ctx,
		chromedp.Evaluate(`document.querySelectorAll('main [hx-post], main form[method=post], main [data-testid=trigger]').length`, &buttons),
		chromedp.Evaluate(`fetch("/canal/api/jobs/report/trigger", {method: "POST",
			headers: {"X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content}}).then(r => r.status)`,
			&status, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }),
	); err != nil {
		t.Fatal(err)
	}
	if buttons != 0 || status != 403 {
		t.Errorf("viewer: %d buttons shown, a POST answered %d; want none and 403", buttons, status)
	}
	under("viewer's overview")

}
