package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canalhq/canal/internal/outage"
	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/dialect"
	"gorm.io/gorm"
)

// DeadPolicy says what a dead message does to the later messages of its key.
type DeadPolicy int

const (
	// BlockKey holds back every later message of the key until the dead one
	// is retried or deleted: order is never broken. The default.
	BlockKey DeadPolicy = iota
	// SetAside lets later messages of the key go on; the dead one waits
	// apart, for a retry by hand, which then delivers it after them.
	SetAside
)

// Config tunes a Relay. Zero fields take the defaults shown.
type Config struct {
	// BatchSize is the most messages claimed per query: 2×Workers (a
	// claim fetches ahead, up to twice the free workers, so workers never
	// wait on a claim).
	BatchSize int
	Workers   int // parallel publishes: 32 (publishers mostly wait on I/O)

	// Lease is how long a claim lasts without renewal: 10 s. The process's
	// heartbeat renews the leases of the messages it is sending, up to
	// PublishTimeout (which must be shorter); a message claimed by a
	// process that died is taken over, by any process, once its lease
	// expires, so this bounds the delay a crash adds.
	Lease          time.Duration
	PublishTimeout time.Duration // 5 s; < Lease

	PollInterval time.Duration // fallback when nothing wakes the relay: 500 ms

	// The retry budget of a message: MaxAttempts message errors (see
	// MessageError) make it dead, each followed by a delay from
	// BackoffBase doubling up to BackoffMax (with jitter). The defaults,
	// 25 attempts, 1 s up to 1 h, span about 13 hours. A destination that
	// is down spends none of it (see Named): its messages wait, however
	// long it is down. Budgets overrides it per topic.
	MaxAttempts int           // 25
	BackoffBase time.Duration // 1 s
	BackoffMax  time.Duration // 1 h
	// Budgets are retry budgets per topic; a zero field takes the one
	// above.
	Budgets map[string]Budget

	// Each destination (see Named) has a circuit breaker: BreakerFailures
	// destination errors in a row open it; its messages then wait, unsent,
	// and BreakerOpen later one of them probes it (half-open): delivered,
	// the breaker closes and the rest go out at once; failed, it stays
	// open BreakerOpen more. The breaker runs on real time, not Clock.
	BreakerFailures int           // 5
	BreakerOpen     time.Duration // 5 s

	Retention       time.Duration // age after which dispatched messages are deleted: 24 h
	CleanupInterval time.Duration // 1 min
	CleanupBatch    int           // rows deleted per statement: 1000

	StatsInterval time.Duration // 1 s
	EventBuffer   int           // size of the Events channel: 1024

	DefaultDeadPolicy DeadPolicy            // BlockKey
	DeadPolicies      map[string]DeadPolicy // per topic

	Clock  func() time.Time // time.Now; every stored time comes from it, in UTC
	Logger *slog.Logger     // slog.Default(); tagged by the caller (a "component"), never here

	// WatchOnly: the relay sends nothing. It claims no message and only
	// reports the outbox (stats, the events of admin actions), leaving the
	// messages to the processes that can send them: a standalone dashboard
	// with no publisher of its own runs so.
	WatchOnly bool

	// Process is this program's presence in the queue engine (heartbeat,
	// rescuer, wake-ups), shared with its other users and started and
	// stopped by its owner; nil: Run makes and runs one of its own.
	Process *queue.Process
}

