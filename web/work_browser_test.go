package web_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
	"github.com/canalhq/canal/web"
	"github.com/chromedp/chromedp"
)

// liveWork serves the dashboard over a real processor on SQLite whose
// "email" kind fails until up is set; the hub takes its events.
func liveWork(t *testing.T, up *atomic.Bool) (*httptest.Server, *jobs.Processor) {
	t.Helper()
	ctx := context.Background()
	db := testenv.SQLite(t)
	if err := jobs.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	store, err := jobs.NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	p := jobs.NewProcessor(jobs.Config{Store: store, Workers: 2, Logger: log})
	if err := p.Register("report", time.Hour, false, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	err = p.RegisterKind("email", func(context.Context, jobs.WorkItem) error {
		if !up.Load() {
			return errors.New("smtp: 421 try again later")
		}
		return nil
	}, jobs.KindOptions{MaxAttempts: 2, BackoffBase: time.Millisecond, BackoffMax: 2 * time.Millisecond, BreakerFailures: -1})
	if err != nil {
		t.Fatal(err)
	}
	h := web.NewHub(web.HubConfig{JobEvents: p.Events(), JobHistory: p, Logger: log})
	runCtx, cancel := context.WithCancel(ctx)
	procDone, hubDone := make(chan error, 1), make(chan struct{})
	go func() { procDone <- p.Run(runCtx) }()
	go func() { h.Run(runCtx); close(hubDone) }()
	srv := httptest.NewServer(web.New(web.Deps{Hub: h, Jobs: p, Work: p, WorkActions: p, History: p, Logger: log}))
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-hubDone
		if err := <-procDone; err != nil {
			t.Errorf("processor: %v", err)
		}
	})
	return srv, p
}

