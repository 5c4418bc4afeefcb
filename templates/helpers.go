package templates

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
)

// Duration is time.Duration, for arithmetic inside templ expressions.
type Duration = time.Duration

func pathEscape(s string) string { return url.PathEscape(s) }

func maxDepth(qs []Queue) int64 {
	var m int64
	for _, q := range qs {
		m = max(m, q.Depth)
	}
	return m
}

func barWidth(v, m int64) templ.SafeCSS {
	pct := 0.0
	if m > 0 {
		pct = 100 * float64(v) / float64(m)
	}
	return templ.SafeCSS("width:" + strconv.FormatFloat(pct, 'f', 1, 64) + "%")
}

// The chart's coordinate space; the SVG stretches to its box.
const (
	chartWidth  = 600
	chartHeight = 160
)

var (
	chartW       = strconv.Itoa(chartWidth)
	chartViewBox = "0 0 " + chartW + " " + strconv.Itoa(chartHeight)
)

func chartGrid() []string {
	return []string{"40", "80", "120"}
}

func seriesMax(s Series) int64 {
	var m int64
	for _, xs := range [][]int64{s.Outbox, s.JobRuns, s.Work, s.Failures} {
		for _, v := range xs {
			m = max(m, v)
		}
	}
	return m
}

func chartLine(vs []int64, m int64) string {
	if len(vs) == 0 {
		return ""
	}
	if m <= 0 {
		m = 1
	}
	var b strings.Builder
	step := float64(chartWidth) / float64(max(len(vs)-1, 1))
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(' ')
		}
		x := float64(i) * step
		y := float64(chartHeight) - 4 - float64(v)/float64(m)*float64(chartHeight-12)
		b.WriteString(strconv.FormatFloat(x, 'f', 1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
	}
	return b.String()
}

func chartArea(vs []int64, m int64) string {
	line := chartLine(vs, m)
	if line == "" {
		return ""
	}
	return "0," + strconv.Itoa(chartHeight) + " " + line + " " + chartW + "," + strconv.Itoa(chartHeight)
}

func last(vs []int64) int64 {
	if len(vs) == 0 {
		return 0
	}
	return vs[len(vs)-1]
}

func perSecond(count int64, s Series) string {
	if s.Bucket <= 0 {
		return "0"
	}
	return rate(float64(count) / s.Bucket.Seconds())
}

func seriesSpan(s Series) string {
	return minutes(s.Bucket * time.Duration(len(s.Outbox)))
}

// workAttempts reads a work item's attempts against its budget: "2 of 5",
// and after a retry by hand, which gives a fresh budget, "1 of 2 since
// retry · 2 before" (never "3/2").
func workAttempts(it jobs.WorkItem) string {
	n, earlier := it.Round()
	s := strconv.Itoa(n)
	if it.MaxAttempts > 0 {
		s += " of " + strconv.Itoa(it.MaxAttempts)
	}
	if earlier > 0 {
		s += " since retry · " + strconv.Itoa(earlier) + " before"
	}
	return s
}

func queryEscape(s string) string { return url.QueryEscape(s) }

func outboxURL(status, topic, key, before string) string {
	return listURL("/outbox", "status", status, "topic", topic, "key", key, "before", before)
}

// listURL is a list page's path with the query parameters that are set,
// given as name, value pairs.
func listURL(path string, pairs ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			q.Set(pairs[i], pairs[i+1])
		}
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

func retryAllQuestion(topic string) string {
	if topic == "" {
		return "Retry every dead message?"
	}
	return "Retry every dead message of topic " + topic + "?"
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func prettyJSON(raw []byte) string {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// runsURL is a job page from the run before (0: the newest).
func runsURL(job string, before int64) string {
	u := "/jobs/" + url.PathEscape(job)
	if before != 0 {
		u += "?before=" + strconv.FormatInt(before, 10)
	}
	return u
}

// workURL is the work page with its filter and cursor.
func workURL(state jobs.WorkState, kind, before string) string {
	return listURL("/work", "state", string(state), "kind", kind, "before", before)
}

// countText shows a bounded count: "10,000+" past the bound.
func countText(c jobs.Count) string { return boundedCount(int64(c.N), c.More) }

// liveAttrs marks a live region: one canal.js re-reads from the server when
// a frame's #changes names kind (and id, when set). Off, it is a plain one.
func liveAttrs(kind, id string, on bool) templ.Attributes {
	if !on {
		return templ.Attributes{}
	}
	a := templ.Attributes{"data-live": kind}
	if id != "" {
		a["data-live-id"] = id
	}
	return a
}

// disabledWhy is a disabled control's title: why it cannot be pressed.
func disabledWhy(disabled bool, why string) string {
	if disabled {
		return "Not available: " + why
	}
	return ""
}

// socketFor is the live socket of a page that shows topic: the hub sends it
// only that topic's fragments (web/hub_topics.go).
func socketFor(topic string) string { return "/ws?topics=" + url.QueryEscape(topic) }

// stateMeaning says what a work state's count counts where the name alone
// could mislead: a claimed item is "running" from its claim, though it may
// wait for a free worker (the queue panel's busy workers are those running).
func stateMeaning(s jobs.WorkState) string {
	if s == jobs.WorkRunning {
		return "claimed by a process: running now or waiting for one of its free workers (busy workers are the ones running)"
	}
	return ""
}

// uniqueStates lists the states a unique key is held in: "pending,
// retrying or running".
func uniqueStates(states []jobs.WorkState) string {
	ss := make([]string, len(states))
	for i, s := range states {
		ss[i] = string(s)
	}
	if len(ss) < 2 {
		return strings.Join(ss, "")
	}
	return strings.Join(ss[:len(ss)-1], ", ") + " or " + ss[len(ss)-1]
}

// destBadge is the badge class of a destination's breaker state.
func destBadge(s outbox.BreakerState) string {
	switch s {
	case outbox.BreakerOpen:
		return "dead"
	case outbox.BreakerHalfOpen:
		return "pending"
	}
	return "dispatched"
}

// destsNotUp counts the destinations whose breaker is not closed.
func destsNotUp(ds []outbox.Destination) int {
	n := 0
	for _, d := range ds {
		if d.State != outbox.BreakerClosed {
			n++
		}
	}
	return n
}

// destsSummary is the wall's word for its destinations: all up, or how
// many are not.
func destsSummary(ds []outbox.Destination) string {
	if n := destsNotUp(ds); n > 0 {
		return fmt.Sprintf("%d down", n)
	}
	return "up"
}

// destWord says a breaker state as a reader understands it.
func destWord(s outbox.BreakerState) string {
	switch s {
	case outbox.BreakerOpen:
		return "down"
	case outbox.BreakerHalfOpen:
		return "probing"
	}
	return "up"
}

func destTitle(s outbox.BreakerState) string {
	switch s {
	case outbox.BreakerOpen:
		return "breaker open: the destination fails every message; its messages wait, spending no attempt, until a probe gets through"
	case outbox.BreakerHalfOpen:
		return "breaker half-open: one message probes the destination"
	}
	return "breaker closed: sending"
}
