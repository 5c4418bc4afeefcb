package outbox

import (
	"context"
	"slices"
	"time"

	"github.com/canalhq/canal/internal/queue"
)

// Event types published on Relay.Events.
const (
	EventAdded          = "added"           // committed through Relay.Transaction
	EventDispatched     = "dispatched"      //
	EventRetryScheduled = "retry_scheduled" // an attempt failed; another is due later
	EventDead           = "dead"            // out of attempts
	EventRetried        = "retried"         // retried by hand (Message set, or Count for a bulk retry)
	EventDeleted        = "deleted"         // a dead message deleted by hand
	EventStats          = "stats"           // the periodic snapshot
)

// Event is a state change of the outbox, or a stats snapshot.
type Event struct {
	Type    string    `json:"type"`
	At      time.Time `json:"at"`
	Message *Summary  `json:"message,omitempty"`
	Topic   string    `json:"topic,omitempty"` // the message's, or that of a bulk retry ("" for all)
	Count   int64     `json:"count,omitempty"` // bulk retry
	Stats   *Stats    `json:"stats,omitempty"`
}

// CountCap bounds each status count in Stats: counting stops there, so a
// count equal to CountCap means "at least" and the stats query costs the
// same on a table of millions.
const CountCap = 100_000

// Stats is a snapshot of the outbox, computed once per StatsInterval by the
// running relay and shared by every viewer. Counts stop at CountCap.
type Stats struct {
	At         time.Time `json:"at"`
	Pending    int64     `json:"pending"`
	Inflight   int64     `json:"inflight"`
	Dispatched int64     `json:"dispatched"` // still retained
	Dead       int64     `json:"dead"`
	// OldestPendingSeconds is the age of the oldest message not yet
	// delivered (pending or inflight), 0 when there is none.
	OldestPendingSeconds float64 `json:"oldestPendingSeconds"`
	// DispatchRate is messages per second dispatched by this relay over
	// the last rateWindow.
	DispatchRate float64 `json:"dispatchRate"`
	// Commit-to-dispatch latency of this relay's recent dispatches (at
	// most the last latencySamples, within latencyWindow), in milliseconds.
	LatencyP50Ms  float64 `json:"latencyP50Ms"`
	LatencyP99Ms  float64 `json:"latencyP99Ms"`
	DroppedEvents int64   `json:"droppedEvents"`
}

const (
	rateWindow     = 10 * time.Second
	latencyWindow  = time.Minute
	latencySamples = 4096
)

type sample struct {
	at  time.Time
	lat time.Duration
}

// window holds recent dispatches; it belongs to the relay's stats loop.
type window struct {
	ring []sample
	next int
}

func newWindow() *window { return &window{ring: make([]sample, 0, latencySamples)} }

func (w *window) add(at time.Time, lat time.Duration) {
	if len(w.ring) < latencySamples {
		w.ring = append(w.ring, sample{at, lat})
		return
	}
	w.ring[w.next] = sample{at, lat}
	w.next = (w.next + 1) % latencySamples
}

// summary returns the dispatch rate and latency percentiles at now. When the
// ring holds fewer than rateWindow's dispatches, the rate is exact; beyond
// that it is measured over the span the ring covers.
func (w *window) summary(now time.Time) (rate, p50, p99 float64) {
	var lats []time.Duration
	var inRate int
	oldest := now
	for _, s := range w.ring {
		if now.Sub(s.at) <= latencyWindow {
			lats = append(lats, s.lat)
		}
		if now.Sub(s.at) <= rateWindow {
			inRate++
			if s.at.Before(oldest) {
				oldest = s.at
			}
		}
	}
	span := rateWindow
	if len(w.ring) == latencySamples && inRate == latencySamples {
		// Full ring inside the window: rate over the time it covers.
		span = max(now.Sub(oldest), time.Millisecond)
	}
	rate = float64(inRate) / span.Seconds()
	if len(lats) == 0 {
		return rate, 0, 0
	}
	slices.Sort(lats)
	pct := func(p float64) float64 {
		i := int(p * float64(len(lats)-1))
		return float64(lats[i]) / float64(time.Millisecond)
	}
	return rate, pct(0.50), pct(0.99)
}

// statsLoop owns the window of recent dispatches: it takes the samples
// the engine's completer sends and publishes a snapshot every StatsInterval.
func (r *Relay) statsLoop(ctx context.Context, w *window, samples <-chan sample) {
	t := time.NewTicker(r.cfg.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-samples:
			w.add(s.at, s.lat)
		case <-t.C:
			r.publishStats(ctx, w)
		}
	}
}

func (r *Relay) publishStats(ctx context.Context, w *window) {
	// Not cut by the relay's stop: a query cancelled mid-flight is logged
	// as an error by gorm at every shutdown. The timeout still bounds it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.StatsInterval*5)
	defer cancel()
	began := time.Now()
	s, err := r.dbStats(cctx)
	if err := r.outage.Load().Observe(began, err); err != nil && ctx.Err() == nil {
		r.log.Warn("outbox stats failed", "err", err)
	}
	if err != nil {
		return
	}
	s.DispatchRate, s.LatencyP50Ms, s.LatencyP99Ms = w.summary(s.At)
	r.stats.Store(&s)
	r.emit(Event{Type: EventStats, At: s.At, Stats: &s})
}

func (r *Relay) dbStats(ctx context.Context) (Stats, error) {
	c, err := r.drv.Count(ctx, queueName, "", CountCap)
	if err != nil {
		return Stats{}, err
	}
	oldest, err := r.drv.OldestOpen(ctx, queueName)
	if err != nil {
		return Stats{}, err
	}
	now := r.now()
	s := Stats{
		At:         now,
		Pending:    min(CountCap, c[queue.StatePending]+c[queue.StateHeld]+c[queue.StateRescued]),
		Inflight:   c[queue.StateRunning],
		Dispatched: c[queue.StateDone], Dead: c[queue.StateDead],
		DroppedEvents: r.events.Dropped(),
	}
	if oldest != 0 {
		s.OldestPendingSeconds = max(0, now.Sub(queue.FromUS(oldest)).Seconds())
	}
	return s, nil
}
