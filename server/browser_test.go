package server_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canalhq/canal/server/servertest"
	"github.com/canalhq/canal/testenv"
	"github.com/chromedp/chromedp"
)

// TestBrowserSeesDemoJobCountRise loads the dashboard in headless Chromium
// and watches the demo job's execution count rise with no reload: the
// numbers arrive over the WebSocket.
func TestBrowserSeesDemoJobCountRise(t *testing.T) {
	t.Parallel() // waits on processes, browsers and timers, not the CPU
	browser := testenv.Browser(t)
	inst := servertest.Start(t, nil)

	ctx, cancel := context.WithTimeout(browser, 60*time.Second)
	defer cancel()
	const count = `[data-job="report"] [data-testid="executions"]`
	var before string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(inst.URL+"/"),
		chromedp.WaitVisible(count),
		// A marker that a reload would wipe out.
		chromedp.Evaluate(`window.canalNoReload = true`, nil),
		chromedp.Text(count, &before),
	); err != nil {
		t.Fatalf("load dashboard: %v", err)
	}
	n0, err := strconv.Atoi(strings.ReplaceAll(before, ",", "")) // "1,234"
	if err != nil {
		t.Fatalf("executions %q is not a number", before)
	}
	var risen bool
	if err := chromedp.Run(ctx,
		chromedp.Poll(`Number(document.querySelector('`+count+`').textContent.replace(/,/g, '')) > `+strconv.Itoa(n0)+` && window.canalNoReload === true`,
			&risen, chromedp.WithPollingTimeout(30*time.Second)),
	); err != nil || !risen {
		t.Fatalf("execution count did not rise above %d without a reload: %v", n0, err)
	}
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	testenv.SaveScreenshot(t, "live.png", png)
}
