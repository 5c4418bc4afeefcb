package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/server/servertest"
	"github.com/canalhq/canal/testenv"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// shot saves a screenshot of tab in t.ArtifactDir: a temporary folder, kept
// (under _artifacts) when the test runs with -artifacts.
func shot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	var png []byte
	if err := chromedp.Run(tab, chromedp.CaptureScreenshot(&png)); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	testenv.SaveScreenshot(t, filepath.Join(t.ArtifactDir(), name), png)
}

// timesShown returns, for every <time> on the page, its UTC datetime and the
// text it shows.
func timesShown(t *testing.T, tab context.Context) [][2]string {
	t.Helper()
	var got [][2]string
	if err := chromedp.Run(tab, chromedp.Evaluate(`Array.from(document.querySelectorAll('time[data-fmt]')).map(function (el) {
		return [el.getAttribute('datetime'), el.textContent];
	})`, &got)); err != nil {
		t.Fatal(err)
	}
	return got
}

// checkTimes says whether every time is shown as its UTC instant in loc.
func checkTimes(t *testing.T, page string, times [][2]string, loc *time.Location) {
	t.Helper()
	if len(times) == 0 {
		t.Fatalf("%s shows no <time datetime> at all", page)
	}
	for _, tm := range times {
		at, err := time.Parse(time.RFC3339Nano, tm[0])
		if err != nil {
			t.Fatalf("%s: datetime %q is not RFC 3339: %v", page, tm[0], err)
		}
		if !strings.HasSuffix(tm[0], "Z") {
			t.Errorf("%s: datetime %q is not UTC", page, tm[0])
		}
		want := at.In(loc).Format("15:04:05")
		if !strings.Contains(tm[1], want) {
			t.Errorf("%s: %s shown as %q, want %s (%s)", page, tm[0], tm[1], want, loc)
		}
	}
}

// TestBrowserShowsEveryTimeInOneZone runs the browser in Asia/Tokyo: every
// time on the overview and the wall, and the connection banner, read in
// Tokyo's zone, and the page says so. A server started with -display-tz
// shows its zone instead, whatever the browser's.
func TestBrowserShowsEveryTimeInOneZone(t *testing.T) {
	browser := testenv.Browser(t)
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	paris, _ := time.LoadLocation("Europe/Paris")
	viewer := servertest.Start(t, nil)
	forced := servertest.Start(t, nil, "-display-tz", "Europe/Paris")
	ctx, cancel := context.WithTimeout(browser, 120*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, emulation.SetTimezoneOverride("Asia/Tokyo")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url  string
		loc  *time.Location
		name string
	}{
		{viewer.URL + "/", tokyo, "overview"},
		{viewer.URL + "/wall", tokyo, "wall"},
		{forced.URL + "/", paris, "overview with -display-tz"},
		{forced.URL + "/wall", paris, "wall with -display-tz"},
	} {
		open(t, ctx, tc.url)
		// Wait for a run, so there are times to show.
		if err := chromedp.Run(ctx, chromedp.WaitVisible(`[data-testid="feed-item"] time, [data-testid="wall-job"] time`)); err != nil {
			t.Fatalf("%s: no time shown: %v", tc.name, err)
		}
		checkTimes(t, tc.name, timesShown(t, ctx), tc.loc)
		var label string
		if err := chromedp.Run(ctx, chromedp.Text(`[data-testid="tz"]`, &label)); err != nil {
			t.Fatal(err)
		}
		if label != "times in "+tc.loc.String() {
			t.Errorf("%s: zone label %q, want %q", tc.name, label, "times in "+tc.loc.String())
		}
		shot(t, ctx, strings.ReplaceAll(tc.name, " ", "-")+".png")
	}

	// The banner's clock is the same zone as the figures' times.
	open(t, ctx, viewer.URL+"/wall")
	if err := viewer.Stop(); err != nil {
		t.Fatal(err)
	}
	var banner string
	var shownAt float64
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(`[data-testid="banner"]`),
		chromedp.Text(`[data-testid="banner"]`, &banner),
		chromedp.Evaluate(`Date.now()`, &shownAt),
	); err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(int64(shownAt))
	ok := false
	for d := -5 * time.Second; d <= time.Second; d += time.Second {
		ok = ok || strings.Contains(banner, "since "+now.Add(d).In(tokyo).Format("15:04:05"))
	}
	if !ok {
		t.Errorf("banner %q is not in Tokyo's time (now %s there)", banner, now.In(tokyo).Format("15:04:05"))
	}
}

