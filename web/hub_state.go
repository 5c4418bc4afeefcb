// The hub's view model: what it knows of jobs, work, the outbox and the
// charts, changed only by the hub goroutine as events arrive, and bounded.

package web

import (
	"maps"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/templates"
)

// dirty marks what changed since the last flush.
type dirty struct {
	jobs      map[string]bool
	jobSet    bool // a job appeared or the list was replaced
	outbox    bool
	queue     bool
	chart     bool
	feed      bool
	failures  bool
	processes bool
	db        bool
}

func (d *dirty) any() bool {
	return len(d.jobs) > 0 || d.jobSet || d.outbox || d.queue || d.chart || d.feed || d.failures || d.processes || d.db
}

// pending is a discrete event waiting for the next frame.
type pending struct {
	Type string         `json:"type"`
	At   time.Time      `json:"at"`
	Data map[string]any `json:"data"`
}

// hubState is what the hub knows; only Run touches it.
type hubState struct {
	clients map[*client]struct{}
	counts  [numViews]int
	stats   HubStats
	seq     uint64
	version uint64 // bumped on every change of the view model
	// render queues a frame for the renderer (hub_render.go); the jobs
	// wait in renderQueue while it is busy.
	render      func(*renderJob)
	renderQueue []*renderJob

	jobs      map[string]jobs.Status
	jobOrder  []string
	queue     *jobs.QueueStats
	pipelines map[string]jobs.PipelineStats
	pipeOrder []string
	outbox    *outbox.Stats
	historyAt time.Time // when it was last read
	series    series
	feed      *ring[templates.FeedItem]
	failures  *ring[templates.FeedItem]
	// Other processes' figures, by process id (hub_processes.go), and the
	// processes sharing the database as last read.
	remoteQueues map[string]jobs.QueueStats
	remotePipes  map[string]map[string]jobs.PipelineStats
	procs        processes
	db           templates.Database // HubConfig.Database's state, as shown

	dirty     dirty
	pending   []pending
	immediate int // discrete flushes since the last tick
	changed   changed
}

func (h *Hub) newState() *hubState {
	return &hubState{
		clients:      map[*client]struct{}{},
		jobs:         map[string]jobs.Status{},
		pipelines:    map[string]jobs.PipelineStats{},
		remoteQueues: map[string]jobs.QueueStats{},
		remotePipes:  map[string]map[string]jobs.PipelineStats{},
		series:       newSeries(h.cfg.Bucket, h.cfg.Buckets, h.cfg.Now()),
		feed:         newRing[templates.FeedItem](h.cfg.FeedSize),
		failures:     newRing[templates.FeedItem](maxFailuresKept),
		dirty:        dirty{jobs: map[string]bool{}},
		changed:      changed{outbox: map[string]struct{}{}, jobs: map[string]struct{}{}},
	}
}

// maxChangedIDs bounds the ids one frame names; past it the frame says
// "something changed" and every matching region re-reads.
const maxChangedIDs = 32

// changed is what the pages' live regions (an outbox table, a message, a
// job's runs, the work items) must re-read since the last frame. The hub
// does not know which rows a page shows, so it names what changed and the
// page asks the server again, at most once a second (static/canal.js).
type changed struct {
	outbox    map[string]struct{}
	outboxAll bool
	jobs      map[string]struct{}
	jobsAll   bool
	work      bool
	audit     bool
}

func (c *changed) any() bool {
	return len(c.outbox) > 0 || c.outboxAll || len(c.jobs) > 0 || c.jobsAll || c.work || c.audit
}

// mark adds id to set, or gives up naming ids once there are too many.
func mark(set map[string]struct{}, all *bool, id string) {
	if *all {
		return
	}
	if id == "" || len(set) >= maxChangedIDs {
		clear(set)
		*all = true
		return
	}
	set[id] = struct{}{}
}

func (c *changed) outboxMessage(id string) { mark(c.outbox, &c.outboxAll, id) }
func (c *changed) job(name string)         { mark(c.jobs, &c.jobsAll, name) }

