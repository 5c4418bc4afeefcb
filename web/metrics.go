package web

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is Canal's Prometheus registry. The queues, the outbox and the hub
// are read at scrape time through their public Stats and Health methods, so
// their internals can change without this file; what happens at the edges
// this package owns (requests, commands) and the events the processor and
// relay publish are counted as they pass.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	commands     *prometheus.CounterVec
	commandWait  *prometheus.HistogramVec
	jobRuns      *prometheus.CounterVec
	jobDuration  *prometheus.HistogramVec
	workOutcomes *prometheus.CounterVec
	dispatches   *prometheus.CounterVec
	latency      prometheus.Histogram
}

// MetricSources are what the scrape-time collector reads; nil ones are
// left out.
type MetricSources struct {
	Work   healthReporter // *jobs.Processor: queues, control channel, breakers
	Outbox outboxStatser  // *outbox.Relay: counts by status, oldest pending age
}

// NewMetrics registers every metric, the Go runtime's and the process's.
func NewMetrics(src MetricSources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "canal_http_requests_total", Help: "HTTP requests by route, method and status code.",
	}, []string{"route", "method", "code"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "canal_http_request_duration_seconds", Help: "HTTP request durations by route (WebSockets excluded).",
		Buckets: prometheus.DefBuckets,
	}, []string{"route", "method"})
	m.commands = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "canal_commands_total", Help: "Commands and writes by type and result (ok, failed, denied).",
	}, []string{"command", "result"})
	m.commandWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "canal_command_duration_seconds", Help: "Time from a command's request to its reply: the control channel's wait plus the work.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"command"})
	m.jobRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "canal_job_runs_total", Help: "Recurring job runs by job and result.",
	}, []string{"job", "result"})
	m.jobDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "canal_job_run_duration_seconds", Help: "Recurring job run durations.",
		Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"job"})
	m.workOutcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "canal_work_events_total", Help: "Work item events by kind and type (queued, started, retried, deferred, done, failed, dropped).",
	}, []string{"kind", "event"})
	m.dispatches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "canal_outbox_events_total", Help: "Outbox message events by type (added, dispatched, failed, dead, retried, deleted).",
	}, []string{"event"})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "canal_outbox_dispatch_latency_seconds", Help: "Time from a message's commit to its dispatch.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	})
	m.reg.MustRegister(m.httpRequests, m.httpDuration, m.commands, m.commandWait, m.jobRuns, m.jobDuration,
		m.workOutcomes, m.dispatches, m.latency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&stateCollector{src: src})
	return m
}

// AddHub reports h's clients and frames too; call it before serving.
func (m *Metrics) AddHub(h *Hub) {
	if h != nil {
		m.reg.MustRegister(hubCollector{h})
	}
}

// Registry is where a program adds its own metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) handler() echo.HandlerFunc {
	return echo.WrapHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
}

// instrument counts every request by its route pattern (never the raw
// path, whose ids would grow the label set without bound).
func (m *Metrics) instrument(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		status := c.Response().Status
		if err != nil {
			if he, ok := err.(*echo.HTTPError); ok {
				status = he.Code
			} else if !c.Response().Committed {
				status = http.StatusInternalServerError
			}
		}
		method := c.Request().Method
		m.httpRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
		if !strings.HasPrefix(route, "/ws") {
			m.httpDuration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
		}
		return err
	}
}

// command counts one command and its time to reply.
func (m *Metrics) command(name, result string, took time.Duration) {
	if m == nil {
		return
	}
	m.commands.WithLabelValues(name, result).Inc()
	if result != "denied" {
		m.commandWait.WithLabelValues(name).Observe(took.Seconds())
	}
}

// TapJobs passes the processor's events on to the hub (the returned
// channel) and counts runs and work outcomes on the way, in a goroutine of
// its own that stops when in closes or ctx ends, and then closes its output.
func (m *Metrics) TapJobs(ctx context.Context, in <-chan jobs.Event) <-chan jobs.Event {
	out := make(chan jobs.Event, cap(in))
	go m.CountJobs(ctx, in, out)
	return out
}

