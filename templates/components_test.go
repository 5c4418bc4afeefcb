package templates

import (
	"bytes"
	"context"
	"fmt"
	"github.com/canalhq/canal/web/auth"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/a-h/templ"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
)

// operator renders as an operator sees pages: with the buttons.
var operator = auth.WithPrincipal(context.Background(), auth.Principal{Name: "op", Role: auth.Operator})

func render(t *testing.T, c templ.Component) *goquery.Document {
	t.Helper()
	var buf bytes.Buffer
	if err := c.Render(operator, &buf); err != nil {
		t.Fatalf("render: %v", err)
	}
	d, err := goquery.NewDocumentFromReader(&buf)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return d
}

func TestJobCardStates(t *testing.T) {
	for _, tc := range []struct {
		s                 jobs.Status
		state             string
		startOff, stopOff bool
		showsErr          bool
	}{
		{jobs.Status{Name: "a", Running: true}, "running", true, false, false},
		{jobs.Status{Name: "b", Running: true, LastError: "boom", Failures: 3}, "failing", true, false, true},
		{jobs.Status{Name: "c"}, "stopped", false, true, false},
	} {
		d := render(t, JobCard(tc.s, false))
		card := d.Find(`[data-testid="job-card"]`)
		if got := card.Find(`[data-testid="job-state"]`).Text(); got != tc.state {
			t.Errorf("%s: state %q, want %q", tc.s.Name, got, tc.state)
		}
		if _, off := card.Find(`[data-testid="start"]`).Attr("disabled"); off != tc.startOff {
			t.Errorf("%s: Start disabled = %v", tc.s.Name, off)
		}
		if _, off := card.Find(`[data-testid="stop"]`).Attr("disabled"); off != tc.stopOff {
			t.Errorf("%s: Stop disabled = %v", tc.s.Name, off)
		}
		if got := card.Find(`[data-testid="last-error"]`).Length() == 1; got != tc.showsErr {
			t.Errorf("%s: shows error = %v", tc.s.Name, got)
		}
		if _, oob := card.Attr("hx-swap-oob"); oob {
			t.Errorf("%s: first-load card is marked out of band", tc.s.Name)
		}
	}
}

func TestJobCardIsTheSameForPageAndSocket(t *testing.T) {
	s := jobs.Status{Name: "report", Running: true, Executions: 1234567}
	page := render(t, JobCard(s, false)).Find(`[data-testid="job-card"]`)
	live := render(t, JobCard(s, true)).Find(`[data-testid="job-card"]`)
	if oob, _ := live.Attr("hx-swap-oob"); oob != "true" {
		t.Errorf("live card's hx-swap-oob = %q", oob)
	}
	if page.AttrOr("id", "") != live.AttrOr("id", "x") || page.AttrOr("id", "") != JobCardID("report") {
		t.Errorf("ids differ: %q vs %q", page.AttrOr("id", ""), live.AttrOr("id", ""))
	}
	if got := live.Find(`[data-testid="executions"]`).Text(); got != "1,234,567" {
		t.Errorf("executions = %q", got)
	}
	if live.Find("form").AttrOr("hx-target", "") != "#"+JobResultID("report") {
		t.Error("buttons do not answer into the job's result line")
	}
}

func TestOutboxPanelAlarms(t *testing.T) {
	d := render(t, OutboxPanel(&outbox.Stats{Pending: 12, Dead: 3, OldestPendingSeconds: 90, LatencyP99Ms: 12.5, DispatchRate: 1500}, true))
	p := d.Find(`[data-testid="outbox-stats"]`)
	for id, want := range map[string]string{"pending": "12", "dead": "3", "oldest": "1m30s", "p99": "12 ms", "rate": "1,500"} {
		if got := p.Find(`[data-testid="` + id + `"]`).Text(); got != want {
			t.Errorf("%s = %q, want %q", id, got, want)
		}
	}
	if !p.Find(`[data-testid="dead"]`).Parent().HasClass("alarm") {
		t.Error("dead letters are not an alarm")
	}
	if p.Find(`[data-testid="dead-link"]`).AttrOr("href", "") != "/outbox?status=dead" {
		t.Error("no link to the dead letters")
	}
	if render(t, OutboxPanel(nil, false)).Find(`[data-testid="dead"]`).Length() != 0 {
		t.Error("a nil snapshot shows numbers")
	}
}