// take returns the changes for a frame and forgets them.
func (c *changed) take() templates.Changed {
	out := templates.Changed{Outbox: slices.Sorted(maps.Keys(c.outbox)), AllOutbox: c.outboxAll,
		Jobs: slices.Sorted(maps.Keys(c.jobs)), AllJobs: c.jobsAll, Work: c.work, Audit: c.audit}
	c.reset()
	return out
}

func (c *changed) reset() {
	clear(c.outbox)
	clear(c.jobs)
	c.outboxAll, c.jobsAll, c.work, c.audit = false, false, false, false
}

// applyJob folds a job or work event into the view model and reports whether
// it is discrete (must reach clients on its own, not merged into a count).
func (h *Hub) applyJob(st *hubState, ev jobs.Event) bool {
	now := h.cfg.Now()
	st.version++
	if ev.Origin != "" && h.applyRemote(st, ev) {
		return false
	}
	switch ev.Type {
	case jobs.EventSnapshot:
		if ev.Jobs != nil {
			clear(st.jobs)
			st.jobOrder = st.jobOrder[:0]
			for _, s := range ev.Jobs {
				h.setJob(st, s)
			}
			st.dirty.jobSet = true
		}
		if ev.Queue != nil {
			q := *ev.Queue
			st.queue = &q
			st.dirty.queue = true
		}
		return false
	case jobs.EventQueue:
		if ev.Queue != nil {
			q := *ev.Queue
			st.queue = &q
			st.dirty.queue = true
		}
		return false
	case jobs.EventPipeline:
		if ev.Pipeline != nil {
			if _, ok := st.pipelines[ev.Pipeline.Name]; !ok {
				if len(st.pipeOrder) >= maxPipelines {
					return false
				}
				st.pipeOrder = append(st.pipeOrder, ev.Pipeline.Name)
			}
			st.pipelines[ev.Pipeline.Name] = *ev.Pipeline
			st.dirty.queue = true
		}
		return false
	}
	if ev.Work != nil {
		return h.applyWork(st, ev, now)
	}
	if ev.Job == nil {
		return false
	}
	s := *ev.Job
	h.setJob(st, s)
	item := templates.FeedItem{At: ev.At, Type: string(ev.Type), Subject: s.Name, Link: "/jobs/" + url.PathEscape(s.Name)}
	switch ev.Type {
	case jobs.EventRunSucceeded, jobs.EventRunFailed:
		st.changed.job(s.Name)
		st.series.add(now, &st.series.jobRuns)
		if ev.Type == jobs.EventRunSucceeded {
			item.Text = "ran in " + s.LastDuration.Round(time.Millisecond).String()
			h.feed(st, item)
			return false
		}
		item = runFailure(jobs.JobRun{Job: s.Name, At: ev.At, Error: s.LastError})
		st.series.add(now, &st.series.fails)
		h.fail(st, item)
	case jobs.EventJobStarted:
		item.Text = "started"
	case jobs.EventJobStopped:
		item.Text = "stopped"
	default:
		item.Text = "updated: every " + s.Interval.String()
	}
	h.feed(st, item)
	st.pending = append(st.pending, pending{Type: string(ev.Type), At: ev.At, Data: map[string]any{"job": s}})
	return true
}

func (h *Hub) setJob(st *hubState, s jobs.Status) {
	if _, known := st.jobs[s.Name]; !known {
		if len(st.jobOrder) >= maxJobs {
			return
		}
		st.jobOrder = append(st.jobOrder, s.Name)
		st.dirty.jobSet = true
	}
	st.jobs[s.Name] = s
	st.dirty.jobs[s.Name] = true
}