// TestBrowserWorkItemPageAndRetry follows a failed item from the work list
// to its own page (payload, kind, priority, attempts, error) and retries it
// there: the page follows it to done without a reload.
func TestBrowserWorkItemPageAndRetry(t *testing.T) {
	browser := testenv.Browser(t)
	var up atomic.Bool
	srv, p := liveWork(t, &up)
	it, err := p.Enqueue(context.Background(), jobs.NewWork{Kind: "email", Priority: jobs.High, Payload: []byte(`{"to":"ops@example.com"}`)})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "the item fails", func() bool {
		w, err := p.Work(context.Background(), it.ID)
		return err == nil && w.State == jobs.WorkFailed
	})
	ctx, cancel := context.WithTimeout(browser, 90*time.Second)
	defer cancel()
	var errs consoleErrors
	errs.watch(t, ctx)
	open(t, ctx, srv.URL+"/work?state=failed")
	var detail, payload, kind, prio, attempts, lastErr string
	if err := chromedp.Run(ctx,
		chromedp.Click(`[data-testid="work-item"][data-id="`+it.ID+`"] [data-testid="work-link"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`[data-testid="work-detail"]`),
		chromedp.WaitVisible(live),
		chromedp.Evaluate(`location.pathname`, &detail),
		chromedp.Text(`[data-testid="payload"]`, &payload),
		chromedp.Text(`[data-testid="work-kind"]`, &kind),
		chromedp.Text(`[data-testid="work-priority"]`, &prio),
		chromedp.Text(`[data-testid="work-attempts"]`, &attempts),
		chromedp.Text(`[data-testid="last-error"]`, &lastErr),
	); err != nil {
		t.Fatalf("open the item's page from the list: %v", err)
	}
	if detail != "/work/"+it.ID || !strings.Contains(payload, `"to": "ops@example.com"`) || kind != "email" || prio != "high" ||
		attempts != "2 of 2" || !strings.Contains(lastErr, "smtp: 421") {
		t.Errorf("item page %s: payload %q kind %q priority %q attempts %q error %q", detail, payload, kind, prio, attempts, lastErr)
	}
	// Every attempt, with its number, error and duration.
	var rows []string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`[...document.querySelectorAll('[data-testid="attempt"]')].map(li =>
		li.querySelector('.n').textContent + '|' + (li.querySelector('[data-testid="attempt-error"]')?.textContent ?? '') + '|' +
		li.querySelector('[data-testid="attempt-duration"]').textContent)`, &rows)); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Errorf("attempts shown %q, want 2", rows)
	}
	for i, r := range rows {
		parts := strings.Split(r, "|")
		if len(parts) != 3 || parts[0] != fmt.Sprintf("#%d", i+1) || !strings.Contains(parts[1], "smtp: 421") || strings.TrimSpace(parts[2]) == "" {
			t.Errorf("attempt %d shown as %q, want #%d, its error and a duration", i+1, r, i+1)
		}
	}
	shot(t, ctx, "work-item-failed.png")

	up.Store(true)
	var answer string
	if err := chromedp.Run(ctx,
		chromedp.Click(`[data-testid="work-retry"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#work-item-result [data-testid="result"]`),
		chromedp.Text(`#work-item-result`, &answer),
	); err != nil {
		t.Fatalf("press Retry: %v", err)
	}
	if !strings.Contains(answer, "retried "+it.ID) {
		t.Errorf("Retry answered %q", answer)
	}
	poll(t, ctx, "the item's page follows it to done", `document.querySelector('[data-testid="work-detail"]').dataset.state === "done"`)
	var retries int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll('[data-testid="work-retry"]').length`, &retries)); err != nil {
		t.Fatal(err)
	}
	if retries != 0 {
		t.Error("a done item still offers Retry")
	}
	var n, errsShown int
	if err := chromedp.Run(ctx,
		chromedp.Evaluate(`document.querySelectorAll('[data-testid="attempt"]').length`, &n),
		chromedp.Evaluate(`document.querySelectorAll('[data-testid="attempt-error"]').length`, &errsShown),
	); err != nil {
		t.Fatal(err)
	}
	if n != 3 || errsShown != 2 {
		t.Errorf("after the retry: %d attempts, %d with an error; want 3 and 2 (the third succeeded)", n, errsShown)
	}
	// A fresh budget after the retry, read as such (it once read "3/2").
	if err := chromedp.Run(ctx, chromedp.Text(`[data-testid="work-attempts"]`, &attempts)); err != nil {
		t.Fatal(err)
	}
	if attempts != "1 of 2 since retry · 2 before" {
		t.Errorf("attempts after the retry read %q", attempts)
	}
	shot(t, ctx, "work-item-done.png")
	if e := errs.list(); len(e) > 0 {
		t.Errorf("console errors: %q", e)
	}
}

// TestBrowserIntervalEdit changes a job's interval on its page: nonsense is
// refused where it was typed, saying why; a good value is taken and the
// job's card shows it.
func TestBrowserIntervalEdit(t *testing.T) {
	browser := testenv.Browser(t)
	var up atomic.Bool
	srv, p := liveWork(t, &up)
	ctx, cancel := context.WithTimeout(browser, 60*time.Second)
	defer cancel()
	open(t, ctx, srv.URL+"/jobs/report")
	set := func(v string) string {
		var answer string
		if err := chromedp.Run(ctx,
			chromedp.SetValue(`[data-testid="interval-input"]`, v, chromedp.ByQuery),
			chromedp.Evaluate(`document.querySelector('#interval-result').replaceChildren()`, nil),
			chromedp.Click(`[data-testid="interval-set"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`#interval-result [data-testid="result"]`),
			chromedp.Text(`#interval-result`, &answer),
		); err != nil {
			t.Fatalf("set interval %q: %v", v, err)
		}
		return answer
	}
	for _, bad := range []struct{ value, says string }{{"100000h", "at most 168h"}, {"10ms", "below 100ms"}, {"soon", "duration such as"}} {
		if got := set(bad.value); !strings.Contains(got, bad.says) || !strings.HasPrefix(got, "✗") {
			t.Errorf("interval %q answered %q, want a refusal saying %q", bad.value, got, bad.says)
		}
	}
	shot(t, ctx, "interval-refused.png")
	if got := set("2s"); !strings.Contains(got, "every 2s") {
		t.Errorf("interval 2s answered %q", got)
	}
	st, err := p.Status(context.Background(), "report")
	if err != nil || st.Interval != 2*time.Second {
		t.Errorf("the job's interval is %s (%v), want 2s", st.Interval, err)
	}
	poll(t, ctx, "the card shows the new interval", `document.querySelector('`+reportCard+`').textContent.includes("2s")`)
}
