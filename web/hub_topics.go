// Topics: a page's socket says what the page shows (/ws?topics=overview, a
// job, the outbox list, a message, the work list, a work item), and the hub
// sends each client only the fragments of its topics. Each fragment is
// rendered once per frame; clients with the same topics share the bytes.

package web

import (
	"errors"
	"slices"
	"strings"

	"github.com/a-h/templ"
	"github.com/canalhq/canal/templates"
)

// Topic names. A job, a message and a work item are named after a colon.
const (
	topicOverview  = "overview"  // every job card, the outbox and queue panels, the chart, the feed
	topicOutbox    = "outbox"    // the outbox panel and the outbox list's changes
	topicWork      = "work"      // the queue panel and the work list's changes
	topicJob       = "job:"      // one job's card and its runs' changes
	topicMessage   = "message:"  // one outbox message's changes
	topicItem      = "item:"     // one work item's changes
	topicAudit     = "audit"     // the audit log's changes
	topicProcesses = "processes" // the processes page's table
	maxTopics      = 8
)

// topics is what one client's page shows; all (no topics given) is every
// page fragment, as before clients said.
type topics struct {
	all bool
	set map[string]bool
	key string // the sorted names: clients with equal keys share frames
}

var allTopics = topics{all: true, key: "*"}

// parseTopics reads ?topics=a,b,….
func parseTopics(s string) (topics, error) {
	if strings.TrimSpace(s) == "" {
		return allTopics, nil
	}
	names := strings.Split(s, ",")
	if len(names) > maxTopics {
		return topics{}, errors.New("at most 8 topics")
	}
	t := topics{set: map[string]bool{}}
	for _, n := range names {
		n = strings.TrimSpace(n)
		switch {
		case n == topicOverview || n == topicOutbox || n == topicWork || n == topicAudit || n == topicProcesses:
		case len(n) > len(topicJob) && strings.HasPrefix(n, topicJob) && len(n) <= 260:
		case len(n) > len(topicMessage) && strings.HasPrefix(n, topicMessage) && len(n) <= 100:
		case len(n) > len(topicItem) && strings.HasPrefix(n, topicItem) && len(n) <= 100:
		default:
			return topics{}, errors.New("unknown topic " + n + ": want overview, outbox, work, audit, processes, job:NAME, message:ID or item:ID")
		}
		t.set[n] = true
	}
	keys := make([]string, 0, len(t.set))
	for k := range t.set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	t.key = strings.Join(keys, ",")
	return t, nil
}

// has reports whether the client shows any of names.
func (t topics) has(names ...string) bool {
	if t.all {
		return true
	}
	for _, n := range names {
		if t.set[n] {
			return true
		}
	}
	return false
}

// hasPrefix reports whether the client shows any topic starting with p.
func (t topics) hasPrefix(p string) bool {
	if t.all {
		return true
	}
	for n := range t.set {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return false
}

// piece is one rendered fragment and who gets it.
type piece struct {
	to    func(topics) bool
	bytes []byte
	stamp bool // goes only with another piece
}

// part is a fragment to render and who gets it. Its component holds copies
// of the hub's state, so the renderer may render it while the hub goes on.
type part struct {
	to    func(topics) bool
	comp  templ.Component
	stamp bool // goes only with another part (the wall's stamp)
}

// pageParts lists the page fragments that changed (all of them for a
// snapshot), with the topics each goes to.
func (h *Hub) pageParts(st *hubState, all bool) []part {
	var out []part
	add := func(to func(topics) bool, c templ.Component) {
		out = append(out, part{to: to, comp: c})
	}
	for _, name := range st.jobOrder {
		if all || st.dirty.jobs[name] {
			add(func(t topics) bool { return t.has(topicOverview, topicJob+name) }, templates.JobCard(st.jobs[name], true))
		}
	}
	if all || st.dirty.outbox {
		add(func(t topics) bool { return t.has(topicOverview, topicOutbox) }, templates.OutboxPanel(h.outboxStats(st), true))
	}
	if all || st.dirty.queue {
		add(func(t topics) bool { return t.has(topicOverview, topicWork) }, templates.QueuesPanel(h.queueStats(st), h.pipelines(st), true))
	}
	if all || st.dirty.processes {
		pv := h.processView(st)
		add(func(t topics) bool { return t.has(topicOverview) }, templates.ProcessesPanel(pv, true))
		add(func(t topics) bool { return t.has(topicProcesses) }, templates.ProcessesTable(pv, true))
	}
	if all || st.dirty.chart {
		add(func(t topics) bool { return t.has(topicOverview) }, templates.Chart(st.series.export(), true))
	}
	if all || st.dirty.feed {
		add(func(t topics) bool { return t.has(topicOverview) }, templates.Feed(st.feed.newestFirst(), true))
	}
	if !all && st.changed.any() {
		c := st.changed.take()
		if c.AllOutbox {
			add(func(t topics) bool { return t.has(topicOutbox) || t.hasPrefix(topicMessage) }, templates.Changes(templates.Changed{AllOutbox: true}))
		}
		for _, id := range c.Outbox {
			add(func(t topics) bool { return t.has(topicOutbox, topicMessage+id) }, templates.Changes(templates.Changed{Outbox: []string{id}}))
		}
		if c.AllJobs {
			add(func(t topics) bool { return t.hasPrefix(topicJob) }, templates.Changes(templates.Changed{AllJobs: true}))
		}
		for _, name := range c.Jobs {
			add(func(t topics) bool { return t.has(topicJob + name) }, templates.Changes(templates.Changed{Jobs: []string{name}}))
		}
		if c.Work {
			add(func(t topics) bool { return t.has(topicWork) || t.hasPrefix(topicItem) }, templates.Changes(templates.Changed{Work: true}))
		}
		if c.Audit {
			add(func(t topics) bool { return t.has(topicAudit) }, templates.Changes(templates.Changed{Audit: true}))
		}
	}
	if all || st.dirty.db {
		add(func(topics) bool { return true }, templates.DatabaseBanner(st.db, true))
	}
	add(func(topics) bool { return true }, templates.Seq(st.seq, true))
	return out
}

// compose is the frame of a client with topics t: its pieces, in order.
func compose(pieces []piece, t topics) []byte {
	n, shown := 0, false
	for _, p := range pieces {
		if p.to(t) {
			n += len(p.bytes)
			shown = shown || !p.stamp
		}
	}
	if !shown {
		return nil
	}
	out := make([]byte, 0, n)
	for _, p := range pieces {
		if p.to(t) {
			out = append(out, p.bytes...)
		}
	}
	return out
}
