package web_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/server/servertest"
	"github.com/canalhq/canal/testenv"
	"github.com/canalhq/canal/web"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"gorm.io/gorm"
)

// liveOutbox serves the dashboard over a real relay on SQLite whose "flaky"
// topic fails until up is set; the hub takes the relay's events.
func liveOutbox(t *testing.T, up *atomic.Bool) (*httptest.Server, func(topic string) string) {
	t.Helper()
	ctx := context.Background()
	db := testenv.SQLite(t)
	if err := outbox.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	r, err := outbox.New(db, outbox.Config{MaxAttempts: 1, PollInterval: 20 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r.Register("ok", outbox.PublisherFunc(func(context.Context, outbox.Delivery) error { return nil }))
	r.Register("flaky", outbox.PublisherFunc(func(context.Context, outbox.Delivery) error {
		if !up.Load() {
			return outbox.MessageError(errors.New("receiver down"))
		}
		return nil
	}))
	h := web.NewHub(web.HubConfig{OutboxEvents: r.Events(), Logger: log})
	runCtx, cancel := context.WithCancel(ctx)
	relayDone, hubDone := make(chan error, 1), make(chan struct{})
	go func() { relayDone <- r.Run(runCtx) }()
	go func() { h.Run(runCtx); close(hubDone) }()
	srv := httptest.NewServer(web.New(web.Deps{Hub: h, Outbox: r, Logger: log}))
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-hubDone
		if err := <-relayDone; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	add := func(topic string) string {
		var id string
		err := r.Transaction(ctx, func(tx *gorm.DB) error {
			var err error
			id, err = outbox.Add(ctx, tx, outbox.Message{Topic: topic, Payload: map[string]string{"t": topic}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	return srv, add
}

// poll brings tab to the front, as a person looking at it would (hidden
// tabs put off their refreshes), and evaluates a JavaScript condition there
// until it is true, or fails the test after a generous bound (a hang, not a
// timing assertion).
func poll(t *testing.T, tab context.Context, what, js string) {
	t.Helper()
	var ok bool
	if err := chromedp.Run(tab, page.BringToFront(), chromedp.Poll(js, &ok,
		chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func rowStatus(id string) string {
	return `(function () { var r = document.querySelector('[data-testid="message"][data-id="` + id + `"]'); return r ? r.dataset.status : "" })()`
}

// TestBrowserOutboxTablesFollowTheRelay retries a dead letter in one tab and
// watches three open pages follow without a reload: the dead list loses the
// row (its answer stays), the full list shows it dispatched, the message's
// own page too, and a message committed later appears in the full list.
func TestBrowserOutboxTablesFollowTheRelay(t *testing.T) {
	browser := testenv.Browser(t)
	var up atomic.Bool
	srv, add := liveOutbox(t, &up)
	dead := add("flaky")

	ctx, cancel := context.WithTimeout(browser, 90*time.Second)
	defer cancel()
	deadList, all, detail := ctx, testenv.NewTab(t, ctx), testenv.NewTab(t, ctx)
	var errs consoleErrors
	for _, tab := range []context.Context{deadList, all, detail} {
		errs.watch(t, tab)
	}
	open(t, all, srv.URL+"/outbox")
	poll(t, all, "the full list shows the message dead", rowStatus(dead)+` === "dead"`)
	open(t, deadList, srv.URL+"/outbox?status=dead")
	open(t, detail, srv.URL+"/outbox/"+dead)

	up.Store(true)
	if err := chromedp.Run(deadList, chromedp.Click(`[data-testid="message"][data-id="`+dead+`"] [data-testid="retry"]`, chromedp.ByQuery)); err != nil {
		t.Fatalf("press Retry: %v", err)
	}
	poll(t, all, "the full list shows the retried message dispatched", rowStatus(dead)+` === "dispatched"`)
	poll(t, detail, "the message's page shows it dispatched",
		`document.querySelector('[data-testid="message-detail"]').dataset.status === "dispatched"`)
	poll(t, deadList, "the dead list loses the retried row",
		`!!document.querySelector('[data-testid="no-messages"]')`)
	var answer string
	if err := chromedp.Run(deadList, chromedp.Text(`#outbox-result`, &answer)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(answer, "retried "+dead) {
		t.Errorf("the pressing page's answer is %q after its table changed, want the retry named", answer)
	}

	// Keyboard focus stays on the same control of the same row across a
	// refresh.
	if err := chromedp.Run(all, chromedp.Evaluate(`document.querySelector('[data-testid="message"][data-id="`+dead+`"] a').focus()`, nil)); err != nil {
		t.Fatal(err)
	}
	later := add("ok")
	poll(t, all, "a message committed later appears in the full list", rowStatus(later)+` === "dispatched"`)
	var focused string
	if err := chromedp.Run(all, chromedp.Evaluate(`(function () { var a = document.activeElement; var r = a && a.closest('[data-id]'); return r ? r.dataset.id : a.tagName })()`, &focused)); err != nil {
		t.Fatal(err)
	}
	if focused != dead {
		t.Errorf("after a refresh the focus is on %q, want the link of row %s", focused, dead)
	}

	// A message deleted elsewhere: its open page says it is gone instead of
	// offering buttons for it.
	up.Store(false)
	gone := add("flaky")
	poll(t, all, "the second flaky message goes dead", rowStatus(gone)+` === "dead"`)
	open(t, detail, srv.URL+"/outbox/"+gone)
	req, err := http.NewRequest(http.MethodDelete, srv.URL+"/api/outbox/"+gone, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("DELETE: %s", resp.Status)
	}
	// The page reloads itself: wait across that navigation.
	wctx, wcancel := context.WithTimeout(detail, 15*time.Second)
	defer wcancel()
	if err := chromedp.Run(wctx, page.BringToFront(), chromedp.WaitVisible(`[data-testid="not-found"]`, chromedp.ByQuery)); err != nil {
		t.Fatalf("the deleted message's page does not say it is gone: %v", err)
	}

	if e := errs.list(); len(e) > 0 {
		t.Errorf("the pages logged %d errors, first: %s", len(e), e[0])
	}
	for name, tab := range map[string]context.Context{"dead list": deadList, "full list": all} {
		var noReload bool
		if err := chromedp.Run(tab, chromedp.Evaluate(`window.canalNoReload === true`, &noReload)); err != nil {
			t.Fatal(err)
		}
		if !noReload {
			t.Errorf("the %s page was reloaded; it should update in place", name)
		}
	}
}

// consoleErrors collects what pages report as errors: console.error (htmx
// logs its errors there) and uncaught exceptions.
type consoleErrors struct {
	mu   sync.Mutex
	errs []string
}

func (c *consoleErrors) watch(t *testing.T, tab context.Context) {
	t.Helper()
	if err := chromedp.Run(tab); err != nil { // the tab's target exists from here
		t.Fatal(err)
	}
	chromedp.ListenTarget(tab, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type != runtime.APITypeError {
				return
			}
			for _, a := range ev.Args {
				msg += string(a.Value) + a.Description + " "
			}
		case *runtime.EventExceptionThrown:
			msg = ev.ExceptionDetails.Error()
		default:
			return
		}
		c.mu.Lock()
		c.errs = append(c.errs, msg)
		c.mu.Unlock()
	})
}

func (c *consoleErrors) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...)
}

// TestBrowserJobRunsFollowRunNow presses Run now on a job's page and sees
// its run table gain the run without a reload.
func TestBrowserJobRunsFollowRunNow(t *testing.T) {
	browser := testenv.Browser(t)
	inst := servertest.Start(t, nil)
	ctx, cancel := context.WithTimeout(browser, 90*time.Second)
	defer cancel()
	open(t, ctx, inst.URL+"/jobs/cleanup")
	var before int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll('[data-testid="run"]').length`, &before)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Run(ctx, chromedp.Click(`[data-testid="trigger"]`, chromedp.ByQuery)); err != nil {
		t.Fatalf("press Run now: %v", err)
	}
	poll(t, ctx, "the run table gains the run",
		`document.querySelectorAll('[data-testid="run"]').length > `+strconv.Itoa(before)+` && window.canalNoReload === true`)
}
