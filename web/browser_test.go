package web_test

import (
	"context"
	"github.com/canalhq/canal/web/auth"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/a-h/templ"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/server/servertest"
	"github.com/canalhq/canal/static"
	"github.com/canalhq/canal/templates"
	"github.com/canalhq/canal/testenv"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// Selectors the browser tests share with the templates' data-testid names.
const (
	reportCard = `[data-testid="job-card"][data-job="report"]`
	live       = `[data-testid="conn"][data-state="open"]`
)

// open loads path in tab and waits until its socket is live.
func open(t *testing.T, tab context.Context, url string) {
	t.Helper()
	if err := chromedp.Run(tab,
		chromedp.Navigate(url),
		chromedp.WaitVisible(live),
		chromedp.Evaluate(`window.canalNoReload = true`, nil),
	); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
}

// TestBrowserStopOnOnePageUpdatesAnother presses Stop in one tab and watches
// a second tab's card change over its WebSocket, measured in the browser from
// the click to the DOM change.
func TestBrowserStopOnOnePageUpdatesAnother(t *testing.T) {
	browser := testenv.Browser(t)
	inst := servertest.Start(t, nil)
	ctx, cancel := context.WithTimeout(browser, 90*time.Second)
	defer cancel()
	a := ctx
	b := testenv.NewTab(t, ctx)
	open(t, a, inst.URL+"/")
	open(t, b, inst.URL+"/")

	// Tab b notes when its card says stopped; tab a when Stop was pressed.
	// Both read the same machine clock (Date.now()).
	if err := chromedp.Run(b, chromedp.Evaluate(`
		window.stoppedAt = 0;
		new MutationObserver(function () {
			var c = document.querySelector('`+reportCard+`');
			if (!window.stoppedAt && c && c.dataset.state === "stopped") { window.stoppedAt = Date.now(); }
		}).observe(document.body, {subtree: true, childList: true, attributes: true});`, nil)); err != nil {
		t.Fatal(err)
	}
	var clickedAt float64
	if err := chromedp.Run(a,
		chromedp.WaitEnabled(reportCard+` [data-testid="stop"]`),
		chromedp.Evaluate(`window.clickedAt = Date.now(); document.querySelector('`+reportCard+` [data-testid="stop"]').click(); window.clickedAt`, &clickedAt),
	); err != nil {
		t.Fatalf("press Stop: %v", err)
	}

	var stoppedAt float64
	if err := chromedp.Run(b, chromedp.Poll(`window.stoppedAt || false`, &stoppedAt,
		chromedp.WithPollingTimeout(10*time.Second), chromedp.WithPollingInterval(10*time.Millisecond))); err != nil {
		t.Fatalf("the second page never showed the job stopped: %v", err)
	}
	delay := time.Duration(stoppedAt-clickedAt) * time.Millisecond
	t.Logf("Stop pressed in one tab reached the other tab in %s", delay)
	if delay > time.Second {
		t.Errorf("the second page took %s to show the change, want within a second", delay)
	}

	// The page that pressed shows the processor's reply, and it too changed
	// without a reload.
	var result string
	var noReload bool
	if err := chromedp.Run(a,
		chromedp.WaitVisible(`#result-job-report [data-testid="result"]`),
		chromedp.Text(`#result-job-report`, &result),
		chromedp.WaitVisible(reportCard+`[data-state="stopped"]`),
		chromedp.Evaluate(`window.canalNoReload === true`, &noReload),
	); err != nil {
		t.Fatalf("result on the pressing page: %v", err)
	}
	if !strings.Contains(result, "report: stopped") || !noReload {
		t.Errorf("pressing page shows %q (no reload: %v)", result, noReload)
	}
	// Start it again so the state does not leak into other checks.
	if err := chromedp.Run(a, chromedp.Click(reportCard+` [data-testid="start"]`, chromedp.ByQuery),
		chromedp.WaitVisible(reportCard+`[data-state="running"]`)); err != nil {
		t.Fatalf("press Start: %v", err)
	}
}

// TestBrowserWallShowsLostConnectionAndRecovers stops the program under an
// open wall screen and an open overview, checks both show the banner, starts
// the program again on the same address and waits for both to reconnect by
// themselves.
func TestBrowserWallShowsLostConnectionAndRecovers(t *testing.T) {
	browser := testenv.Browser(t)
	first := servertest.Start(t, nil)
	ctx, cancel := context.WithTimeout(browser, 150*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.EmulateViewport(1920, 1080)); err != nil {
		t.Fatal(err)
	}
	open(t, ctx, first.URL+"/wall")
	page := testenv.NewTab(t, ctx)
	open(t, page, first.URL+"/")

	if err := first.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	var banner string
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(`[data-testid="banner"]`),
		chromedp.Text(`[data-testid="banner"]`, &banner),
	); err != nil {
		t.Fatalf("no banner after the server stopped: %v", err)
	}
	if !strings.HasPrefix(banner, "Connection lost since ") {
		t.Errorf("banner says %q", banner)
	}
	if err := chromedp.Run(page,
		chromedp.WaitVisible(`header [data-testid="banner"]`),
		chromedp.Text(`header [data-testid="banner"]`, &banner),
	); err != nil {
		t.Fatalf("no banner on the overview after the server stopped: %v", err)
	}
	if !strings.HasPrefix(banner, "Connection lost since ") {
		t.Errorf("overview banner says %q", banner)
	}
	var png []byte
	if err := chromedp.Run(ctx, chromedp.CaptureScreenshot(&png)); err == nil {
		testenv.SaveScreenshot(t, "wall-disconnected.png", png)
	}

	servertest.Start(t, nil, "-addr", first.Addr)
	for name, tab := range map[string]context.Context{"wall": ctx, "overview": page} {
		var back bool
		if err := chromedp.Run(tab,
			// htmx-ext-ws retries with full-jitter backoff (capped at 64s).
			chromedp.Poll(`document.querySelector('[data-testid="banner"]').hidden &&
				document.querySelector('`+live+`') !== null && window.canalNoReload === true`, &back,
				// An interval, not animation frames: one of the tabs is
				// in the background, where frames do not run.
				chromedp.WithPollingTimeout(100*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)),
		); err != nil || !back {
			t.Fatalf("the %s did not recover by itself: %v", name, err)
		}
	}
}

