// Package clusterevents carries every Canal process's job, work and outbox
// events to the other processes that share its database, so that each
// process's dashboard hub sees the whole system. It publishes this
// process's events in small batches and feeds the others' into the same
// channels as its own, marked with their Origin. The carrier is
// PostgreSQL's NOTIFY or NATS (Transport); with none (SQLite: one
// process) it only passes the local events through.
//
// Events are a live view, not a record: one that cannot be sent (a full
// buffer, a carrier down) is dropped and counted. The figures that must be
// exact (windows, queue depths, outbox counts) are read from the database.
package clusterevents

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
)

// Transport carries payloads between the processes of one database.
type Transport interface {
	// Publish sends payload to every listening process, this one too.
	Publish(ctx context.Context, payload []byte) error
	// Listen calls deliver with every payload published by any process
	// until ctx ends (then it returns nil) or the carrier fails.
	Listen(ctx context.Context, deliver func(payload []byte)) error
}

// Config configures a Bridge.
type Config struct {
	// Process is this process's id (queue.Process.ID): its own events
	// come back from the carrier and are skipped.
	Process string
	// Transport carries the events; nil passes the local ones through.
	Transport Transport
	// Jobs and Outbox are this process's events (the processor's and the
	// relay's channels); nil for none.
	Jobs   <-chan jobs.Event
	Outbox <-chan outbox.Event
	// FlushEvery is how long local events gather into one payload before
	// it is sent (default 50 ms); a full payload goes at once.
	FlushEvery time.Duration
	// MaxPayload bounds a payload in bytes (default 7000: PostgreSQL's
	// NOTIFY takes under 8000 with the schema's name).
	MaxPayload int
	// Backlog bounds the payloads waiting for the carrier (default 256);
	// past it they are dropped and counted.
	Backlog int
	Logger  *slog.Logger
}

// Stats are the bridge's counters.
type Stats struct {
	Published uint64 `json:"published"` // events sent to the carrier
	Received  uint64 `json:"received"`  // other processes' events fed to the hub
	Dropped   uint64 `json:"dropped"`   // events not sent: backlog full, too large or the carrier failed
	Payloads  uint64 `json:"payloads"`  // payloads sent
}

// Bridge joins this process's events with the other processes'. Its owner
// runs Run; the hub reads Jobs and Outbox.
type Bridge struct {
	cfg                           Config
	jobsOut                       chan jobs.Event
	outboxOut                     chan outbox.Event
	published, received, dropped  atomic.Uint64
	payloads                      atomic.Uint64
	errorLogged, listenErrorShown atomic.Bool
}

// New returns a bridge; nothing moves until Run.
func New(cfg Config) *Bridge {
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = 50 * time.Millisecond
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = 7000
	}
	if cfg.Backlog <= 0 {
		cfg.Backlog = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Bridge{cfg: cfg, jobsOut: make(chan jobs.Event, 256), outboxOut: make(chan outbox.Event, 256)}
}

// Jobs is every process's job and work events: this one's as they were,
// the others' with Origin set. It is never closed.
func (b *Bridge) Jobs() <-chan jobs.Event { return b.jobsOut }

// Outbox is every process's outbox events, like Jobs.
func (b *Bridge) Outbox() <-chan outbox.Event { return b.outboxOut }

// Stats reports the counters.
func (b *Bridge) Stats() Stats {
	return Stats{Published: b.published.Load(), Received: b.received.Load(), Dropped: b.dropped.Load(), Payloads: b.payloads.Load()}
}

// Run moves events until ctx ends.
func (b *Bridge) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var payloads chan payload
	if b.cfg.Transport != nil {
		payloads = make(chan payload, b.cfg.Backlog)
		wg.Go(func() { b.send(ctx, payloads) })
		wg.Go(func() { b.listen(ctx) })
	}
	b.forward(ctx, payloads)
}