func TestFeedShowsWhatItIsGiven(t *testing.T) {
	var items []FeedItem
	for i := range 5 {
		items = append(items, FeedItem{At: time.Now(), Type: "job.run.failed", Subject: fmt.Sprint("job", i), Text: "x", Bad: i%2 == 0, Link: "/jobs/x"})
	}
	d := render(t, Feed(items, true))
	li := d.Find(`[data-testid="feed-item"]`)
	if li.Length() != 5 || d.Find(`li.bad`).Length() != 3 {
		t.Errorf("%d items, %d bad", li.Length(), d.Find(`li.bad`).Length())
	}
	if li.First().Find("a").Text() != "job0" {
		t.Errorf("first item %q", li.First().Text())
	}
}

func TestChartDrawsEverySeries(t *testing.T) {
	s := Series{Bucket: 5 * time.Second, JobRuns: []int64{0, 5, 10}, Work: []int64{1, 1, 1}, Outbox: []int64{50, 100, 25}, Failures: []int64{0, 0, 5}}
	d := render(t, Chart(s, true))
	for _, id := range []string{"line-outbox", "line-jobs", "line-work", "line-fail"} {
		pts := strings.Fields(d.Find(`[data-testid="`+id+`"]`).AttrOr("points", ""))
		if len(pts) != 3 {
			t.Errorf("%s has %d points, want 3", id, len(pts))
		}
	}
	if got := d.Find(`[data-testid="chart-max"]`).Text(); got != "20/s" {
		t.Errorf("chart max = %q, want 20/s (100 in 5s)", got)
	}
	// The highest value touches the top margin, zero sits on the bottom.
	pts := strings.Fields(d.Find(`[data-testid="line-outbox"]`).AttrOr("points", ""))
	if pts[1] != "300.0,8.0" {
		t.Errorf("peak point = %s", pts[1])
	}
}

func TestWallPageHasNoControlsAndABanner(t *testing.T) {
	v := View{
		Jobs:          []jobs.Status{{Name: "a", Running: true}, {Name: "b", Running: true, LastError: "x"}},
		Outbox:        &outbox.Stats{Pending: 4, Inflight: 1, OldestPendingSeconds: 2},
		Queue:         &jobs.QueueStats{Depths: map[string]int{"critical": 1, "low": 9}, Capacity: 10},
		Failures:      []FeedItem{{Subject: "b", Text: "x"}},
		FailureCount:  1,
		FailureWindow: 10 * time.Minute,
		Series:        Series{Bucket: 5 * time.Second, Outbox: make([]int64, 120), JobRuns: make([]int64, 120), Work: make([]int64, 120), Failures: make([]int64, 120)},
	}
	for range 20 {
		v.Failures = append(v.Failures, FeedItem{Subject: "b", Text: "x"})
	}
	d := render(t, WallPage(v))
	if d.Find("button, form, input, select").Length() != 0 {
		t.Error("the wall has controls")
	}
	if d.Find(`[data-conn-banner]`).Length() != 1 {
		t.Error("no connection banner")
	}
	if got := d.Find(`[data-testid="wall-job"][data-state="failing"]`).Length(); got != 1 {
		t.Errorf("%d failing tiles, want 1", got)
	}
	if got := d.Find(`[data-testid="backlog"]`).Text(); got != "5" {
		t.Errorf("backlog = %q, want 5 (pending + in flight)", got)
	}
	if got := d.Find(`[data-testid="wall-failure"]`).Length(); got != wallFailuresShown {
		t.Errorf("%d failure lines, want at most %d", got, wallFailuresShown)
	}
	if got := d.Find(`[data-testid="wall-queue"]`).Length(); got != 4 {
		t.Errorf("%d queue rows, want one per priority", got)
	}
	if d.Find(".all-clear").Length() != 0 {
		t.Error("all clear with a failure in the window")
	}
	if !strings.Contains(d.Find("h2").Text(), "10 min") {
		t.Error("the failure window is not named")
	}
}

func TestNotFoundAndResult(t *testing.T) {
	d := render(t, NotFound("There is no job named x.", "/", "Overview"))
	if !strings.Contains(d.Find(`[data-testid="not-found"]`).Text(), "no job named x") {
		t.Error("404 page does not say what is missing")
	}
	r := render(t, Result(false, "stop \"x\": job is not running")).Find(`[data-testid="result"]`)
	if r.AttrOr("data-ok", "") != "false" || !strings.Contains(r.Text(), "not running") {
		t.Errorf("result = %q", r.Text())
	}
}