// TestBrowserOfflineDimsAndSaysWhatWasNotSent stops the program under an
// open overview: its regions dim and say as of when, a press says it was not
// sent; after a restart on the same address and database the page comes back
// by itself, undimmed, with the figures the server has now.
func TestBrowserOfflineDimsAndSaysWhatWasNotSent(t *testing.T) {
	browser := testenv.Browser(t)
	db := filepath.Join(t.TempDir(), "canal.db")
	first := servertest.Start(t, nil, "-db", db)
	ctx, cancel := context.WithTimeout(browser, 150*time.Second)
	defer cancel()
	open(t, ctx, first.URL+"/")
	if err := chromedp.Run(ctx, chromedp.WaitVisible(`[data-testid="feed-item"]`)); err != nil {
		t.Fatal(err)
	}
	var lastFrame string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`new Date().toTimeString().slice(0, 8)`, &lastFrame)); err != nil {
		t.Fatal(err)
	}
	if err := first.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	var (
		offline bool
		asof    []string
		opacity string
	)
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(`[data-testid="banner"]`),
		chromedp.Evaluate(`document.body.classList.contains('offline')`, &offline),
		chromedp.Evaluate(`Array.from(document.querySelectorAll('[data-testid="asof"]')).map(function (e) { return e.textContent; })`, &asof),
		chromedp.Evaluate(`getComputedStyle(document.querySelector('main > *')).opacity`, &opacity),
	); err != nil {
		t.Fatal(err)
	}
	if !offline || opacity == "1" {
		t.Errorf("regions are not dimmed while offline (offline class %v, opacity %s)", offline, opacity)
	}
	if len(asof) < 3 {
		t.Errorf("only %d region headings say as of when: %q", len(asof), asof)
	}
	for _, a := range asof {
		if !strings.HasPrefix(a, "as of ") || len(a) != len("as of 15:04:05") {
			t.Errorf("stale mark %q, want as of HH:MM:SS", a)
		}
	}

	// A press while the server is down says it was not sent.
	var result string
	if err := chromedp.Run(ctx,
		chromedp.Click(reportCard+` [data-testid="trigger"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#result-job-report [data-testid="result"][data-ok="false"]`),
		chromedp.Text(`#result-job-report`, &result),
	); err != nil {
		t.Fatalf("an offline press showed nothing: %v", err)
	}
	if !strings.Contains(result, "not sent") {
		t.Errorf("offline press says %q, want it to say it was not sent", result)
	}
	shot(t, ctx, "overview-offline.png")

	second := servertest.Start(t, nil, "-db", db, "-addr", first.Addr)
	var back bool
	if err := chromedp.Run(ctx, chromedp.Poll(`!document.body.classList.contains('offline') &&
		document.querySelector('`+live+`') !== null && !document.querySelector('[data-testid="asof"]')`, &back,
		chromedp.WithPollingTimeout(100*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil || !back {
		t.Fatalf("the page did not come back undimmed: %v", err)
	}
	// The snapshot replaced the card: it shows what the new server has.
	testenv.Eventually(t, 60*time.Second, "the card shows the restarted server's executions", func() bool {
		var shown string
		var st struct{ Executions int64 }
		getJSON(t, second.URL+"/api/jobs/report", &st)
		_ = chromedp.Run(ctx, chromedp.Text(reportCard+` [data-testid="executions"]`, &shown))
		return strings.ReplaceAll(shown, ",", "") == strconv.FormatInt(st.Executions, 10)
	})
	shot(t, ctx, "overview-recovered.png")
}

// getJSON decodes a GET's 200 answer into v.
func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// figureSelectors are every figure the overview and the wall show, by the
// data-testid that carries it.
const figureJS = `(function () {
	var out = {};
	document.querySelectorAll('#outbox-stats [data-testid], #wall-outbox [data-testid], #chart [data-testid^="total-"], ' +
		'#wall-failures [data-testid="failure-count"], [data-testid="job-card"] [data-testid="executions"], ' +
		'[data-testid="job-card"] [data-testid="failures"], [data-testid="work-states"] a').forEach(function (el, i) {
		var key = (el.closest('[id]') || {}).id + ' ' + (el.dataset.testid || el.getAttribute('href')) + ' ' +
			((el.closest('[data-job]') || {dataset: {}}).dataset.job || '');
		out[key] = el.textContent.trim();
	});
	return out;
})()`

// readFigures reads the figures a tab shows once two reads agree across a
// bucket of the chart (6s apart: the last events leave the open bucket, and
// a young hub reads the stored history first).
func readFigures(t *testing.T, tab context.Context, what string) map[string]string {
	t.Helper()
	var prev, cur map[string]string
	testenv.Eventually(t, 90*time.Second, what+" settles", func() bool {
		cur = nil
		if err := chromedp.Run(tab, chromedp.Sleep(6*time.Second), chromedp.Evaluate(figureJS, &cur)); err != nil {
			t.Fatal(err)
		}
		same := len(cur) > 0 && len(prev) == len(cur)
		for k, v := range cur {
			same = same && prev[k] == v
		}
		prev = cur
		return same
	})
	return cur
}

// TestBrowserFiguresSurviveARestart runs the demo for a while, then serves
// the same database without it (nothing new happens), reads every figure of
// an open wall and an open overview, restarts the program under them and
// reads them again: a restart changes nothing a viewer sees. The windows
// (failures, throughput) are not empty, so a hub that forgot them fails.
func TestBrowserFiguresSurviveARestart(t *testing.T) {
	browser := testenv.Browser(t)
	before, quiet, begun := quietAfterDemo(t)
	ctx, cancel := context.WithTimeout(browser, 200*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.EmulateViewport(1920, 1080)); err != nil {
		t.Fatal(err)
	}
	wall := ctx
	overview := testenv.NewTab(t, ctx)
	open(t, wall, before.URL+"/wall")
	open(t, overview, before.URL+"/")
	wallBefore, overviewBefore := readFigures(t, wall, "the wall"), readFigures(t, overview, "the overview")
	if wallBefore["wall-failures failure-count "] == "0" || wallBefore["chart total-outbox "] == "0" {
		t.Fatalf("the wall counts no failure or no dispatch before the restart: %v", wallBefore)
	}
	shot(t, wall, "wall-before-restart.png")

	if err := before.Stop(); err != nil {
		t.Fatal(err)
	}
	servertest.Start(t, nil, append(quiet, "-addr", before.Addr)...)
	for _, tab := range []context.Context{wall, overview} {
		if err := chromedp.Run(tab, chromedp.Poll(`document.querySelector('`+live+`') !== null && !document.body.classList.contains('offline')`, nil,
			chromedp.WithPollingTimeout(100*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
			t.Fatalf("a page did not reconnect: %v", err)
		}
	}
	wallAfter, overviewAfter := readFigures(t, wall, "the wall"), readFigures(t, overview, "the overview")
	shot(t, wall, "wall-after-restart.png")
	// The rate and the latency are over the last minute: on a slow run the
	// demo's last dispatches may have left it, for a good reason.
	minuteGone := time.Since(begun) > 50*time.Second
	for _, c := range []struct {
		page          string
		before, after map[string]string
	}{{"wall", wallBefore, wallAfter}, {"overview", overviewBefore, overviewAfter}} {
		for k, v := range c.before {
			if minuteGone && (strings.Contains(k, " rate ") || strings.Contains(k, " p99 ")) {
				t.Logf("%s: %q not compared: its minute has passed since the demo ran", c.page, k)
				continue
			}
			if c.after[k] != v {
				t.Errorf("%s: %q was %q before the restart and %q after", c.page, k, v, c.after[k])
			}
		}
		if len(c.after) != len(c.before) {
			t.Errorf("%s shows %d figures after the restart, %d before", c.page, len(c.after), len(c.before))
		}
		t.Logf("%s: %d figures the same after a restart: %v", c.page, len(c.before), c.before)
	}
}

// TestBrowserDeleteAnswersInItsRowUnderThePointer deletes a dead letter
// from the dead list with the pointer left on its row (where the table's own
// refresh waits): the row itself says it is gone at once, with no button
// left to press again; Retry in another row re-renders that row from the
// retried record.
func TestBrowserDeleteAnswersInItsRowUnderThePointer(t *testing.T) {
	browser := testenv.Browser(t)
	var up atomic.Bool
	srv, add := liveOutbox(t, &up)
	gone, retried := add("flaky"), add("flaky")
	ctx, cancel := context.WithTimeout(browser, 90*time.Second)
	defer cancel()
	// hx-confirm asks first: say yes.
	chromedp.ListenTarget(ctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			go func() { _ = chromedp.Run(ctx, page.HandleJavaScriptDialog(true)) }()
		}
	})
	var errs consoleErrors
	errs.watch(t, ctx)
	open(t, ctx, srv.URL+"/outbox?status=dead")
	poll(t, ctx, "both messages are dead in the list", rowStatus(gone)+` === "dead" && `+rowStatus(retried)+` === "dead"`)
	row := `[data-testid="message"][data-id="` + gone + `"]`
	// Click moves the pointer onto the button, and it stays over the row.
	// The pointer is over the row as Delete is pressed (the answer may
	// then change the row's height and move it off).
	var hovered bool
	if err := chromedp.Run(ctx, chromedp.Click(row+` [data-testid="delete"]`, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector('#msg-`+gone+`').matches(':hover')`, &hovered)); err != nil {
		t.Fatalf("press Delete: %v", err)
	}
	poll(t, ctx, "the row says it was deleted", rowStatus(gone)+` === "deleted"`)
	var buttons int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll('`+row+` button').length`, &buttons)); err != nil {
		t.Fatal(err)
	}
	if buttons != 0 || !hovered {
		t.Errorf("after Delete the row keeps %d buttons (pointer over it: %v)", buttons, hovered)
	}
	shot(t, ctx, "outbox-row-deleted.png")

	up.Store(true)
	if err := chromedp.Run(ctx, chromedp.Click(`[data-testid="message"][data-id="`+retried+`"] [data-testid="retry"]`, chromedp.ByQuery)); err != nil {
		t.Fatalf("press Retry: %v", err)
	}
	poll(t, ctx, "the retried row shows its new state", rowStatus(retried)+` !== "dead"`)
	if e := errs.list(); len(e) > 0 {
		t.Errorf("console errors: %q", e)
	}
}

// TestBrowserPhoneOutboxTableShowsStatus opens the outbox list at a phone's
// size: every row's Status is on screen without scrolling sideways, and the
// page does not scroll sideways either.
func TestBrowserPhoneOutboxTableShowsStatus(t *testing.T) {
	browser := testenv.Browser(t)
	var up atomic.Bool
	srv, add := liveOutbox(t, &up)
	dead := add("flaky")
	add("ok")
	ctx, cancel := context.WithTimeout(browser, 60*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(3))); err != nil {
		t.Fatal(err)
	}
	open(t, ctx, srv.URL+"/outbox")
	poll(t, ctx, "the dead message is listed", rowStatus(dead)+` === "dead"`)
	var ok bool
	var why string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`(function () {
		var rows = Array.from(document.querySelectorAll('[data-testid="message"]'));
		if (rows.length < 2) { return "only " + rows.length + " rows"; }
		for (var i = 0; i < rows.length; i++) {
			var b = rows[i].querySelector('.status-col .badge');
			if (!b) { return "row " + i + " has no status"; }
			var r = b.getBoundingClientRect();
			if (r.width === 0 || r.left < 0 || r.right > window.innerWidth) { return "row " + i + " status at " + r.left + ".." + r.right + " of " + window.innerWidth; }
		}
		if (document.documentElement.scrollWidth > window.innerWidth) { return "the page scrolls sideways: " + document.documentElement.scrollWidth; }
		return "";
	})()`, &why)); err != nil {
		t.Fatal(err)
	}
	ok = why == ""
	shot(t, ctx, "outbox-phone.png")
	if !ok {
		t.Errorf("on a phone: %s", why)
	}
}
