// How the hub turns its state into frames: HTML fragments for /ws, rendered
// once per view, and JSON for /ws/events, encoded once.

package web

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/a-h/templ"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/templates"
)

// frame is one JSON message of /ws/events.
type frame struct {
	Seq  uint64    `json:"seq"`
	Type string    `json:"type"`
	At   time.Time `json:"at"`
	Data any       `json:"data"`
}

func (h *Hub) encode(f frame) []byte {
	b, err := json.Marshal(f)
	if err != nil {
		h.cfg.Logger.Error("encode frame", "type", f.Type, "err", err)
		return nil
	}
	return b
}

// jsonFrame encodes a flush as one frame with the flush's seq: a single
// discrete event is the frame's type (its data plus the changed state), several
// go out together as "events", and coalesced changes alone as "state".
//
// A client that named topics (/ws/events?topics=) gets only what they show:
// the events and the changed state of its jobs, messages, items, lists.
// Nothing for it changed: no frame.
func (h *Hub) jsonFrame(st *hubState, now time.Time, tp topics) []byte {
	state := h.dirtyState(st, tp)
	evs := st.pending
	if !tp.all {
		evs = nil
		for _, p := range st.pending {
			if pendingFor(p, tp) {
				evs = append(evs, p)
			}
		}
		if len(evs) == 0 && len(state) == 0 {
			return nil
		}
	}
	f := frame{Seq: st.seq, Type: "state", At: now, Data: state}
	switch len(evs) {
	case 0:
	case 1:
		p := evs[0]
		data := map[string]any{"state": state}
		for k, v := range p.Data {
			data[k] = v
		}
		f = frame{Seq: st.seq, Type: p.Type, At: p.At, Data: data}
	default:
		f = frame{Seq: st.seq, Type: "events", At: now, Data: map[string]any{"events": evs, "state": state}}
	}
	return h.encode(f)
}

// dirtyState is what changed since the last flush and topics tp show, for
// the JSON frame.
func (h *Hub) dirtyState(st *hubState, tp topics) map[string]any {
	data := map[string]any{}
	if len(st.dirty.jobs) > 0 {
		js := make([]jobs.Status, 0, len(st.dirty.jobs))
		for _, name := range st.jobOrder {
			if st.dirty.jobs[name] && tp.has(topicOverview, topicJob+name) {
				js = append(js, st.jobs[name])
			}
		}
		if len(js) > 0 {
			data["jobs"] = js
		}
	}
	if st.dirty.outbox && st.outbox != nil && tp.has(topicOverview, topicOutbox) {
		data["outbox"] = h.outboxStats(st)
	}
	if st.dirty.queue && tp.has(topicOverview, topicWork) {
		data["queue"] = h.queueStats(st)
		data["pipelines"] = h.pipelines(st)
	}
	if st.dirty.processes && tp.has(topicOverview, topicProcesses) {
		data["processes"] = h.processView(st)
	}
	if st.dirty.chart && tp.has(topicOverview) {
		data["throughput"] = st.series.export()
	}
	if st.dirty.failures && tp.has(topicOverview) {
		data["failures"] = h.failureSummary(st)
	}
	return data
}

// pendingFor reports whether topics tp show event p: a job's event goes to
// its job, a work item's to the work list and the item, a message's to the
// outbox list and the message, an audit entry to the audit log; the
// overview shows all but the audit log.
func pendingFor(p pending, tp topics) bool {
	switch v := p.Data["job"].(type) {
	case jobs.Status:
		return tp.has(topicOverview, topicJob+v.Name)
	}
	switch v := p.Data["work"].(type) {
	case jobs.WorkItem:
		return tp.has(topicOverview, topicWork, topicItem+v.ID)
	}
	switch v := p.Data["message"].(type) {
	case *outbox.Summary:
		return tp.has(topicOverview, topicOutbox, topicMessage+v.ID)
	}
	if _, ok := p.Data["audit"]; ok {
		return tp.has(topicAudit)
	}
	if strings.HasPrefix(p.Type, "outbox.") { // a bulk retry
		return tp.has(topicOverview, topicOutbox) || tp.hasPrefix(topicMessage)
	}
	return tp.has(topicOverview)
}