func TestMessageButtonsOnlyWhereTheyApply(t *testing.T) {
	for st, want := range map[outbox.Status][2]int{
		outbox.StatusDead: {1, 1}, outbox.StatusPending: {1, 0}, outbox.StatusDispatched: {0, 0}, outbox.StatusInflight: {0, 0},
	} {
		d := render(t, MessageButtons("id1", st, "#r"))
		if got := [2]int{d.Find(`[data-testid="retry"]`).Length(), d.Find(`[data-testid="delete"]`).Length()}; got != want {
			t.Errorf("%s: retry/delete = %v, want %v", st, got, want)
		}
		if del := d.Find(`[data-testid="delete"]`); del.Length() == 1 && del.AttrOr("hx-confirm", "") == "" {
			t.Errorf("%s: Delete is not confirmed", st)
		}
	}
}

func TestNumbers(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", -1234567: "-1,234,567"} {
		if got := num(in); got != want {
			t.Errorf("num(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestLivePagesCarryAHiddenConnectionBanner(t *testing.T) {
	live := render(t, Overview(View{}))
	if b := live.Find(`header [data-conn-banner][data-testid="banner"]`); b.Length() != 1 || b.AttrOr("hidden", "no") == "no" {
		t.Errorf("a live page should carry one hidden banner in its header, found %d", b.Length())
	}
	still := render(t, NotFound("gone", "/", "Overview"))
	if still.Find(`[data-conn-banner]`).Length() != 0 {
		t.Error("a page without a socket has a connection banner")
	}
}

// Every page region that can change has an id canal.js can re-read it by
// and says what changes it; forms stay outside (typing is never undone) and
// button answers outside or preserved.
func TestLiveRegions(t *testing.T) {
	rec := outbox.Record{ID: "m 1", Topic: "t", Status: outbox.StatusDead}
	runs := jobs.RunPage{Runs: []jobs.JobRun{{ID: 1}}, Next: 1}
	tests := []struct {
		name     string
		page     templ.Component
		id       string
		kind     string
		liveID   string
		noInside []string
	}{
		{"outbox table", OutboxPage(nil, OutboxFilter{}, outbox.Page{Items: []outbox.Record{rec}}, 1, nil), "outbox-live", "outbox", "",
			[]string{"form.filters", "#outbox-result", "output"}},
		{"message", OutboxMessage(rec, 1), "message-live", "outbox", "m 1", nil},
		{"newest runs", JobPage(jobs.Status{Name: "report"}, runs, 0, 1), "runs-live", "job", "report", nil},
		{"work items", WorkPage(View{}, nil, WorkFilter{}, jobs.WorkPage{}), "work-live", "work", "", []string{"form", "input"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := render(t, tc.page)
			if d.Find(`body > #changes[hidden]`).Length() != 1 {
				t.Error("a live page needs one hidden #changes for the hub's marks")
			}
			r := d.Find("#" + tc.id)
			if r.Length() != 1 {
				t.Fatalf("no #%s region", tc.id)
			}
			if got := r.AttrOr("data-live", ""); got != tc.kind {
				t.Errorf("data-live = %q, want %q", got, tc.kind)
			}
			if got := r.AttrOr("data-live-id", ""); got != tc.liveID {
				t.Errorf("data-live-id = %q, want %q", got, tc.liveID)
			}
			for _, sel := range tc.noInside {
				if r.Find(sel).Length() != 0 {
					t.Errorf("%s is inside the region: a refresh would undo it", sel)
				}
			}
			if out := r.Find("output"); out.Length() > 0 && out.AttrOr("hx-preserve", "") != "true" {
				t.Error("a button's answer inside a region must be preserved across refreshes")
			}
		})
	}
	// Older runs never change: that page has no live region.
	if d := render(t, JobPage(jobs.Status{Name: "report"}, runs, 5, 1)); d.Find("#runs-live").AttrOr("data-live", "") != "" {
		t.Error("an older page of runs is marked live")
	}
	// Row buttons answer above the table, outside the region.
	d := render(t, OutboxPage(nil, OutboxFilter{}, outbox.Page{Items: []outbox.Record{rec}}, 1, nil))
	if got := d.Find(`#outbox-live [data-testid="retry"]`).Closest("form").AttrOr("hx-target", ""); got != "#outbox-result" {
		t.Errorf("row buttons answer in %q, want #outbox-result", got)
	}
}

func TestChangesNameWhatChanged(t *testing.T) {
	d := render(t, Changes(Changed{Outbox: []string{"a", "b"}, Jobs: []string{"report"}, Work: true}))
	wrap := d.Find(`[hx-swap-oob]`)
	if got := wrap.AttrOr("hx-swap-oob", ""); got != "beforeend:#changes" {
		t.Fatalf("hx-swap-oob = %q: marks must be appended, or joined frames lose them", got)
	}
	var got []string
	wrap.Find("i").Each(func(_ int, s *goquery.Selection) {
		got = append(got, s.AttrOr("data-live", "")+":"+s.AttrOr("data-id", "*"))
	})
	if want := []string{"outbox:a", "outbox:b", "job:report", "work:*"}; !slices.Equal(got, want) {
		t.Errorf("marks %v, want %v", got, want)
	}
	d = render(t, Changes(Changed{AllOutbox: true, AllJobs: true}))
	got = got[:0]
	d.Find("i").Each(func(_ int, s *goquery.Selection) {
		got = append(got, s.AttrOr("data-live", "")+":"+s.AttrOr("data-id", "*"))
	})
	if want := []string{"outbox:*", "job:*"}; !slices.Equal(got, want) {
		t.Errorf("marks %v, want %v", got, want)
	}
}

func TestStatNumbersSayHowWideTheyAre(t *testing.T) {
	d := render(t, OutboxPanel(&outbox.Stats{Pending: outbox.CountCap, Inflight: 3, OldestPendingSeconds: 3*24*3600 + 1}, false))
	width := func(testid string) float64 {
		style := d.Find(`[data-testid="`+testid+`"]`).AttrOr("style", "")
		w, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(style, "--chars:"), ";"), 64)
		if err != nil {
			t.Fatalf("%s: style %q", testid, style)
		}
		return w
	}
	// "3" is floored at three digits; "100,000+" is six digits, a narrow
	// comma and a plus; "72h0m1s" has letters, each wider than a digit.
	if short, long := width("inflight"), width("pending"); short != 3 || long < 7.5 {
		t.Errorf("--chars of %q = %v and of %q = %v; want 3 and at least 7.5",
			d.Find(`[data-testid="inflight"]`).Text(), short, d.Find(`[data-testid="pending"]`).Text(), long)
	}
	if oldest := d.Find(`[data-testid="oldest"]`).Text(); width("oldest") <= float64(len(oldest)) {
		t.Errorf("--chars of %q = %v, want more than its %d characters", oldest, width("oldest"), len(oldest))
	}
}