// TestBrowserScreenshots saves the overview and the wall screen, after the
// demo has run for a while, for the README.
func TestBrowserScreenshots(t *testing.T) {
	browser := testenv.Browser(t)
	inst := servertest.Start(t, nil)
	ctx, cancel := context.WithTimeout(browser, 120*time.Second)
	defer cancel()
	open(t, ctx, inst.URL+"/")
	// Let the demo fill the chart and the feed a little.
	if err := chromedp.Run(ctx, chromedp.Sleep(20*time.Second)); err != nil {
		t.Fatal(err)
	}
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	testenv.SaveScreenshot(t, "overview.png", png)

	wall := testenv.NewTab(t, ctx)
	if err := chromedp.Run(wall, chromedp.EmulateViewport(1920, 1080)); err != nil {
		t.Fatal(err)
	}
	open(t, wall, inst.URL+"/wall")
	var fits bool
	if err := chromedp.Run(wall,
		// Everything the wall shows lies inside the screen.
		chromedp.Evaluate(`Array.from(document.querySelectorAll('.wall-grid [data-testid]')).every(function (el) {
			var r = el.getBoundingClientRect();
			return r.bottom <= window.innerHeight && r.right <= window.innerWidth;
		})`, &fits),
		chromedp.CaptureScreenshot(&png),
	); err != nil {
		t.Fatalf("wall screenshot: %v", err)
	}
	if !fits {
		t.Error("the wall screen scrolls at 1920×1080")
	}
	testenv.SaveScreenshot(t, "wall.png", png)
}

// TestBrowserWorksWithoutJavaScript reads the dashboard with scripts off and
// presses Stop as a plain form post, which comes back to the page.
func TestBrowserWorksWithoutJavaScript(t *testing.T) {
	browser := testenv.Browser(t)
	inst := servertest.Start(t, nil)
	ctx, cancel := context.WithTimeout(browser, 60*time.Second)
	defer cancel()
	var cards int
	var conn, url string
	if err := chromedp.Run(ctx,
		emulation.SetScriptExecutionDisabled(true),
		chromedp.Navigate(inst.URL+"/"),
		chromedp.WaitVisible(reportCard),
		chromedp.Evaluate(`document.querySelectorAll('[data-testid="job-card"]').length`, &cards),
		chromedp.Text(`[data-testid="conn"]`, &conn),
		chromedp.Click(reportCard+` [data-testid="stop"]`, chromedp.ByQuery),
		chromedp.WaitVisible(reportCard+`[data-state="stopped"]`),
		chromedp.Location(&url),
	); err != nil {
		t.Fatalf("dashboard without JavaScript: %v", err)
	}
	if cards == 0 || conn != "not live" || url != inst.URL+"/" {
		t.Errorf("%d cards, connection says %q, landed on %s", cards, conn, url)
	}
}

