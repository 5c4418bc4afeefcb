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
		data["outbox"] = h.outboxStats(st)
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

// wallParts lists the wall screen's fragments that changed (all for a
// snapshot). The wall replaces whole regions, so nothing in its page
// accumulates over days.
func (h *Hub) wallParts(st *hubState, now time.Time, all bool) []templ.Component {
	var out []templ.Component
	v := h.view(st, now)
	if all || len(st.dirty.jobs) > 0 || st.dirty.jobSet {
		out = append(out, templates.WallJobs(v.Jobs, true))
	}
	if all || st.dirty.outbox {
		out = append(out, templates.WallOutbox(v.Outbox, true))
	}
	if all || st.dirty.queue {
		out = append(out, templates.WallQueues(v.Queue, true))
	}
	if all || st.dirty.chart {
		out = append(out, templates.Chart(v.Series, true))
	}
	// "All clear" also depends on the dead letters, the backlog and the jobs.
	if all || st.dirty.failures || st.dirty.outbox || len(st.dirty.jobs) > 0 {
		out = append(out, templates.WallFailures(v, true))
	}
	if all || st.dirty.db {
		out = append(out, templates.DatabaseBanner(st.db, true))
	}
	return append(out, templates.WallStamp(v, true))
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
		job.json = h.encode(frame{Seq: st.seq, Type: "snapshot", At: now, Data: h.view(st, now)})
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
	if st.queue != nil {
		q := *st.queue
		v.Queue = &q
	}
	v.Outbox = h.outboxStats(st)
	return v
}