// A viewer's pages have no buttons; the same components show them to an
// operator (render above).
func TestViewerSeesNoButtons(t *testing.T) {
	viewer := auth.WithPrincipal(context.Background(), auth.Principal{Name: "v", Role: auth.Viewer})
	dead := outbox.Record{ID: "m1", Topic: "order.placed", Status: outbox.StatusDead}
	for name, c := range map[string]templ.Component{
		"job card":        JobCard(jobs.Status{Name: "report", Running: true}, false),
		"message buttons": MessageButtons("m1", outbox.StatusDead, "#r"),
		"outbox page":     OutboxPage(nil, OutboxFilter{Status: "dead"}, outbox.Page{Items: []outbox.Record{dead}}, 1, nil),
		"message page":    OutboxMessage(dead, 1),
	} {
		var buf bytes.Buffer
		if err := c.Render(viewer, &buf); err != nil {
			t.Fatal(err)
		}
		d, _ := goquery.NewDocumentFromReader(&buf)
		if n := d.Find("form[method=post] button, [hx-post]").Length(); n != 0 {
			t.Errorf("%s: a viewer sees %d buttons", name, n)
		}
		if n := render(t, c).Find("[hx-post]").Length(); n == 0 {
			t.Errorf("%s: an operator sees no buttons", name)
		}
	}
}

// A work item's attempts read against its budget; a retry by hand gives a
// fresh budget, so the count starts again and says how many came before
// (never "3/2").
func TestWorkAttemptsReadAgainstTheBudget(t *testing.T) {
	for _, tc := range []struct {
		it   jobs.WorkItem
		want string
	}{
		{jobs.WorkItem{State: jobs.WorkPending, MaxAttempts: 5}, "0 of 5"},
		{jobs.WorkItem{State: jobs.WorkRunning, Attempts: 1, MaxAttempts: 5}, "1 of 5"},
		{jobs.WorkItem{State: jobs.WorkRetrying, Attempts: 2, Failures: 2, MaxAttempts: 5}, "2 of 5"},
		{jobs.WorkItem{State: jobs.WorkFailed, Attempts: 2, Failures: 2, MaxAttempts: 2}, "2 of 2"},
		{jobs.WorkItem{State: jobs.WorkDone, Attempts: 1, MaxAttempts: 2}, "1 of 2"},
		// Retried by hand after two failures.
		{jobs.WorkItem{State: jobs.WorkPending, Attempts: 2, MaxAttempts: 2}, "0 of 2 since retry · 2 before"},
		{jobs.WorkItem{State: jobs.WorkRunning, Attempts: 3, MaxAttempts: 2}, "1 of 2 since retry · 2 before"},
		{jobs.WorkItem{State: jobs.WorkDone, Attempts: 3, MaxAttempts: 2}, "1 of 2 since retry · 2 before"},
		{jobs.WorkItem{State: jobs.WorkFailed, Attempts: 4, Failures: 2, MaxAttempts: 2}, "2 of 2 since retry · 2 before"},
		{jobs.WorkItem{State: jobs.WorkDone, Attempts: 2, Failures: 1}, "2"},
	} {
		tc.it.ID = "w1"
		row := render(t, WorkList(nil, WorkFilter{}, jobs.WorkPage{Items: []jobs.WorkItem{tc.it}})).Find(`[data-testid="attempts"]`).Text()
		page := render(t, WorkItemBody(tc.it, nil, false)).Find(`[data-testid="work-attempts"]`).Text()
		if row != tc.want || page != tc.want {
			t.Errorf("%s, %d attempts, %d failures of %d: row %q, page %q; want %q", tc.it.State, tc.it.Attempts, tc.it.Failures, tc.it.MaxAttempts, row, page, tc.want)
		}
	}
}