func (h *Hub) failureSummary(st *hubState) map[string]any {
	return map[string]any{
		"windowSeconds": st.series.span().Seconds(),
		"count":         st.series.sum(st.series.fails),
		"recent":        st.failures.newestFirst(),
	}
}

func (h *Hub) pipelines(st *hubState) []jobs.PipelineStats { return h.mergedPipelines(st) }

// wallParts lists the wall screen's fragments that changed (all for a
// snapshot), with the topics each goes to: the wall's socket names what it
// shows (overview: every region). The wall replaces whole regions, so
// nothing in its page accumulates over days. Its stamp goes only with
// another fragment: a change the wall does not show sends it nothing.
func (h *Hub) wallParts(st *hubState, now time.Time, all bool) []part {
	var out []part
	add := func(to func(topics) bool, c templ.Component) { out = append(out, part{to: to, comp: c}) }
	v := h.view(st, now)
	if all || len(st.dirty.jobs) > 0 || st.dirty.jobSet {
		add(func(t topics) bool { return t.has(topicOverview) || t.hasPrefix(topicJob) }, templates.WallJobs(v.Jobs, true))
	}
	if all || st.dirty.outbox {
		add(func(t topics) bool { return t.has(topicOverview, topicOutbox) }, templates.WallOutbox(v.Outbox, true))
	}
	if all || st.dirty.queue {
		add(func(t topics) bool { return t.has(topicOverview, topicWork) }, templates.WallQueues(v.Queue, true))
	}
	if all || st.dirty.processes {
		add(func(t topics) bool { return t.has(topicOverview, topicProcesses) }, templates.WallProcesses(v.Processes, true))
	}
	if all || st.dirty.chart {
		add(func(t topics) bool { return t.has(topicOverview) }, templates.Chart(v.Series, true))
	}
	// "All clear" also depends on the dead letters, the backlog and the jobs.
	if all || st.dirty.failures || st.dirty.outbox || len(st.dirty.jobs) > 0 {
		add(func(t topics) bool { return t.has(topicOverview) }, templates.WallFailures(v, true))
	}
	if all || st.dirty.db {
		add(func(topics) bool { return true }, templates.DatabaseBanner(st.db, true))
	}
	if len(out) == 0 {
		return nil
	}
	out = append(out, part{to: func(topics) bool { return true }, comp: templates.WallStamp(v, true), stamp: true})
	return out
}

// snapshotJob is the whole current state for c's view (and topics), sent
// first on every connect. The renderer shares the rendering between clients
// that connect while the state stays the same.
func (h *Hub) snapshotJob(st *hubState, c *client) *renderJob {
	st.stats.Snapshots++
	now := h.cfg.Now()
	job := &renderJob{clients: []*client{c}, snapshot: true, version: st.version, seq: st.seq}
	switch c.view {
	case viewPage, viewPageRO:
		job.parts = h.pageParts(st, true)
	case viewWall:
		job.wall = h.wallParts(st, now, true)
	case viewJSON:
		job.json = map[string][]byte{c.topics.key: h.encode(frame{Seq: st.seq, Type: "snapshot", At: now, Data: h.view(st, now)})}
	}
	return job
}

func (h *Hub) renderTo(ctx context.Context, buf *bytes.Buffer, comp templ.Component) {
	if err := comp.Render(ctx, buf); err != nil {
		h.cfg.Logger.Error("render fragment", "err", err)
	}
}

// view copies the view model out of the hub's state.
func (h *Hub) view(st *hubState, now time.Time) templates.View {
	v := templates.View{
		Seq:           st.seq,
		At:            now,
		Jobs:          make([]jobs.Status, 0, len(st.jobOrder)),
		Pipelines:     h.pipelines(st),
		Series:        st.series.export(),
		Feed:          st.feed.newestFirst(),
		Failures:      st.failures.newestFirst(),
		FailureCount:  int(st.series.sum(st.series.fails)),
		FailureWindow: st.series.span(),
		HistoryAt:     st.historyAt,
		Database:      st.db,
	}
	for _, name := range st.jobOrder {
		v.Jobs = append(v.Jobs, st.jobs[name])
	}
	v.Queue = h.queueStats(st)
	v.Outbox = h.outboxStats(st)
	v.Processes = h.processView(st)
	return v
}
