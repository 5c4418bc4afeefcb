package web_test

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/canalhq/canal/server/servertest"
	"github.com/canalhq/canal/testenv"
)

// quietAfterDemo runs the demo until something failed and messages went
// out, then serves the same database without it (a webhook that accepts
// everything delivers what is left) and waits until nothing is left to do:
// every figure then stays put. It returns the quiet instance, the flags
// that start it again, and when the demo stopped.
func quietAfterDemo(t *testing.T) (*servertest.Instance, []string, time.Time) {
	t.Helper()
	db := filepath.Join(t.TempDir(), "canal.db")
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(sink.Close)
	demo := servertest.Start(t, nil, "-db", db)
	// The demo's report job fails one run in ten: run it by hand until one
	// has failed.
	testenv.Eventually(t, 60*time.Second, "a run of the demo has failed and messages went out", func() bool {
		var v struct {
			FailureCount int
			Throughput   struct {
				Totals struct{ OutboxDispatched int }
			}
		}
		getJSON(t, demo.URL+"/api/dashboard", &v)
		if v.FailureCount > 0 && v.Throughput.Totals.OutboxDispatched > 0 {
			return true
		}
		resp, err := http.Post(demo.URL+"/api/jobs/report/trigger", "", nil)
		if err == nil {
			resp.Body.Close()
		}
		return false
	})
	if err := demo.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	quiet := []string{"-db", db, "-demo=false", "-webhook-url", sink.URL}
	inst := servertest.Start(t, nil, quiet...)
	testenv.Eventually(t, 60*time.Second, "nothing is left to do", func() bool {
		var w struct{ Counts map[string]struct{ N int } }
		var o struct{ Pending, Inflight int }
		getJSON(t, inst.URL+"/api/work", &w)
		getJSON(t, inst.URL+"/api/outbox/stats", &o)
		return w.Counts["pending"].N+w.Counts["running"].N+w.Counts["retrying"].N+o.Pending+o.Inflight == 0
	})
	// And the hub has read the stored history since (its windows are
	// those of the store, not only of what it saw live).
	settled := time.Now()
	testenv.Eventually(t, 60*time.Second, "the hub has read the stored history", func() bool {
		var v struct{ HistoryAt time.Time }
		getJSON(t, inst.URL+"/api/dashboard", &v)
		return v.HistoryAt.After(settled)
	})
	return inst, quiet, stopped
}

// htmlPage fetches an HTML page.
func htmlPage(t *testing.T, url string) *goquery.Document {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	d, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// apiValue reads a JSON answer and follows a dotted path into it.
func apiValue(t *testing.T, url, path string) string {
	t.Helper()
	var v any
	getJSON(t, url, &v)
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: no %s in the answer", url, path)
		}
		v = m[k]
	}
	return fmt.Sprint(v)
}

// figureText is a shown figure as a plain number ("1,234" reads 1234).
func figureText(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), ",", "") }

// TestFiguresAgreeEverywhere reads each figure from every place that shows
// it (the overview, the wall, the lists and the JSON API) and wants one
// value. A figure whose sources disagree, or that a page no longer shows,
// fails the test.
func TestFiguresAgreeEverywhere(t *testing.T) {
	inst, quiet, _ := quietAfterDemo(t)
	t.Run("running", func(t *testing.T) { figuresAgree(t, inst.URL) })
	// A restarted Canal reads every figure from the same database: the
	// same everywhere again, the API's included.
	if err := inst.Stop(); err != nil {
		t.Fatal(err)
	}
	again := servertest.Start(t, nil, quiet...)
	settled := time.Now()
	// Settled: the hub has read the stored history and has the relay's
	// first snapshot (sent as the relay starts, beside the hub).
	testenv.Eventually(t, 60*time.Second, "the restarted hub has read the stored history and the relay's snapshot", func() bool {
		var v struct {
			HistoryAt time.Time
			Outbox    *struct{}
		}
		getJSON(t, again.URL+"/api/dashboard", &v)
		return v.HistoryAt.After(settled) && v.Outbox != nil
	})
	t.Run("restarted", func(t *testing.T) { figuresAgree(t, again.URL) })
}