// A work item's page says who enqueued it, or that nobody said.
func TestWorkItemSaysWhoEnqueuedIt(t *testing.T) {
	for _, tc := range []struct{ by, want string }{
		{"POST /api/work by ops (request r1)", "POST /api/work by ops (request r1)"},
		{"", "not recorded"},
	} {
		it := jobs.WorkItem{ID: "w1", State: jobs.WorkDone, EnqueuedBy: tc.by}
		got := render(t, WorkItemBody(it, nil, false)).Find(`[data-testid="work-enqueued-by"]`).Text()
		if !strings.Contains(got, tc.want) {
			t.Errorf("enqueued by %q: page says %q, want %q", tc.by, got, tc.want)
		}
	}
}

// The running tab says what it counts: claimed items, some of which may
// wait for a free worker.
func TestRunningTabSaysItCountsClaims(t *testing.T) {
	counts := map[jobs.WorkState]jobs.Count{jobs.WorkRunning: {N: 17}}
	doc := render(t, WorkList(counts, WorkFilter{}, jobs.WorkPage{}))
	tab := doc.Find(`[data-testid="work-states"] a[href="/work?state=running"]`)
	if title, _ := tab.Attr("title"); !strings.Contains(title, "claimed") || !strings.Contains(tab.Text(), "running · 17") {
		t.Fatalf("running tab %q, title %q: want the count and what it counts", tab.Text(), title)
	}
	if _, ok := doc.Find(`[data-testid="work-states"] a[href="/work?state=done"]`).Attr("title"); ok {
		t.Fatal("the done tab has a title: only counts that could mislead say more")
	}
}

// The outbox panel shows each destination with its breaker: up, probing or
// down; none when the relay has sent nothing.
func TestOutboxPanelShowsDestinations(t *testing.T) {
	st := &outbox.Stats{Destinations: []outbox.Destination{
		{Name: "amqp", State: outbox.BreakerClosed, StateName: "closed"},
		{Name: "redis", State: outbox.BreakerOpen, StateName: "open"},
	}}
	for name, c := range map[string]templ.Component{"panel": OutboxPanel(st, false), "wall": WallOutbox(st, false)} {
		d := render(t, c)
		got := map[string]string{}
		d.Find(`[data-testid="destination"]`).Each(func(_ int, s *goquery.Selection) {
			got[s.AttrOr("data-destination", "")] = s.AttrOr("data-state", "") + " " + strings.TrimSpace(s.Text())
		})
		if got["amqp"] != "closed amqp · up" || got["redis"] != "open redis · down" || len(got) != 2 {
			t.Errorf("%s: destinations %v", name, got)
		}
	}
	if render(t, OutboxPanel(&outbox.Stats{}, false)).Find(`[data-testid="destinations"]`).Length() != 0 {
		t.Error("destinations shown with none")
	}
}

// A fan-out message's page says which destinations already have it.
func TestMessagePageSaysWhereItWasDelivered(t *testing.T) {
	d := render(t, OutboxMessageBody(outbox.Record{ID: "m1", Topic: "t", Status: outbox.StatusPending, DeliveredTo: []string{"amqp", "nats"}}))
	if got := strings.TrimSpace(d.Find(`[data-testid="delivered-to"]`).Text()); got != "amqp, nats" {
		t.Errorf("delivered to %q, want %q", got, "amqp, nats")
	}
	if render(t, OutboxMessageBody(outbox.Record{ID: "m2", Topic: "t"})).Find(`[data-testid="delivered-to"]`).Length() != 0 {
		t.Error("delivered-to shown for a message with no fan-out state")
	}
}