// layoutView is a busy day's dashboard: every number as wide as it gets.
func layoutView() templates.View {
	now := time.Now()
	next := now.Add(time.Hour)
	busy := outbox.Stats{At: now, Pending: outbox.CountCap, Inflight: 4096, Dead: outbox.CountCap,
		OldestPendingSeconds: 3*24*3600 + 7*3600 + 59*60 + 59, DispatchRate: 48_213, LatencyP99Ms: 9_876}
	v := templates.View{At: now, Outbox: &busy,
		Queue: &jobs.QueueStats{Depths: map[string]int{"critical": 100_000, "high": 99_999, "normal": 12_345, "low": 0},
			Capacity: 100_000, Workers: 1024, Busy: 1024, Scheduled: 123_456, Process: jobs.WorkCounters{Done: 987_654_321, Failed: 1_234_567}}}
	for _, name := range []string{"report", "nightly-invoice-reconciliation", "cleanup"} {
		v.Jobs = append(v.Jobs, jobs.Status{Name: name, Running: true, Executions: 12_345_678, Failures: 1_234,
			Interval: 90 * time.Minute, LastRun: &now, NextRun: &next, LastError: "upstream timed out after 30s"})
	}
	for i := range 40 {
		v.Feed = append(v.Feed, templates.FeedItem{At: now, Type: "job.run.failed", Subject: "nightly-invoice-reconciliation",
			Text: "failed: upstream timed out after 30s while fetching page " + strconv.Itoa(i), Bad: true})
	}
	v.Failures = v.Feed
	v.FailureCount, v.FailureWindow = 40, 10*time.Minute
	return v
}

// TestBrowserLayoutHoldsWithBigNumbers renders the wall and the pages with
// the widest numbers they can show, at the wall's, a laptop's and a phone's
// size: no number may spill out of its box, no page scroll sideways, and
// the wall never scroll.
func TestBrowserLayoutHoldsWithBigNumbers(t *testing.T) {
	browser := testenv.Browser(t)
	v := layoutView()
	rec := outbox.Record{ID: "01a209b4-61b7-7cdb-8c8b-1972cbd276da", Topic: "order.placed", Key: "customer:margaret",
		Status: outbox.StatusDead, Attempts: 8, CreatedAt: v.At,
		LastError: `webhook: Post "http://127.0.0.1:9/": dial tcp 127.0.0.1:9: connect: connection refused`}
	mux := http.NewServeMux()
	mux.Handle("/static/", http.StripPrefix("/static/", http.FileServerFS(static.FS)))
	mux.Handle("/wall", templ.Handler(templates.WallPage(v)))
	mux.Handle("/outbox", templ.Handler(templates.OutboxPage(v.Outbox, templates.OutboxFilter{Status: "dead"},
		outbox.Page{Items: []outbox.Record{rec, rec, rec}}, 1, nil)))
	mux.Handle("/{$}", templ.Handler(templates.Overview(v)))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(browser, 60*time.Second)
	defer cancel()

	// Elements whose content is wider than their box, and how far the page
	// scrolls past the screen.
	const check = `(function (w) {
		var bad = [];
		document.querySelectorAll('.big-stat, .big-stat .v, .stat .v, .tile, .wall-queues .q, .conn, header.top nav').forEach(function (el) {
			if (el.scrollWidth > el.clientWidth + 1) { bad.push((el.className || el.tagName) + ' "' + el.textContent.trim().slice(0, 30) + '" ' + el.scrollWidth + '>' + el.clientWidth); }
		});
		document.querySelectorAll('.wall-grid section').forEach(function (sec) {
			var box = sec.getBoundingClientRect();
			sec.querySelectorAll('.big-stat').forEach(function (el) {
				if (el.getBoundingClientRect().right > box.right + 1) { bad.push('big-stat "' + el.textContent.trim().slice(0, 30) + '" spills out of its section'); }
			});
		});
		var d = document.documentElement;
		if (d.scrollWidth > w) { bad.push('page is ' + d.scrollWidth + 'px wide in a ' + w + 'px window'); }
		if (document.body.classList.contains('wall') && d.scrollHeight > window.innerHeight) { bad.push('wall is ' + d.scrollHeight + 'px high'); }
		return bad;
	})`
	for _, tc := range []struct {
		path   string
		w, h   int64
		mobile bool
	}{
		{"/wall", 1920, 1080, false},
		{"/wall", 1280, 720, false},
		{"/", 1280, 720, false},
		{"/", 390, 844, true},
		{"/outbox", 390, 844, true},
	} {
		var bad []string
		if err := chromedp.Run(ctx,
			emulation.SetDeviceMetricsOverride(tc.w, tc.h, 1, tc.mobile),
			chromedp.Navigate(srv.URL+tc.path),
			chromedp.WaitVisible(`main, .wall-grid`),
			chromedp.Evaluate(check+"("+strconv.FormatInt(tc.w, 10)+")", &bad),
		); err != nil {
			t.Fatalf("%s at %dx%d: %v", tc.path, tc.w, tc.h, err)
		}
		for _, b := range bad {
			t.Errorf("%s at %dx%d: %s", tc.path, tc.w, tc.h, b)
		}
	}

	// Every page of the running program, with the demo's data, on a phone,
	// once the demo has put work items in the table.
	inst := servertest.Start(t, nil)
	if err := chromedp.Run(ctx, emulation.SetDeviceMetricsOverride(390, 844, 1, true)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		var rows int
		if err := chromedp.Run(ctx, chromedp.Navigate(inst.URL+"/work"),
			chromedp.Evaluate(`document.querySelectorAll('[data-testid="work-item"]').length`, &rows)); err != nil {
			t.Fatal(err)
		}
		if rows > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, path := range []string{"/", "/work", "/jobs/report", "/outbox"} {
		var bad []string
		if err := chromedp.Run(ctx,
			chromedp.Navigate(inst.URL+path),
			chromedp.WaitVisible(`main`),
			chromedp.Evaluate(check+"(390)", &bad),
		); err != nil {
			t.Fatalf("%s on a phone: %v", path, err)
		}
		for _, b := range bad {
			t.Errorf("%s on a phone: %s", path, b)
		}
	}
}

// asOperator renders h's page as an operator sees it: with buttons.
func asOperator(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), auth.Principal{Name: "op", Role: auth.Operator})))
	})
}