func (c Config) withDefaults() (Config, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(i *int, v int) {
		if *i == 0 {
			*i = v
		}
	}
	defInt(&c.Workers, 32)
	defInt(&c.BatchSize, 2*c.Workers)
	def(&c.Lease, 10*time.Second)
	def(&c.PublishTimeout, 5*time.Second)
	def(&c.PollInterval, 500*time.Millisecond)
	defInt(&c.MaxAttempts, 25)
	def(&c.BackoffBase, time.Second)
	def(&c.BackoffMax, time.Hour)
	defInt(&c.BreakerFailures, 5)
	def(&c.BreakerOpen, 5*time.Second)
	def(&c.Retention, 24*time.Hour)
	def(&c.CleanupInterval, time.Minute)
	defInt(&c.CleanupBatch, 1000)
	def(&c.StatsInterval, time.Second)
	defInt(&c.EventBuffer, 1024)
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	for topic, b := range c.Budgets {
		if b.MaxAttempts < 0 || b.BackoffBase < 0 || b.BackoffMax < 0 {
			return c, fmt.Errorf("%w: budget of topic %q: negative value", ErrInvalidConfig, topic)
		}
		if err := c.budget(topic).policy().Validate(); err != nil {
			return c, fmt.Errorf("%w: budget of topic %q: BackoffMax below BackoffBase", ErrInvalidConfig, topic)
		}
	}
	for _, d := range []time.Duration{c.Lease, c.PublishTimeout, c.PollInterval, c.BackoffBase, c.BackoffMax, c.Retention, c.CleanupInterval, c.StatsInterval, c.BreakerOpen} {
		if d < 0 {
			return c, fmt.Errorf("%w: negative duration %s", ErrInvalidConfig, d)
		}
	}
	switch {
	case c.Workers < 0, c.BatchSize < 0, c.MaxAttempts < 0, c.CleanupBatch < 0, c.EventBuffer < 0, c.BreakerFailures < 0:
		return c, fmt.Errorf("%w: negative size", ErrInvalidConfig)
	case c.PublishTimeout >= c.Lease:
		return c, fmt.Errorf("%w: PublishTimeout %s must be shorter than Lease %s", ErrInvalidConfig, c.PublishTimeout, c.Lease)
	case c.BackoffMax < c.BackoffBase:
		return c, fmt.Errorf("%w: BackoffMax %s < BackoffBase %s", ErrInvalidConfig, c.BackoffMax, c.BackoffBase)
	}
	return c, nil
}

// Budget is a topic's retry budget (see Config.MaxAttempts); a zero field
// takes the relay's.
type Budget struct {
	MaxAttempts int
	BackoffBase time.Duration
	BackoffMax  time.Duration
}

func (b Budget) policy() queue.RetryPolicy {
	return queue.RetryPolicy{Base: b.BackoffBase, Max: b.BackoffMax}
}

// budget is topic's budget, its zero fields filled from c.
func (c Config) budget(topic string) Budget {
	b := c.Budgets[topic]
	if b.MaxAttempts == 0 {
		b.MaxAttempts = c.MaxAttempts
	}
	if b.BackoffBase == 0 {
		b.BackoffBase = c.BackoffBase
	}
	if b.BackoffMax == 0 {
		b.BackoffMax = max(c.BackoffMax, b.BackoffBase)
	}
	return b
}

// Relay delivers committed outbox messages to the publishers registered for
// their topics: it is the outbox's use of the queue engine (a Client of the
// "outbox" queue whose handler publishes). Register publishers, then run it
// with Run; its owner stops it by cancelling Run's context.
type Relay struct {
	db  *gorm.DB
	drv queue.Driver
	cfg Config
	log *slog.Logger

	// Publishers are registered before Run and read by its workers; the
	// lock makes a late Register safe rather than racy.
	mu       sync.RWMutex
	pubs     map[string]Publisher
	fallback Publisher

	// The circuit breaker of each destination, by name (destination.go).
	bmu      sync.Mutex
	breakers map[string]*breaker

	events *queue.Emitter[Event]
	stats  atomic.Pointer[Stats] // the last snapshot, written by Run's stats loop
	// statsNow asks the stats loop for a snapshot at once: an action by
	// hand changed the counts, and every view should show it now.
	statsNow chan struct{}
	running  atomic.Bool
	// The client of the running Run, for Wake.
	client atomic.Pointer[queue.Client]
	// The running Run's view of the database (its queue process's): an
	// outage is logged once, not by each stats poll.
	outage atomic.Pointer[outage.Monitor]
}

// New returns a relay for the outbox in db (see Migrate). The engine's
// driver for db's dialect (SQLite or PostgreSQL) is chosen here, once.
func New(db *gorm.DB, cfg Config) (*Relay, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	drv, err := dialect.For(db)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDialect, err)
	}
	return &Relay{
		db: db, drv: drv, cfg: cfg, log: cfg.Logger,
		pubs:     map[string]Publisher{},
		breakers: map[string]*breaker{},
		events:   queue.NewEmitter[Event](cfg.EventBuffer),
		statsNow: make(chan struct{}, 1),
	}, nil
}

// Register sets the publisher of topic, replacing any earlier one. A
// publisher that holds no Named destination is one destination, named
// "topic:<topic>", with its own circuit breaker.
func (r *Relay) Register(topic string, p Publisher) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pubs[topic] = autoNamed("topic:"+topic, p)
}

// RegisterDefault sets the publisher of every topic that has none of its own.
// A message with no publisher at all fails its attempts with ErrNoPublisher.
// A publisher that holds no Named destination is the destination "default".
func (r *Relay) RegisterDefault(p Publisher) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fallback = autoNamed("default", p)
}

