package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/canalhq/canal/server/servertest"
	"github.com/canalhq/canal/testenv"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// watchCSP records every Content-Security-Policy violation of the pages a
// tab loads, from before their first script runs.
var watchCSP = chromedp.ActionFunc(func(ctx context.Context) error {
	_, err := page.AddScriptToEvaluateOnNewDocument(`window.cspViolations = [];
		document.addEventListener("securitypolicyviolation", function (e) {
			window.cspViolations.push(e.violatedDirective + " " + e.blockedURI + " " + (e.sample || ""));
		});`).Do(ctx)
	return err
})

func noCSPViolations(t *testing.T, tab context.Context, where string) {
	t.Helper()
	var v []string
	if err := chromedp.Run(tab, chromedp.Evaluate(`window.cspViolations || []`, &v)); err != nil {
		t.Fatal(err)
	}
	if len(v) > 0 {
		t.Errorf("%s: Content-Security-Policy violations: %v", where, v)
	}
}

func login(t *testing.T, tab context.Context, base, token string) {
	t.Helper()
	if err := chromedp.Run(tab,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(`[data-testid="token"]`), // sent to the login page
		chromedp.SendKeys(`[data-testid="token"]`, token),
		chromedp.Click(`[data-testid="login-submit"]`),
		chromedp.WaitVisible(`[data-job="report"]`),
		chromedp.Poll(`document.querySelector('[data-conn]').dataset.state === "open"`, nil, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)),
	); err != nil {
		t.Fatalf("log in: %v", err)
	}
}

// TestBrowserViewerAndOperator logs in as a viewer (no buttons anywhere,
// even after the live frames arrive) and as an operator, who presses Run
// now on one page while the audit page in another tab shows the entry
// without a reload. No page breaks the Content-Security-Policy.
func TestBrowserViewerAndOperator(t *testing.T) {
	t.Parallel() // waits on processes, browsers and timers, not the CPU
	browser := testenv.Browser(t)
	const op, viewer = "operator-browser-token-1", "viewer-browser-token-1"
	inst := servertest.Start(t, map[string]string{"CANAL_OPERATOR_TOKEN": op, "CANAL_VIEWER_TOKEN": viewer})
	ctx, cancel := context.WithTimeout(browser, 90*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, watchCSP); err != nil {
		t.Fatal(err)
	}

	login(t, ctx, inst.URL, viewer)
	// Buttons that act (the filter forms' buttons only read).
	buttons := `document.querySelectorAll('main [hx-post], main form[method=post], main [data-testid=trigger], main [data-testid=retry]').length`
	var n int
	var role string
	var png []byte
	if err := chromedp.Run(ctx,
		chromedp.Sleep(500*time.Millisecond), // a frame or two over the socket
		chromedp.Evaluate(buttons, &n),
		chromedp.Text(`[data-testid="role"]`, &role),
		chromedp.FullScreenshot(&png, 100),
	); err != nil {
		t.Fatal(err)
	}
	if n != 0 || role != "viewer · viewer" {
		t.Errorf("viewer's overview: %d buttons, role %q; want none and the viewer named", n, role)
	}
	testenv.SaveScreenshot(t, "viewer.png", png)
	if err := chromedp.Run(ctx, chromedp.Navigate(inst.URL+"/outbox?status=dead"), chromedp.WaitVisible(`[data-testid="outbox-live"]`),
		chromedp.Evaluate(buttons, &n)); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("viewer's outbox page: %d buttons", n)
	}
	// A viewer's write made by hand is refused, and says so.
	var status int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`fetch("/api/jobs/report/trigger", {method: "POST",
		headers: {"X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content}}).then(r => r.status)`,
		&status, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) })); err != nil {
		t.Fatal(err)
	}
	if status != 403 {
		t.Errorf("a viewer's POST: %d, want 403", status)
	}
	noCSPViolations(t, ctx, "viewer")

	if err := chromedp.Run(ctx, chromedp.Navigate(inst.URL+"/"), chromedp.WaitVisible(`[data-testid="logout"]`),
		chromedp.Click(`[data-testid="logout"]`), chromedp.WaitVisible(`[data-testid="token"]`)); err != nil {
		t.Fatalf("log out: %v", err)
	}

	login(t, ctx, inst.URL, op)
	audit := testenv.NewTab(t, ctx)
	if err := chromedp.Run(audit, watchCSP, chromedp.Navigate(inst.URL+"/audit"), chromedp.WaitVisible(`[data-testid="audit-live"]`),
		chromedp.Poll(`document.querySelector('[data-conn]').dataset.state === "open"`, nil, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)),
		chromedp.Evaluate(`window.canalNoReload = true`, nil)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Run(ctx, chromedp.Click(`[data-job="report"] [data-testid="trigger"]`),
		chromedp.WaitVisible(`[data-testid="result"]`)); err != nil {
		t.Fatalf("press Run now: %v", err)
	}
	// The person looks at the audit tab (a hidden tab's regions wait to be
	// shown before they re-read).
	var live bool
	if err := chromedp.Run(audit, page.BringToFront(), chromedp.Poll(`!!document.querySelector('[data-testid="audit-row"][data-action="jobs.trigger"][data-result="ok"]') && window.canalNoReload === true`,
		&live, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil || !live {
		var res, table string
		_ = chromedp.Run(ctx, chromedp.Text(`[data-testid="result"]`, &res))
		_ = chromedp.Run(audit, chromedp.OuterHTML(`[data-testid="audit-live"]`, &table))
		var hidden bool
		_ = chromedp.Run(audit, chromedp.Evaluate(`document.hidden`, &hidden))
		t.Logf("result %q; audit tab hidden %v; audit table %s", res, hidden, table)
		t.Fatalf("the audit row did not appear live: %v", err)
	}
	var who string
	if err := chromedp.Run(audit, chromedp.Text(`[data-testid="audit-row"][data-action="jobs.trigger"] td:nth-child(2)`, &who),
		chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatal(err)
	}
	if who != "operator" {
		t.Errorf("audit row says %q did it", who)
	}
	testenv.SaveScreenshot(t, "audit.png", png)
	noCSPViolations(t, ctx, "operator overview")
	noCSPViolations(t, audit, "audit page")
}