// CountJobs is TapJobs run by its caller: it passes in's events on to out,
// counting them, until in closes or ctx ends; then it closes out.
func (m *Metrics) CountJobs(ctx context.Context, in <-chan jobs.Event, out chan<- jobs.Event) {
	defer close(out)
	for {
		select {
		case ev, ok := <-in:
			if !ok {
				return
			}
			m.observeJob(ev)
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

func (m *Metrics) observeJob(ev jobs.Event) {
	switch ev.Type {
	case jobs.EventRunSucceeded, jobs.EventRunFailed:
		if ev.Job == nil {
			return
		}
		result := "ok"
		if ev.Type == jobs.EventRunFailed {
			result = "failed"
		}
		m.jobRuns.WithLabelValues(ev.Job.Name, result).Inc()
		m.jobDuration.WithLabelValues(ev.Job.Name).Observe(ev.Job.LastDuration.Seconds())
	case jobs.EventWorkQueued, jobs.EventWorkStarted, jobs.EventWorkRetried, jobs.EventWorkDeferred,
		jobs.EventWorkDone, jobs.EventWorkFailed, jobs.EventWorkDropped:
		if ev.Work == nil {
			return
		}
		m.workOutcomes.WithLabelValues(ev.Work.Kind, strings.TrimPrefix(string(ev.Type), "work.")).Inc()
	}
}

// TapOutbox passes the relay's events on and measures commit-to-dispatch
// latency on the way; it stops as TapJobs does.
func (m *Metrics) TapOutbox(ctx context.Context, in <-chan outbox.Event) <-chan outbox.Event {
	out := make(chan outbox.Event, cap(in))
	go m.CountOutbox(ctx, in, out)
	return out
}

// CountOutbox is TapOutbox run by its caller, as CountJobs is TapJobs.
func (m *Metrics) CountOutbox(ctx context.Context, in <-chan outbox.Event, out chan<- outbox.Event) {
	defer close(out)
	for {
		select {
		case ev, ok := <-in:
			if !ok {
				return
			}
			m.observeOutbox(ev)
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

func (m *Metrics) observeOutbox(ev outbox.Event) {
	if ev.Type == outbox.EventStats {
		return
	}
	m.dispatches.WithLabelValues(ev.Type).Inc()
	if ev.Type == outbox.EventDispatched && ev.Message != nil && !ev.Message.CreatedAt.IsZero() {
		m.latency.Observe(ev.At.Sub(ev.Message.CreatedAt).Seconds())
	}
}

// stateCollector reads the current state at scrape time.
type stateCollector struct{ src MetricSources }

var (
	descControlDepth = prometheus.NewDesc("canal_control_channel_depth", "Commands waiting in the processor's control channel.", nil, nil)
	descControlCap   = prometheus.NewDesc("canal_control_channel_capacity", "The control channel's capacity.", nil, nil)
	descControlRej   = prometheus.NewDesc("canal_control_channel_rejected_total", "Commands refused because the control channel was full or closed.", nil, nil)
	descControlWait  = prometheus.NewDesc("canal_control_channel_wait_seconds", "Time a command waited in the control channel before the processor took it.", nil, nil)
	descQueueDepth   = prometheus.NewDesc("canal_work_queue_depth", "Work items queued, by priority.", []string{"priority"}, nil)
	descQueueCap     = prometheus.NewDesc("canal_work_queue_capacity", "Each priority queue's capacity.", nil, nil)
	descWorkers      = prometheus.NewDesc("canal_work_workers", "Work pool size.", nil, nil)
	descBusy         = prometheus.NewDesc("canal_work_workers_busy", "Workers running an item.", nil, nil)
	descScheduled    = prometheus.NewDesc("canal_work_scheduled", "Items waiting for a retry backoff, a rate limit or a breaker.", nil, nil)
	descWorkTotal    = prometheus.NewDesc("canal_work_items_total", "Work items since start by outcome (accepted, rejected, evicted, done, failed, retried).", []string{"outcome"}, nil)
	descBreaker      = prometheus.NewDesc("canal_breaker_state", "Each work kind's circuit breaker: 0 closed, 1 half-open, 2 open.", []string{"kind"}, nil)
	descUp           = prometheus.NewDesc("canal_processor_up", "1 while the jobs processor runs.", nil, nil)
	descOutbox       = prometheus.NewDesc("canal_outbox_messages", "Outbox messages by status (each count stops at the count cap).", []string{"status"}, nil)
	descOldest       = prometheus.NewDesc("canal_outbox_oldest_pending_seconds", "Age of the oldest message not yet delivered.", nil, nil)
	descDestBreaker  = prometheus.NewDesc("canal_outbox_breaker_state", "Each outbox destination's circuit breaker in this process: 0 closed, 1 half-open, 2 open (down: its messages wait).", []string{"destination"}, nil)
	descClients      = prometheus.NewDesc("canal_hub_clients", "Connected WebSocket clients by kind.", []string{"view"}, nil)
	descFramesSent   = prometheus.NewDesc("canal_hub_frames_sent_total", "Frames queued to WebSocket clients.", nil, nil)
	descFramesDrop   = prometheus.NewDesc("canal_hub_frames_dropped_total", "Frames dropped because a client could not keep up.", nil, nil)
	descSlowClosed   = prometheus.NewDesc("canal_hub_slow_clients_closed_total", "Clients closed for being too slow.", nil, nil)
	descEventsDrop   = prometheus.NewDesc("canal_events_dropped_total", "Events dropped before the hub read them, by source.", []string{"source"}, nil)
)

func (s *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descControlDepth, descControlCap, descControlRej, descControlWait, descQueueDepth, descQueueCap, descWorkers,
		descBusy, descScheduled, descWorkTotal, descBreaker, descUp, descOutbox, descOldest, descDestBreaker, descEventsDrop} {
		ch <- d
	}
}

func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if s.src.Work != nil {
		h := s.src.Work.Health()
		q := h.Queue
		up := 1.0
		if h.Status == jobs.HealthDown {
			up = 0
		}
		gauge(descUp, up)
		gauge(descControlDepth, float64(q.Control.Len))
		gauge(descControlCap, float64(q.Control.Cap))
		counter(descControlRej, float64(q.Control.Rejected))
		if w := q.ControlWait; len(w.Bounds) == len(w.Buckets) {
			buckets := make(map[float64]uint64, len(w.Bounds))
			for i, b := range w.Bounds {
				buckets[b] = w.Buckets[i]
			}
			ch <- prometheus.MustNewConstHistogram(descControlWait, w.Count, w.Sum, buckets)
		}
		for _, p := range jobs.Priorities() {
			gauge(descQueueDepth, float64(q.Depths[p.String()]), p.String())
		}
		gauge(descQueueCap, float64(q.Capacity))
		gauge(descWorkers, float64(q.Workers))
		gauge(descBusy, float64(q.Busy))
		gauge(descScheduled, float64(q.Scheduled))
		for outcome, v := range map[string]uint64{"accepted": q.Process.Accepted, "rejected": q.Process.Rejected, "evicted": q.Process.Evicted,
			"done": q.Process.Done, "failed": q.Process.Failed, "retried": q.Process.Retried} {
			counter(descWorkTotal, float64(v), outcome)
		}
		for kind, state := range q.Breakers {
			v := 0.0
			switch state {
			case "half-open":
				v = 1
			case "open":
				v = 2
			}
			gauge(descBreaker, v, kind)
		}
		counter(descEventsDrop, float64(q.EventsDropped), "jobs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if s.src.Outbox != nil {
		if st, err := s.src.Outbox.Stats(ctx); err == nil {
			gauge(descOutbox, float64(st.Pending), "pending")
			gauge(descOutbox, float64(st.Inflight), "inflight")
			gauge(descOutbox, float64(st.Dispatched), "dispatched")
			gauge(descOutbox, float64(st.Dead), "dead")
			gauge(descOldest, st.OldestPendingSeconds)
			for _, d := range st.Destinations {
				gauge(descDestBreaker, float64(d.State), d.Name)
			}
			counter(descEventsDrop, float64(st.DroppedEvents), "outbox")
		}
	}
}

// hubCollector reads the hub's counters at scrape time.
type hubCollector struct{ h *Hub }

func (hc hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClients, descFramesSent, descFramesDrop, descSlowClosed} {
		ch <- d
	}
}

func (hc hubCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := hc.h.Stats(ctx)
	if err != nil {
		return
	}
	for view, n := range map[string]int{"page": st.PageClients, "wall": st.WallClients, "json": st.JSONClients} {
		ch <- prometheus.MustNewConstMetric(descClients, prometheus.GaugeValue, float64(n), view)
	}
	for d, v := range map[*prometheus.Desc]uint64{descFramesSent: st.FramesSent, descFramesDrop: st.FramesDrop, descSlowClosed: st.SlowClosed} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
}