func autoNamed(name string, p Publisher) Publisher {
	if n, ok := p.(*named); ok && !n.auto {
		return p
	}
	return &named{name: name, p: p, auto: true}
}

func (r *Relay) publisher(topic string) Publisher {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if p, ok := r.pubs[topic]; ok {
		return p
	}
	return r.fallback
}

// Wake tells the relay that messages were committed; it never blocks. On
// PostgreSQL every commit also wakes every relay, in every process.
func (r *Relay) Wake() {
	if c := r.client.Load(); c != nil {
		c.Wake()
	}
}

// Events returns the relay's state changes and periodic stats. Sends never
// block: when the channel is full an event is dropped and counted (see
// Stats.DroppedEvents). The channel is never closed.
func (r *Relay) Events() <-chan Event { return r.events.C() }

func (r *Relay) emit(ev Event) {
	if ev.Message != nil && ev.Topic == "" {
		ev.Topic = ev.Message.Topic
	}
	r.events.Emit(ev)
}

func (r *Relay) now() time.Time { return r.cfg.Clock().UTC() }

// Add is the package's Add with the relay's clock.
func (r *Relay) Add(ctx context.Context, tx *gorm.DB, msg Message) (string, error) {
	return add(ctx, tx, msg, r.cfg.Clock, r.drv)
}

// Close closes the statements the relay prepared on its database; call it
// once done with the relay (Run returned, no call in flight). A call made
// afterwards prepares afresh.
func (r *Relay) Close() error { return r.drv.Close() }

// Transaction runs fn in a transaction on the relay's database and, once it
// has committed, wakes the relay and announces the messages fn added with Add,
// so they are delivered at once instead of at the next poll.
func (r *Relay) Transaction(ctx context.Context, fn func(tx *gorm.DB) error) error {
	col := &collector{clock: r.cfg.Clock, drv: r.drv}
	if err := r.db.WithContext(context.WithValue(ctx, collectorKey{}, col)).Transaction(fn); err != nil {
		return err
	}
	if len(col.added) > 0 {
		r.Wake()
		at := r.now()
		for i := range col.added {
			r.emit(Event{Type: EventAdded, At: at, Message: &col.added[i]})
		}
	}
	return nil
}

