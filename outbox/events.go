package outbox

import (
	"context"
	"fmt"
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
	// Origin is the id of the process that published the event when it
	// came from another process (internal/clusterevents); empty for this
	// process's own.
	Origin string `json:"origin,omitempty"`
}

// CountCap bounds each status count in Stats: counting stops there, so a
// count equal to CountCap means "at least" and the stats query costs the
// same on a table of millions.
const CountCap = 100_000

// Stats is a snapshot of the outbox, computed once per StatsInterval by the
// running relay and shared by every viewer. Every figure is read from the
// table, so it counts every process's messages (a cluster figure) and a
// restart changes none of it. Counts stop at CountCap.
type Stats struct {
	At         time.Time `json:"at"`
	Pending    int64     `json:"pending"`
	Inflight   int64     `json:"inflight"`
	Dispatched int64     `json:"dispatched"` // still retained
	Dead       int64     `json:"dead"`
	// OldestPendingSeconds is the age of the oldest message not yet
	// delivered (pending or inflight), 0 when there is none.
	OldestPendingSeconds float64 `json:"oldestPendingSeconds"`
	// DispatchRate is messages per second dispatched over the minute
	// before At, by every process.
	DispatchRate float64 `json:"dispatchRate"`
	// Commit-to-dispatch latency of the messages dispatched in the minute
	// before At (at most the latest latencySamples), in milliseconds.
	LatencyP50Ms  float64 `json:"latencyP50Ms"`
	LatencyP99Ms  float64 `json:"latencyP99Ms"`
	DroppedEvents int64   `json:"droppedEvents"`
	// Destinations are this process's destinations with the state of
	// their circuit breakers (see Relay.Destinations).
	Destinations []Destination `json:"destinations,omitempty"`
}

const (
	rateWindow     = time.Minute
	latencyWindow  = time.Minute
	latencySamples = 4096
)

// statsLoop publishes a snapshot every StatsInterval.
func (r *Relay) statsLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.publishStats(ctx)
		case <-r.statsNow:
			r.publishStats(ctx)
		}
	}
}

// refreshStats has the running relay publish a snapshot now.
func (r *Relay) refreshStats() {
	select {
	case r.statsNow <- struct{}{}:
	default: // one is asked for already
	}
}

func (r *Relay) publishStats(ctx context.Context) {
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
	r.stats.Store(&s)
	r.emit(Event{Type: EventStats, At: s.At, Stats: &s})
}

// recent is the dispatch rate and the commit-to-dispatch percentiles over
// the minute before now, read from the table.
func (r *Relay) recent(ctx context.Context, now time.Time) (rate, p50, p99 float64, err error) {
	until := now.UnixMicro() + 1
	from := until - rateWindow.Microseconds()
	done := queue.Filter{Queue: queueName, States: []queue.State{queue.StateDone}}
	n, err := r.drv.CountByFinish(ctx, done, from, rateWindow.Microseconds(), 1)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("dispatch rate: %w", err)
	}
	rate = float64(n[0]) / rateWindow.Seconds()
	done.FinishedFrom, done.FinishedBefore = until-latencyWindow.Microseconds(), until
	lat, err := r.drv.TimeToFinish(ctx, done, latencySamples)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("dispatch latency: %w", err)
	}
	p50, p99 = percentiles(lat)
	return rate, p50, p99, nil
}

// percentiles are the 50th and 99th of ds, in milliseconds (0 if empty).
func percentiles(ds []time.Duration) (p50, p99 float64) {
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	pick := func(q float64) float64 {
		return float64(ds[min(len(ds)-1, int(q*float64(len(ds))))].Microseconds()) / 1000
	}
	return pick(0.50), pick(0.99)
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
		Destinations:  r.Destinations(),
	}
	if oldest != 0 {
		s.OldestPendingSeconds = max(0, now.Sub(queue.FromUS(oldest)).Seconds())
	}
	if s.DispatchRate, s.LatencyP50Ms, s.LatencyP99Ms, err = r.recent(ctx, now); err != nil {
		return Stats{}, err
	}
	return s, nil
}