func (h *Hub) applyWork(st *hubState, ev jobs.Event, now time.Time) bool {
	w := *ev.Work
	w.Payload = nil // frames never show it; keep them small
	st.changed.work = true
	switch ev.Type {
	case jobs.EventWorkDone:
		st.series.add(now, &st.series.work)
		return false
	case jobs.EventWorkFailed:
		st.series.add(now, &st.series.fails)
		item := workFailure(ev.At, w)
		h.fail(st, item)
		h.feed(st, item)
		st.pending = append(st.pending, pending{Type: string(ev.Type), At: ev.At, Data: map[string]any{"work": w}})
		return true
	case jobs.EventWorkRequeued, jobs.EventWorkDeleted:
		h.unfail(st, "/work/"+url.PathEscape(w.ID))
		text := "work " + w.ID + " retried by hand"
		if ev.Type == jobs.EventWorkDeleted {
			text = "work " + w.ID + " deleted"
		}
		item := templates.FeedItem{At: ev.At, Type: string(ev.Type), Subject: w.Kind, Text: text, Link: "/work/" + url.PathEscape(w.ID)}
		h.feed(st, item)
		st.pending = append(st.pending, pending{Type: string(ev.Type), At: ev.At, Data: map[string]any{"work": w}})
		return true
	case jobs.EventWorkDropped:
		item := templates.FeedItem{At: ev.At, Type: string(ev.Type), Subject: w.Kind, Bad: true,
			Text: "work " + w.ID + " dropped: queue full", Link: "/work/" + url.PathEscape(w.ID)}
		h.feed(st, item)
		st.pending = append(st.pending, pending{Type: string(ev.Type), At: ev.At, Data: map[string]any{"work": w}})
		return true
	}
	return false
}

// applyOutbox folds an outbox event into the view model; dead letters and
// the answers to buttons are discrete.
func (h *Hub) applyOutbox(st *hubState, ev outbox.Event) bool {
	if ev.Origin != "" && ev.Type == outbox.EventStats {
		return false // this process counts the shared table itself
	}
	now := h.cfg.Now()
	st.version++
	switch {
	case ev.Message != nil:
		st.changed.outboxMessage(ev.Message.ID)
	case ev.Type == outbox.EventRetried: // a bulk retry names no message
		st.changed.outboxMessage("")
	}
	switch ev.Type {
	case outbox.EventStats:
		if ev.Stats != nil {
			s := *ev.Stats
			st.outbox = &s
			st.stats.OutboxEventsDropped = s.DroppedEvents
			st.dirty.outbox = true
		}
		return false
	case outbox.EventDispatched:
		st.series.add(now, &st.series.outbox)
		return false
	case outbox.EventAdded, outbox.EventRetryScheduled:
		return false
	}
	item := templates.FeedItem{At: ev.At, Type: "outbox." + ev.Type, Subject: ev.Topic}
	data := map[string]any{}
	if m := ev.Message; m != nil {
		item.Subject, item.Link = m.Topic, "/outbox/"+url.PathEscape(m.ID)
		data["message"] = m
	}
	switch ev.Type {
	case outbox.EventDead:
		if ev.Message != nil {
			item = deadLetter(ev.At, *ev.Message)
		} else {
			item.Bad, item.Text = true, "dead letter"
		}
		st.series.add(now, &st.series.fails)
		h.fail(st, item)
	case outbox.EventRetried:
		if ev.Message != nil {
			h.unfail(st, item.Link)
			item.Text = "retried by hand"
		} else {
			item.Subject = orAll(ev.Topic)
			item.Text = "retried " + strconv.FormatInt(ev.Count, 10) + " dead messages"
			item.Link = "/outbox"
			data["topic"], data["count"] = ev.Topic, ev.Count
			h.unfail(st, "")
		}
	case outbox.EventDeleted:
		h.unfail(st, item.Link)
		item.Text = "dead letter deleted"
	default:
		item.Text = ev.Type
	}
	h.feed(st, item)
	st.pending = append(st.pending, pending{Type: "outbox." + ev.Type, At: ev.At, Data: data})
	return true
}

func orAll(topic string) string {
	if topic == "" {
		return "all topics"
	}
	return topic
}

func (h *Hub) feed(st *hubState, it templates.FeedItem) {
	st.feed.push(it)
	st.dirty.feed = true
}

func (h *Hub) fail(st *hubState, it templates.FeedItem) {
	st.failures.push(it)
	st.dirty.failures = true
}

// tick rolls the chart's buckets and forgets failures older than the window.
func (h *Hub) tick(st *hubState) {
	now := h.cfg.Now()
	if st.series.advance(now) {
		st.dirty.chart, st.dirty.failures = true, true
		st.version++
	}
	cutoff := now.Add(-st.series.span())
	if n := st.failures.dropOlder(func(it templates.FeedItem) bool { return it.At.Before(cutoff) }); n > 0 {
		st.dirty.failures = true
		st.version++
	}
}

// ring keeps the last n values.
type ring[T any] struct {
	buf  []T
	next int
	full bool
}