// forward passes the local events to the hub and gathers them into
// payloads for the carrier (none when payloads is nil).
func (b *Bridge) forward(ctx context.Context, payloads chan<- payload) {
	in, out := b.cfg.Jobs, b.cfg.Outbox
	bat := batch{process: b.cfg.Process, max: b.cfg.MaxPayload}
	var flush <-chan time.Time
	var timer *time.Timer
	ship := func() {
		if bat.empty() {
			return
		}
		p, n := bat.take()
		select {
		case payloads <- payload{p, uint64(n)}:
		default:
			b.dropped.Add(uint64(n))
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-in:
			select {
			case b.jobsOut <- ev:
			case <-ctx.Done():
				return
			}
			if payloads != nil {
				for _, raw := range encodeJob(ev, bat.room()) {
					if !bat.fits(raw) {
						ship()
					}
					if !bat.add('j', raw) {
						b.dropped.Add(1) // larger than a payload even alone
					}
				}
			}
		case ev := <-out:
			select {
			case b.outboxOut <- ev:
			case <-ctx.Done():
				return
			}
			if payloads != nil {
				if raw := encodeOutbox(ev); raw != nil {
					if !bat.fits(raw) {
						ship()
					}
					if !bat.add('o', raw) {
						b.dropped.Add(1)
					}
				}
			}
		case <-flush:
			flush = nil
			ship()
			continue
		}
		if flush == nil && !bat.empty() {
			if timer == nil {
				timer = time.NewTimer(b.cfg.FlushEvery)
				defer timer.Stop()
			} else {
				timer.Reset(b.cfg.FlushEvery)
			}
			flush = timer.C
		}
	}
}

// payload is an encoded envelope and how many events it holds.
type payload struct {
	b []byte
	n uint64
}

// send hands payloads to the carrier one at a time.
func (b *Bridge) send(ctx context.Context, payloads <-chan payload) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-payloads:
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := b.cfg.Transport.Publish(pctx, p.b)
			cancel()
			n := p.n
			if err != nil {
				b.dropped.Add(n)
				if ctx.Err() == nil && b.errorLogged.CompareAndSwap(false, true) {
					b.cfg.Logger.Warn("cluster events: publishing failed; other processes' dashboards miss this one's events until it works again", "err", err)
				}
				continue
			}
			if b.errorLogged.CompareAndSwap(true, false) {
				b.cfg.Logger.Info("cluster events: publishing works again")
			}
			b.published.Add(n)
			b.payloads.Add(1)
		}
	}
}

// listen feeds the other processes' events to the hub, listening again a
// second after the carrier fails.
func (b *Bridge) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := b.cfg.Transport.Listen(ctx, func(p []byte) { b.deliver(ctx, p) })
		if ctx.Err() != nil {
			return
		}
		if err != nil && b.listenErrorShown.CompareAndSwap(false, true) {
			b.cfg.Logger.Warn("cluster events: listening failed; this dashboard shows only its own process until it works again", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (b *Bridge) deliver(ctx context.Context, p []byte) {
	var env envelope
	if err := json.Unmarshal(p, &env); err != nil {
		b.cfg.Logger.Debug("cluster events: unreadable payload", "err", err)
		return
	}
	if b.listenErrorShown.CompareAndSwap(true, false) {
		b.cfg.Logger.Info("cluster events: listening works again")
	}
	if env.Process == "" || env.Process == b.cfg.Process {
		return
	}
	for _, raw := range env.Jobs {
		var ev jobs.Event
		if json.Unmarshal(raw, &ev) != nil {
			continue
		}
		ev.Origin, ev.Dropped = env.Process, 0
		b.received.Add(1)
		select {
		case b.jobsOut <- ev:
		case <-ctx.Done():
			return
		}
	}
	for _, raw := range env.Outbox {
		var ev outbox.Event
		if json.Unmarshal(raw, &ev) != nil {
			continue
		}
		ev.Origin = env.Process
		b.received.Add(1)
		select {
		case b.outboxOut <- ev:
		case <-ctx.Done():
			return
		}
	}
}
