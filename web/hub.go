package web

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/canalhq/canal/internal/audit"
	"github.com/canalhq/canal/internal/outage"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/templates"
	"github.com/canalhq/canal/web/auth"
	"github.com/coder/websocket"
)

// HubConfig configures a Hub. Its inputs are plain channels of plain data, so
// a later feed from another process (LISTEN/NOTIFY, NATS) can replace the
// local processor and relay without the hub knowing.
type HubConfig struct {
	// JobEvents is where job and work events come from: the local
	// processor's Events(), or a feed from another process.
	JobEvents <-chan jobs.Event
	// OutboxEvents is where outbox events come from: the relay's Events().
	OutboxEvents <-chan outbox.Event
	// ClientBuffer bounds each client's queue of frames (default 64). A
	// client whose queue is full is closed with 1013 so it reconnects.
	ClientBuffer int
	// FlushEvery is how often coalesced state goes out (default 250ms).
	FlushEvery time.Duration
	// Bucket and Buckets shape the throughput chart (default 5s × 120: the
	// last ten minutes). Failures are counted over the same window.
	Bucket  time.Duration
	Buckets int
	// JobHistory and OutboxHistory are the stored history the windows
	// (throughput, failures) are computed from, read every ResyncEvery
	// (default 10s); nil counts only what this process saw.
	JobHistory    JobWindow
	OutboxHistory OutboxWindow
	ResyncEvery   time.Duration
	// Processes lists the processes sharing the database, read every
	// ProcessesEvery (default 10s); nil shows none.
	Processes      ProcessLister
	ProcessesEvery time.Duration
	// FeedSize bounds the live feed (default 30). Run history and work
	// items are not kept here: the pages read them from the jobs store.
	FeedSize int
	// Burst is how many discrete events may each go out at once between two
	// flushes (default 8); past it they wait for the next flush, never
	// longer, and are never merged away.
	Burst int
	// Zone is the zone fragments show times in (-display-tz); nil shows
	// each viewer's own.
	Zone *time.Location
	// Prefix is the path the dashboard is mounted under (Deps.Prefix):
	// the links and forms of fragments carry it.
	Prefix string
	// Database is the process's view of the database: its banner goes out
	// on every change and in every snapshot. Nil: always available.
	Database *outage.Monitor
	Now      func() time.Time
	Logger   *slog.Logger
}