func newRing[T any](n int) *ring[T] { return &ring[T]{buf: make([]T, n)} }

func (r *ring[T]) push(v T) {
	r.buf[r.next] = v
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

func (r *ring[T]) len() int {
	if r.full {
		return len(r.buf)
	}
	return r.next
}

// newestFirst copies the values out, newest first.
func (r *ring[T]) newestFirst() []T {
	n := r.len()
	out := make([]T, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

// dropOlder removes values for which old is true from the oldest end and
// reports how many.
func (r *ring[T]) dropOlder(old func(T) bool) int {
	vals := r.newestFirst()
	keep := len(vals)
	for keep > 0 && old(vals[keep-1]) {
		keep--
	}
	if keep == len(vals) {
		return 0
	}
	clear(r.buf)
	r.next, r.full = 0, false
	for i := keep - 1; i >= 0; i-- {
		r.push(vals[i])
	}
	return len(vals) - keep
}

// series counts events in fixed buckets over a sliding window.
type series struct {
	bucket                       time.Duration
	cur                          int64 // index of the current (open) bucket
	first                        int64 // the bucket the hub started in
	jobRuns, work, outbox, fails []int64
}

func newSeries(bucket time.Duration, n int, now time.Time) series {
	n++ // the open bucket, besides the n closed ones the chart shows
	return series{
		bucket: bucket, cur: now.UnixNano() / int64(bucket), first: now.UnixNano() / int64(bucket),
		jobRuns: make([]int64, n), work: make([]int64, n), outbox: make([]int64, n), fails: make([]int64, n),
	}
}

// span is the window the chart shows and failures are counted over.
func (s *series) span() time.Duration { return s.bucket * time.Duration(len(s.outbox)-1) }

// advance moves the open bucket to now's, zeroing the buckets it passes;
// true means the chart changed.
func (s *series) advance(now time.Time) bool {
	nb := now.UnixNano() / int64(s.bucket)
	if nb <= s.cur {
		return false
	}
	n := int64(len(s.outbox))
	for k := s.cur + 1; k <= nb && k <= s.cur+n; k++ {
		i := k % n
		s.jobRuns[i], s.work[i], s.outbox[i], s.fails[i] = 0, 0, 0, 0
	}
	s.cur = nb
	return true
}

func (s *series) add(now time.Time, xs *[]int64) {
	s.advance(now)
	(*xs)[s.cur%int64(len(*xs))]++
}

// remove takes one event at at back out of xs, if its bucket is still in
// the window.
func (s *series) remove(at time.Time, xs []int64) {
	k, n := at.UnixNano()/int64(s.bucket), int64(len(xs))
	if k <= s.cur-n || k > s.cur {
		return
	}
	if i := ((k % n) + n) % n; xs[i] > 0 {
		xs[i]--
	}
}

// sum is the total over the whole window, the open bucket included.
func (s *series) sum(xs []int64) int64 {
	var t int64
	for _, v := range xs {
		t += v
	}
	return t
}

// export returns the closed buckets, oldest first: the open one would make
// the line's last point jump about.
func (s *series) export() templates.Series {
	n := int64(len(s.outbox))
	out := templates.Series{
		Bucket: s.bucket, End: time.Unix(0, s.cur*int64(s.bucket)),
		JobRuns: make([]int64, 0, n), Work: make([]int64, 0, n), Outbox: make([]int64, 0, n), Failures: make([]int64, 0, n),
	}
	// A young hub shows the time since it started (at least minSeriesPoints
	// buckets), not minutes of zeros it never measured.
	from := max(s.cur-n+1, min(s.first, s.cur-minSeriesPoints))
	out.Totals = templates.Totals{JobRuns: s.sum(s.jobRuns), Work: s.sum(s.work), Outbox: s.sum(s.outbox), Failures: s.sum(s.fails)}
	for k := from; k < s.cur; k++ {
		i := ((k % n) + n) % n
		out.JobRuns = append(out.JobRuns, s.jobRuns[i])
		out.Work = append(out.Work, s.work[i])
		out.Outbox = append(out.Outbox, s.outbox[i])
		out.Failures = append(out.Failures, s.fails[i])
	}
	return out
}
