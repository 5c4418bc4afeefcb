// How the hub turns its state into frames: HTML fragments for /ws, rendered
// once per view, and JSON for /ws/events, encoded once.

package web

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/a-h/templ"
	"github.com/canalhq/canal/jobs"
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
func (h *Hub) jsonFrame(st *hubState, now time.Time) []byte {
	state := h.dirtyState(st)
	f := frame{Seq: st.seq, Type: "state", At: now, Data: state}
	switch len(st.pending) {
	case 0:
	case 1:
		p := st.pending[0]
		data := map[string]any{"state": state}
		for k, v := range p.Data {
			data[k] = v
		}
		f = frame{Seq: st.seq, Type: p.Type, At: p.At, Data: data}
	default:
		f = frame{Seq: st.seq, Type: "events", At: now, Data: map[string]any{"events": st.pending, "state": state}}
	}
	return h.encode(f)
}

// dirtyState is what changed since the last flush, for the JSON frame.
func (h *Hub) dirtyState(st *hubState) map[string]any {
	data := map[string]any{}
	if len(st.dirty.jobs) > 0 {
		js := make([]jobs.Status, 0, len(st.dirty.jobs))
		for _, name := range st.jobOrder {
			if st.dirty.jobs[name] {
				js = append(js, st.jobs[name])
			}
		}
		data["jobs"] = js
	}
	if st.dirty.outbox && st.outbox != nil {
		data["outbox"] = st.outbox
	}
	if st.dirty.queue {
		data["queue"] = st.queue
		data["pipelines"] = h.pipelines(st)
	}
	if st.dirty.chart {
		data["throughput"] = st.series.export()
	}
	if st.dirty.failures {
		data["failures"] = h.failureSummary(st)
	}
	return data
}

func (h *Hub) failureSummary(st *hubState) map[string]any {
	return map[string]any{
		"windowSeconds": st.series.span().Seconds(),
		"count":         st.series.sum(st.series.fails),
		"recent":        st.failures.newestFirst(),
	}
}

func (h *Hub) pipelines(st *hubState) []jobs.PipelineStats {
	out := make([]jobs.PipelineStats, 0, len(st.pipeOrder))
	for _, n := range st.pipeOrder {
		out = append(out, st.pipelines[n])
	}
	return out
}

// renderPage renders the overview pages' fragments: all of them for a
// snapshot, the dirty ones otherwise, and always the seq marker.
func (h *Hub) renderPage(ctx context.Context, st *hubState, all bool, marks *templates.Changed) []byte {
	var buf bytes.Buffer
	for _, name := range st.jobOrder {
		if all || st.dirty.jobs[name] {
			h.renderTo(ctx, &buf, templates.JobCard(st.jobs[name], true))
		}
	}
	if all || st.dirty.outbox {
		h.renderTo(ctx, &buf, templates.OutboxPanel(st.outbox, true))
	}
	if all || st.dirty.queue {
		h.renderTo(ctx, &buf, templates.QueuesPanel(st.queue, h.pipelines(st), true))
	}
	if all || st.dirty.chart {
		h.renderTo(ctx, &buf, templates.Chart(st.series.export(), true))
	}
	if all || st.dirty.feed {
		h.renderTo(ctx, &buf, templates.Feed(st.feed.newestFirst(), true))
	}
	if !all && marks != nil {
		h.renderTo(ctx, &buf, templates.Changes(*marks))
	}
	h.renderTo(ctx, &buf, templates.Seq(st.seq, true))
	return buf.Bytes()
}

// renderWall renders the wall screen's fragments. The wall replaces whole
// regions, so nothing in its page accumulates over days.
func (h *Hub) renderWall(ctx context.Context, st *hubState, now time.Time, all bool) []byte {
	var buf bytes.Buffer
	v := h.view(st, now)
	if all || len(st.dirty.jobs) > 0 || st.dirty.jobSet {
		h.renderTo(ctx, &buf, templates.WallJobs(v.Jobs, true))
	}
	if all || st.dirty.outbox {
		h.renderTo(ctx, &buf, templates.WallOutbox(v.Outbox, true))
	}
	if all || st.dirty.queue {
		h.renderTo(ctx, &buf, templates.WallQueues(v.Queue, true))
	}
	if all || st.dirty.chart {
		h.renderTo(ctx, &buf, templates.Chart(v.Series, true))
	}
	if all || st.dirty.failures {
		h.renderTo(ctx, &buf, templates.WallFailures(v, true))
	}
	h.renderTo(ctx, &buf, templates.WallStamp(v, true))
	return buf.Bytes()
}

// snapshot is the whole current state for view, sent first on every
// connect. Clients that connect at the same state share the bytes.
func (h *Hub) snapshot(ctx context.Context, st *hubState, v view) []byte {
	c := &st.snaps[v]
	if c.frame != nil && c.version == st.version && c.seq == st.seq {
		return c.frame
	}
	st.stats.Snapshots++
	now := h.cfg.Now()
	var f []byte
	switch v {
	case viewPage:
		f = h.renderPage(operatorCtx(ctx), st, true, nil)
	case viewPageRO:
		f = h.renderPage(ctx, st, true, nil)
	case viewWall:
		f = h.renderWall(ctx, st, now, true)
	case viewJSON:
		f = h.encode(frame{Seq: st.seq, Type: "snapshot", At: now, Data: h.view(st, now)})
	}
	*c = snapCache{version: st.version, seq: st.seq, frame: f}
	return f
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
	}
	for _, name := range st.jobOrder {
		v.Jobs = append(v.Jobs, st.jobs[name])
	}
	if st.queue != nil {
		q := *st.queue
		v.Queue = &q
	}
	if st.outbox != nil {
		o := *st.outbox
		v.Outbox = &o
	}
	return v
}