// TestBrowserDeleteIsConfirmedWithoutJavaScript: with scripts off there is
// no hx-confirm, so Delete opens onto a second button, and only that one
// posts; with scripts on, only the hx-confirm button shows.
func TestBrowserDeleteIsConfirmedWithoutJavaScript(t *testing.T) {
	browser := testenv.Browser(t)
	rec := outbox.Record{ID: "m1", Topic: "order.placed", Status: outbox.StatusDead, Attempts: 8, CreatedAt: time.Now()}
	posted := make(chan string, 4)
	mux := http.NewServeMux()
	mux.Handle("/static/", http.StripPrefix("/static/", http.FileServerFS(static.FS)))
	mux.Handle("GET /outbox", asOperator(templ.Handler(templates.OutboxPage(nil, templates.OutboxFilter{Status: "dead"},
		outbox.Page{Items: []outbox.Record{rec}}, 1, nil))))
	mux.HandleFunc("POST /ui/outbox/{id}/{verb}", func(w http.ResponseWriter, r *http.Request) {
		posted <- r.PathValue("verb") + " " + r.PathValue("id")
		http.Redirect(w, r, "/outbox", http.StatusSeeOther)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(browser, 60*time.Second)
	defer cancel()

	visible := func(tab context.Context, testid string) bool {
		var v bool
		if err := chromedp.Run(tab, chromedp.Evaluate(`(function () {
			var el = document.querySelector('[data-testid="message"] [data-testid="`+testid+`"]');
			return !!el && el.checkVisibility();
		})()`, &v)); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if err := chromedp.Run(ctx, emulation.SetScriptExecutionDisabled(true), chromedp.Navigate(srv.URL+"/outbox"),
		chromedp.WaitVisible(`[data-testid="message"]`)); err != nil {
		t.Fatal(err)
	}
	if visible(ctx, "delete") || !visible(ctx, "delete-ask") || visible(ctx, "delete-confirmed") {
		t.Fatalf("without JavaScript: delete %v, delete-ask %v, delete-confirmed %v; want only delete-ask",
			visible(ctx, "delete"), visible(ctx, "delete-ask"), visible(ctx, "delete-confirmed"))
	}
	if err := chromedp.Run(ctx, chromedp.Click(`[data-testid="delete-ask"]`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-posted:
		t.Fatalf("the first press posted %q", p)
	case <-time.After(300 * time.Millisecond):
	}
	if err := chromedp.Run(ctx, chromedp.Click(`[data-testid="delete-confirmed"]`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-posted:
		if p != "delete m1" {
			t.Errorf("posted %q, want delete m1", p)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the confirmed delete never posted")
	}

	tab := testenv.NewTab(t, ctx)
	if err := chromedp.Run(tab, chromedp.Navigate(srv.URL+"/outbox"), chromedp.WaitVisible(`[data-testid="message"]`)); err != nil {
		t.Fatal(err)
	}
	if !visible(tab, "delete") || visible(tab, "delete-ask") {
		t.Errorf("with JavaScript: delete %v, delete-ask %v; want only the hx-confirm button", visible(tab, "delete"), visible(tab, "delete-ask"))
	}
}