// figuresAgree reads each figure of the Canal at u from every place that
// shows it and wants one value.
func figuresAgree(t *testing.T, u string) {
	overview, wall, work, dead := htmlPage(t, u+"/"), htmlPage(t, u+"/wall"), htmlPage(t, u+"/work"), htmlPage(t, u+"/outbox?status=dead")
	text := func(d *goquery.Document, sel string) func() string {
		return func() string {
			s := d.Find(sel)
			if s.Length() != 1 {
				t.Errorf("%s matches %d elements, want 1", sel, s.Length())
			}
			return figureText(s.Text())
		}
	}
	api := func(url, path string) func() string { return func() string { return apiValue(t, u+url, path) } }
	sum := func(fs ...func() string) func() string {
		return func() string {
			n := 0
			for _, f := range fs {
				v, err := strconv.Atoi(f())
				if err != nil {
					t.Errorf("not a number: %v", err)
				}
				n += v
			}
			return strconv.Itoa(n)
		}
	}
	tab := func(state string) func() string {
		return func() string {
			label := work.Find(`[data-testid="work-states"] a[href="/work?state=` + state + `"]`).Text()
			_, n, ok := strings.Cut(label, "· ")
			if !ok {
				t.Errorf("work tab %q shows no count: %q", state, label)
			}
			return figureText(n)
		}
	}
	for _, fig := range []struct {
		name    string
		sources map[string]func() string
	}{
		{"failures in the window", map[string]func() string{
			"wall count":          text(wall, `[data-testid="failure-count"]`),
			"wall chart total":    text(wall, `[data-testid="total-failures"]`),
			"overview chart":      text(overview, `[data-testid="total-failures"]`),
			"api failureCount":    api("/api/dashboard", "failureCount"),
			"api throughput sums": api("/api/dashboard", "throughput.totals.failures"),
		}},
		{"outbox dispatched in the window", map[string]func() string{
			"wall":     text(wall, `[data-testid="total-outbox"]`),
			"overview": text(overview, `[data-testid="total-outbox"]`),
			"api":      api("/api/dashboard", "throughput.totals.outboxDispatched"),
		}},
		{"job runs in the window", map[string]func() string{
			"wall":     text(wall, `[data-testid="total-runs"]`),
			"overview": text(overview, `[data-testid="total-runs"]`),
			"api":      api("/api/dashboard", "throughput.totals.jobRuns"),
		}},
		{"work done in the window", map[string]func() string{
			"wall":     text(wall, `[data-testid="total-work"]`),
			"overview": text(overview, `[data-testid="total-work"]`),
			"api":      api("/api/dashboard", "throughput.totals.workDone"),
		}},
		{"dead letters", map[string]func() string{
			"wall":           text(wall, `#wall-outbox [data-testid="dead"]`),
			"overview":       text(overview, `#outbox-stats [data-testid="dead"]`),
			"outbox page":    text(dead, `#outbox-stats [data-testid="dead"]`),
			"dead list rows": func() string { return strconv.Itoa(dead.Find(`[data-testid="message"]`).Length()) },
			"api stats":      api("/api/outbox/stats", "dead"),
			"api dashboard":  api("/api/dashboard", "outbox.dead"),
		}},
		{"outbox backlog", map[string]func() string{
			"wall":      text(wall, `#wall-outbox [data-testid="backlog"]`),
			"overview":  sum(text(overview, `#outbox-stats [data-testid="pending"]`), text(overview, `#outbox-stats [data-testid="inflight"]`)),
			"api stats": sum(api("/api/outbox/stats", "pending"), api("/api/outbox/stats", "inflight")),
		}},
		{"work items done, stored", map[string]func() string{
			"work tab":  tab("done"),
			"api":       api("/api/work", "counts.done.n"),
			"api queue": api("/api/queue", "queue.counts.done.n"),
		}},
		{"work items failed, stored", map[string]func() string{
			"work tab":  tab("failed"),
			"api":       api("/api/work?state=failed", "counts.failed.n"),
			"api queue": api("/api/queue", "queue.counts.failed.n"),
		}},
		{"work items dropped, stored", map[string]func() string{
			"work tab":  tab("dropped"),
			"api queue": api("/api/queue", "queue.counts.dropped.n"),
		}},
	} {
		t.Run(fig.name, func(t *testing.T) {
			seen := map[string][]string{}
			for where, read := range fig.sources {
				v := read()
				seen[v] = append(seen[v], where)
			}
			if len(seen) != 1 {
				b, _ := json.Marshal(seen)
				t.Errorf("%s disagrees: %s", fig.name, b)
			}
		})
	}

	// The dispatch rate and the latency slide with the clock (a minute
	// back from each snapshot): read every place again until one reading
	// agrees, which it cannot while one of them counts only this process.
	for _, fig := range []struct{ name, testid, field string }{
		{"outbox dispatch rate", "rate", "dispatchRate"},
		{"outbox p99 latency", "p99", "latencyP99Ms"},
	} {
		t.Run(fig.name, func(t *testing.T) {
			var seen map[string][]string
			ok := false
			for range 40 {
				seen = map[string][]string{}
				for where, read := range map[string]func() string{
					"overview": func() string {
						return htmlPage(t, u+"/").Find(`#outbox-stats [data-testid="` + fig.testid + `"]`).Text()
					},
					"wall": func() string {
						return htmlPage(t, u+"/wall").Find(`#wall-outbox [data-testid="` + fig.testid + `"]`).Text()
					},
					"api stats":     func() string { return shown(fig.testid, apiValue(t, u+"/api/outbox/stats", fig.field)) },
					"api dashboard": func() string { return shown(fig.testid, apiValue(t, u+"/api/dashboard", "outbox."+fig.field)) },
				} {
					v := strings.TrimSpace(read())
					seen[v] = append(seen[v], where)
				}
				if len(seen) == 1 {
					ok = true
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			if !ok {
				b, _ := json.Marshal(seen)
				t.Errorf("%s disagrees: %s", fig.name, b)
			}
		})
	}
}

// shown is an API figure as the pages print it (templates' rate and millis).
func shown(testid, v string) string {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return "not a number: " + v
	}
	switch {
	case testid == "rate" && f <= 0:
		return "0"
	case testid == "rate" && f < 10:
		return strconv.FormatFloat(f, 'f', 1, 64)
	case testid == "rate":
		return strconv.FormatFloat(math.Round(f), 'f', 0, 64)
	case f <= 0:
		return "—"
	case f < 10:
		return strconv.FormatFloat(f, 'f', 1, 64) + " ms"
	case f < 10000:
		return strconv.FormatFloat(f, 'f', 0, 64) + " ms"
	}
	return (time.Duration(f * float64(time.Millisecond))).Round(time.Second).String()
}