func (c *HubConfig) defaults() {
	if c.ClientBuffer <= 0 {
		c.ClientBuffer = 64
	}
	if c.FlushEvery <= 0 {
		c.FlushEvery = 250 * time.Millisecond
	}
	if c.Bucket <= 0 {
		c.Bucket = 5 * time.Second
	}
	if c.Buckets <= 0 {
		c.Buckets = 120
	}
	if c.ResyncEvery <= 0 {
		c.ResyncEvery = 10 * time.Second
	}
	if c.ProcessesEvery <= 0 {
		c.ProcessesEvery = 10 * time.Second
	}
	if c.FeedSize <= 0 {
		c.FeedSize = 30
	}
	if c.Burst <= 0 {
		c.Burst = 8
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Limits that keep every frame and list bounded.
const (
	maxFailuresKept = 50  // failure lines kept for the wall
	maxPipelines    = 16  // pipelines shown
	maxJobs         = 500 // recurring jobs tracked
	batchEvents     = 256 // discrete events that force a flush
	minSeriesPoints = 12  // the chart of a young hub
)

// view is what a client receives: HTML for the overview pages, HTML for the
// wall screen, or JSON frames.
type view int

const (
	viewPage view = iota // an operator's page: with buttons
	viewWall
	viewJSON
	viewPageRO // a viewer's page: the same fragments without buttons
	numViews
)

func (v view) String() string { return [...]string{"page", "wall", "json", "page-ro"}[v] }

// operatorCtx renders the fragments operators see: templates show buttons
// only when the context's principal may press them.
func operatorCtx(ctx context.Context) context.Context {
	return auth.WithPrincipal(ctx, auth.Principal{Role: auth.Operator})
}

// client is one WebSocket connection as the hub sees it. Only the hub
// goroutine sends on send and closes quit; closeCode and reason are set
// before quit is closed, and the writer reads them only after. The writer
// sets timedOut before it unregisters the client, and the hub reads it only
// after.
type client struct {
	view      view
	topics    topics // what its page shows (page view only)
	send      chan []byte
	quit      chan struct{}
	closeCode websocket.StatusCode
	reason    string
	timedOut  bool // its writer gave up: the peer stopped reading
}

func newClient(v view, buffer int) *client {
	return &client{view: v, topics: allTopics, send: make(chan []byte, buffer), quit: make(chan struct{})}
}

// Hub owns the set of WebSocket clients and the dashboard's view model. One
// goroutine (Run) touches both; handlers and pages talk to it over channels.
type Hub struct {
	cfg        HubConfig
	register   chan *client
	unregister chan *client
	queries    chan func(*hubState)
	done       chan struct{}
	// resync asks the history loader to read the stored windows now: an
	// action by hand changed them (a dead letter retried, an item deleted).
	resync chan struct{}
}

// HubStats are the hub's counters.
type HubStats struct {
	Clients      int    `json:"clients"`
	PageClients  int    `json:"pageClients"`
	WallClients  int    `json:"wallClients"`
	JSONClients  int    `json:"jsonClients"`
	Connections  uint64 `json:"connections"`
	FramesSent   uint64 `json:"framesSent"`
	FramesDrop   uint64 `json:"framesDropped"`
	SlowClosed   uint64 `json:"slowClientsClosed"`
	EventsIn     uint64 `json:"eventsIn"`
	Flushes      uint64 `json:"flushes"`
	Snapshots    uint64 `json:"snapshots"`
	LastSeq      uint64 `json:"lastSeq"`
	BytesPerPage int    `json:"lastPageFrameBytes"`
	// Events the processor and the relay dropped before the hub read them
	// (their channels were full), as they last reported.
	JobEventsDropped    uint64 `json:"jobEventsDropped"`
	OutboxEventsDropped int64  `json:"outboxEventsDropped"`
}

// NewHub returns a hub; its owner calls Run.
func NewHub(cfg HubConfig) *Hub {
	cfg.defaults()
	return &Hub{
		cfg:        cfg,
		register:   make(chan *client),
		unregister: make(chan *client),
		queries:    make(chan func(*hubState)),
		done:       make(chan struct{}),
		resync:     make(chan struct{}, 1),
	}
}

// Run broadcasts until ctx is done, then closes every client with 1012
// (service restart) so browsers reconnect by themselves.
func (h *Hub) Run(ctx context.Context) {
	defer close(h.done)
	st := h.newState()
	flush := time.NewTicker(h.cfg.FlushEvery)
	defer flush.Stop()
	jobEvents, outboxEvents := h.cfg.JobEvents, h.cfg.OutboxEvents
	dbChanges, unsubscribe := h.cfg.Database.Subscribe()
	defer unsubscribe()
	st.db = databaseView(h.cfg.Database.Status())
	// Renders use a context that outlives nothing: fragments never wait.
	rctx := templates.WithPrefix(templates.WithZone(context.WithoutCancel(ctx), h.cfg.Zone), templates.CleanPrefix(h.cfg.Prefix))
	var histories chan history // nil without history: never ready
	if h.cfg.JobHistory != nil || h.cfg.OutboxHistory != nil {
		histories = make(chan history, 1)
		lctx, stopLoader := context.WithCancel(ctx)
		var loader sync.WaitGroup
		loader.Go(func() { h.loadHistory(lctx, histories) })
		defer loader.Wait()
		defer stopLoader()
	}
	var procReadings chan processes // nil without a lister: never ready
	if h.cfg.Processes != nil {
		procReadings = make(chan processes, 1)
		pctx, stopProcs := context.WithCancel(ctx)
		var procLoader sync.WaitGroup
		procLoader.Go(func() { h.loadProcesses(pctx, procReadings) })
		defer procLoader.Wait()
		defer stopProcs()
	}
	// The renderer: jobs go out in order, frames come back in order. The
	// hub never blocks on it: jobs wait in queue while it is busy.
	renderIn, renderOut := make(chan *renderJob), make(chan *renderJob)
	rctx2, stopRenderer := context.WithCancel(rctx)
	var rend sync.WaitGroup
	rend.Go(func() { h.renderer(rctx2, renderIn, renderOut) })
	defer rend.Wait()
	defer stopRenderer()
	st.render = func(j *renderJob) { st.renderQueue = append(st.renderQueue, j) }
	for {
		var toRenderer chan *renderJob
		var nextJob *renderJob
		if len(st.renderQueue) > 0 {
			toRenderer, nextJob = renderIn, st.renderQueue[0]
		}
		select {
		case toRenderer <- nextJob:
			st.renderQueue[0] = nil
			st.renderQueue = st.renderQueue[1:]
		case job := <-renderOut:
			h.deliver(st, job)
		case hs := <-histories:
			h.applyHistory(st, hs)
		case p := <-procReadings:
			h.applyProcesses(st, p)
		case <-ctx.Done():
			for c := range st.clients {
				h.drop(st, c, websocket.StatusServiceRestart, "server restarting")
			}
			return
		case c := <-h.register:
			st.clients[c] = struct{}{}
			st.counts[c.view]++
			st.stats.Connections++
			st.render(h.snapshotJob(st, c))
		case c := <-h.unregister:
			if _, ok := st.clients[c]; ok {
				delete(st.clients, c)
				st.counts[c.view]--
				// A peer that stopped reading fills the socket before
				// its queue here: it is a slow client all the same.
				if c.timedOut {
					st.stats.SlowClosed++
				}
			}
		case q := <-h.queries:
			q(st)
		case ev, ok := <-jobEvents:
			if !ok {
				jobEvents = nil
				continue
			}
			st.stats.EventsIn++
			if ev.Origin == "" {
				st.stats.JobEventsDropped = max(st.stats.JobEventsDropped, ev.Dropped)
			}
			if h.applyJob(st, ev) {
				h.discrete(rctx, st)
			}
		case ev, ok := <-outboxEvents:
			if !ok {
				outboxEvents = nil
				continue
			}
			st.stats.EventsIn++
			if h.applyOutbox(st, ev) {
				h.discrete(rctx, st)
			}
		case <-dbChanges:
			if db := databaseView(h.cfg.Database.Status()); db != st.db {
				st.db = db
				st.dirty.db = true
				st.version++
				st.pending = append(st.pending, pending{Type: "database", At: h.cfg.Now(), Data: map[string]any{"database": db}})
				h.discrete(rctx, st)
			}
		case <-flush.C:
			h.tick(st)
			st.immediate = 0
			h.flush(rctx, st, true)
		}
	}
}

// discrete sends a discrete event's frame now, unless the burst allowance of
// this flush period is spent; then it goes with the next flush, a fraction
// of a second later.
func (h *Hub) discrete(ctx context.Context, st *hubState) {
	if st.immediate < h.cfg.Burst || len(st.pending) >= batchEvents {
		st.immediate++
		h.flush(ctx, st, false)
	}
}

// flush sends what changed: every pending discrete event and the state of
// each dirty part, each view rendered once and written to all its clients.
// A flush for a discrete event (full false) leaves the feed, the failure list
// and the chart, the largest fragments, to the next tick: the event itself
// shows at once in its card and in the JSON frame, its feed line a fraction
// of a second later.
func (h *Hub) flush(ctx context.Context, st *hubState, full bool) {
	var later dirty
	if !full {
		later.feed, later.failures, later.chart = st.dirty.feed, st.dirty.failures, st.dirty.chart
		st.dirty.feed, st.dirty.failures, st.dirty.chart = false, false, false
	}
	if !st.dirty.any() && len(st.pending) == 0 && !st.changed.any() {
		st.dirty.feed, st.dirty.failures, st.dirty.chart = later.feed, later.failures, later.chart
		return
	}
	st.stats.Flushes++
	st.seq++
	now := h.cfg.Now()
	// JSON frames are encoded here, once per set of topics.
	var jsonFrames map[string][]byte
	if st.counts[viewJSON] > 0 {
		jsonFrames = map[string][]byte{}
		for c := range st.clients {
			if _, ok := jsonFrames[c.topics.key]; c.view == viewJSON && !ok {
				jsonFrames[c.topics.key] = h.jsonFrame(st, now, c.topics)
			}
		}
	}
	st.stats.LastSeq = st.seq
	job := &renderJob{json: jsonFrames, version: st.version, seq: st.seq}
	if st.counts[viewPage] > 0 || st.counts[viewPageRO] > 0 {
		job.parts = h.pageParts(st, false)
	}
	if st.counts[viewWall] > 0 {
		job.wall = h.wallParts(st, now, false)
	}
	job.clients = make([]*client, 0, len(st.clients))
	for c := range st.clients {
		job.clients = append(job.clients, c)
	}
	st.render(job)
	st.changed.reset() // taken by pageParts, or no page is open
	clear(st.dirty.jobs)
	st.dirty = dirty{jobs: st.dirty.jobs, feed: later.feed, failures: later.failures, chart: later.chart}
	st.pending = st.pending[:0]
}

// sendTo queues a frame without blocking; a client that cannot keep up is
// closed with 1013 (try again later), so the browser reconnects and gets a
// fresh snapshot instead of slowing everyone else down. It reports whether
// the client is still connected.
func (h *Hub) sendTo(st *hubState, c *client, frame []byte) bool {
	if len(frame) == 0 {
		return true
	}
	select {
	case c.send <- frame:
		st.stats.FramesSent++
		return true
	default:
		st.stats.FramesDrop++
		st.stats.SlowClosed++
		h.drop(st, c, websocket.StatusTryAgainLater, "too slow, reconnect")
		return false
	}
}

func (h *Hub) drop(st *hubState, c *client, code websocket.StatusCode, reason string) {
	if _, ok := st.clients[c]; !ok {
		return
	}
	delete(st.clients, c)
	st.counts[c.view]--
	c.closeCode, c.reason = code, reason
	close(c.quit)
}

// query runs f on the hub goroutine and waits for it. ctx bounds only the
// wait for the hub to take f: once taken, f writes into the caller's
// variables, so query waits for it to finish (it runs at once and never
// blocks) rather than return while f still writes.
func (h *Hub) query(ctx context.Context, f func(*hubState)) error {
	done := make(chan struct{})
	select {
	case h.queries <- func(st *hubState) { f(st); close(done) }:
	case <-h.done:
		return errHubStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done
	return nil
}

// Stats reports the hub's counters.
func (h *Hub) Stats(ctx context.Context) (HubStats, error) {
	var s HubStats
	err := h.query(ctx, func(st *hubState) {
		s = st.stats
		s.PageClients, s.WallClients, s.JSONClients = st.counts[viewPage]+st.counts[viewPageRO], st.counts[viewWall], st.counts[viewJSON]
		s.Clients = len(st.clients)
	})
	return s, err
}

// View returns a copy of the dashboard's current state, for a first page load.
func (h *Hub) View(ctx context.Context) (templates.View, error) {
	var v templates.View
	err := h.query(ctx, func(st *hubState) { v = h.view(st, h.cfg.Now()) })
	return v, err
}

// PublishAudit tells the hub an audit entry was stored: open audit pages
// re-read their table, and /ws/events clients get it as an "audit" frame.
func (h *Hub) PublishAudit(ctx context.Context, e audit.Entry) {
	_ = h.query(ctx, func(st *hubState) {
		st.changed.audit = true
		st.pending = append(st.pending, pending{Type: "audit", At: e.At, Data: map[string]any{"audit": e}})
	})
}

// Seq is the hub's sequence number now: it changes with every frame that
// changes something, so an answer made at one seq stays right until the next.
func (h *Hub) Seq(ctx context.Context) (uint64, error) {
	var seq uint64
	err := h.query(ctx, func(st *hubState) { seq = st.seq })
	return seq, err
}