// Run relays until ctx is cancelled. It then stops claiming, lets the
// publishes in flight finish (each bounded by PublishTimeout), gives back
// what it claimed but had not started, and records every outcome, so it
// leaves no lease behind; it returns once every goroutine it started has
// stopped. A Relay runs at most once at a time.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("outbox: relay is already running")
	}
	defer r.running.Store(false)
	// A stopped relay's snapshot goes stale: Stats then counts afresh.
	defer r.stats.Store(nil)

	proc := r.cfg.Process
	if proc == nil {
		proc = queue.NewProcess(r.drv, queue.ProcessConfig{
			Heartbeat: min(time.Second, r.cfg.Lease/3), RescueInterval: min(time.Second, r.cfg.PollInterval),
			Clock: r.cfg.Clock, Logger: r.cfg.Logger,
		})
		if err := proc.Start(ctx); err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		defer func() {
			if err := proc.Stop(context.WithoutCancel(ctx)); err != nil {
				r.log.Warn("outbox: stopping the queue process", "err", err)
			}
		}()
	}
	r.outage.Store(proc.Outage())
	client, err := queue.NewClient(r.drv, proc, queue.Config{
		Queue: queueName, Workers: r.cfg.Workers, MaxFetch: r.cfg.BatchSize,
		Lease: r.cfg.Lease, Timeout: r.cfg.PublishTimeout, PollInterval: r.cfg.PollInterval,
		MaxAttempts:    r.cfg.MaxAttempts,
		MaxAttemptsFor: func(it *queue.Item) int { return r.cfg.budget(it.Kind).MaxAttempts },
		Retry:          queue.RetryPolicy{Base: r.cfg.BackoffBase, Max: r.cfg.BackoffMax},
		RetryFor:       func(it queue.Item) queue.RetryPolicy { return r.policy(it.Kind) },
		DeadBlocksKey:  func(it queue.Item) bool { return r.deadPolicy(it.Kind) == BlockKey },
		Handler:        queue.HandlerFunc(r.publish),
		OnEvent:        r.onEvent,
		Clock:          r.cfg.Clock, Logger: r.cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	// The first snapshot counts what waits before anything is sent.
	r.publishStats(ctx)
	if r.cfg.WatchOnly {
		client = nil
		r.log.Info("outbox relay watching only: it sends nothing", "process", proc.ID())
	} else {
		if err := client.Start(ctx); err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		r.client.Store(client)
		r.log.Info("outbox relay started", "workers", r.cfg.Workers, "lease", r.cfg.Lease, "poll", r.cfg.PollInterval, "process", proc.ID())
	}

	loops, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	var others sync.WaitGroup
	others.Go(func() { r.statsLoop(loops) })
	others.Go(func() { r.cleaner(loops) })

	<-ctx.Done()
	r.client.Store(nil)
	if client != nil {
		if err := client.Stop(context.WithoutCancel(ctx)); err != nil {
			r.log.Warn("outbox: stopping the relay", "err", err)
		}
	}
	stopLoops()
	others.Wait()
	r.log.Info("outbox relay stopped")
	return nil
}

// logSuspectsFound is logged when the relay finds messages cut short.
const logSuspectsFound = queue.LogSuspectsFound

// onEvent turns an engine event into the outbox's; it runs in the engine's
// completer and never blocks.
func (r *Relay) onEvent(ev queue.Event) {
	it := ev.Item
	var typ string
	switch ev.Type {
	case queue.EventDone:
		typ = EventDispatched
	case queue.EventRetry:
		typ = EventRetryScheduled
	case queue.EventDead:
		typ = EventDead
	default:
		return
	}
	if ev.Err != nil {
		r.log.Warn("outbox: publish failed", "id", it.PublicID, "topic", it.Kind, "attempt", it.Attempt, "status", status(it.State), "err", ev.Err)
	}
	sum := summary(it)
	r.emit(Event{Type: typ, At: ev.At, Message: &sum})
}

// publish is the engine's handler: one attempt at delivering a message. A
// message error (MessageError) is a failed attempt; any other error means
// a destination is down: the message waits (snoozed), its attempt not
// counted. The destinations that took the message are kept with it.
func (r *Relay) publish(ctx context.Context, it *queue.Item) error {
	p := r.publisher(it.Kind)
	if p == nil {
		return fmt.Errorf("%w %q", ErrNoPublisher, it.Kind)
	}
	d, st := delivery(it)
	a := &attemptState{r: r, delivered: st.delivered, downAt: st.downAt}
	err := p.Publish(context.WithValue(ctx, attemptKey{}, a), d)
	a.mu.Lock()
	defer a.mu.Unlock()
	// The delivered list is saved when some but not all took it, or to
	// complete an earlier partial list; a message sent whole at once
	// writes nothing more.
	var delivered []string
	if len(a.newly) > 0 && (err != nil || len(st.delivered) > 0) {
		delivered = append(st.delivered, a.newly...)
	}
	if delivered != nil || len(a.downNow) > 0 {
		it.SetMeta(withState(it.Meta, delivered, a.downNow))
	}
	if err == nil {
		return nil
	}
	if a.msgErr || IsMessageError(err) {
		return err
	}
	wait := a.wait
	if wait <= 0 {
		wait = r.policy(it.Kind).Delay(1)
	}
	return queue.SnoozeCause(wait, err)
}

// policy is topic's backoff.
func (r *Relay) policy(topic string) queue.RetryPolicy { return r.cfg.budget(topic).policy() }

func (r *Relay) deadPolicy(topic string) DeadPolicy {
	if p, ok := r.cfg.DeadPolicies[topic]; ok {
		return p
	}
	return r.cfg.DefaultDeadPolicy
}

// backoff is the engine's shared retry policy with this relay's settings.
func (r *Relay) backoff(failures int) time.Duration {
	return queue.RetryPolicy{Base: r.cfg.BackoffBase, Max: r.cfg.BackoffMax}.Delay(failures)
}

// cleaner deletes dispatched messages older than Retention, in bounded
// batches so that it never holds a long lock. Dead messages stay.
func (r *Relay) cleaner(ctx context.Context) {
	t := time.NewTicker(r.cfg.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		before := r.now().Add(-r.cfg.Retention).UnixMicro()
		var total int64
		for ctx.Err() == nil {
			began := time.Now()
			n, err := r.drv.Cleanup(ctx, queueName, before, r.cfg.CleanupBatch)
			if err != nil {
				if err := r.outage.Load().Observe(began, err); err != nil && ctx.Err() == nil {
					r.log.Error("outbox cleanup failed", "err", err)
				}
				break
			}
			total += n
			if n < int64(r.cfg.CleanupBatch) {
				break
			}
		}
		if total > 0 {
			r.log.Info("outbox cleanup", "deleted", total)
		}
	}
}
