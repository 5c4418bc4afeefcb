package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	BatchSize int // messages claimed per query, at most Workers: 100
	Workers   int // parallel publishes: 32 (publishers mostly wait on I/O)

	// Lease is how long a claim lasts: 10 s. A message claimed by a process
	// that died is claimed again once its lease expires, so this bounds
	// the delay a crash adds. Leases are not renewed: instead a publish is
	// cut at PublishTimeout, which must be shorter, and a relay claims only
	// what its idle workers start at once, so a live relay always finishes
	// (or fails) a message before its lease ends.
	Lease          time.Duration
	PublishTimeout time.Duration // 5 s; < Lease

	PollInterval time.Duration // fallback when nothing wakes the relay: 500 ms

	MaxAttempts int           // failed attempts before a message is dead: 8
	BackoffBase time.Duration // delay after the first failure, doubled after each: 1 s
	BackoffMax  time.Duration // cap of the delay: 5 min

	Retention       time.Duration // age after which dispatched messages are deleted: 24 h
	CleanupInterval time.Duration // 1 min
	CleanupBatch    int           // rows deleted per statement: 1000

	StatsInterval time.Duration // 1 s
	EventBuffer   int           // size of the Events channel: 1024

	DefaultDeadPolicy DeadPolicy            // BlockKey
	DeadPolicies      map[string]DeadPolicy // per topic

	Clock  func() time.Time // time.Now; every stored time comes from it, in UTC
	Logger *slog.Logger     // slog.Default()
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
	defInt(&c.BatchSize, 100)
	def(&c.Lease, 10*time.Second)
	def(&c.PublishTimeout, 5*time.Second)
	def(&c.PollInterval, 500*time.Millisecond)
	defInt(&c.MaxAttempts, 8)
	def(&c.BackoffBase, time.Second)
	def(&c.BackoffMax, 5*time.Minute)
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
	for _, d := range []time.Duration{c.Lease, c.PublishTimeout, c.PollInterval, c.BackoffBase, c.BackoffMax, c.Retention, c.CleanupInterval, c.StatsInterval} {
		if d < 0 {
			return c, fmt.Errorf("%w: negative duration %s", ErrInvalidConfig, d)
		}
	}
	switch {
	case c.Workers < 0, c.BatchSize < 0, c.MaxAttempts < 0, c.CleanupBatch < 0, c.EventBuffer < 0:
		return c, fmt.Errorf("%w: negative size", ErrInvalidConfig)
	case c.PublishTimeout >= c.Lease:
		return c, fmt.Errorf("%w: PublishTimeout %s must be shorter than Lease %s", ErrInvalidConfig, c.PublishTimeout, c.Lease)
	case c.BackoffMax < c.BackoffBase:
		return c, fmt.Errorf("%w: BackoffMax %s < BackoffBase %s", ErrInvalidConfig, c.BackoffMax, c.BackoffBase)
	}
	if c.BatchSize > c.Workers {
		c.BatchSize = c.Workers
	}
	return c, nil
}

// Relay delivers committed outbox messages to the publishers registered for
// their topics. Register publishers, then run it with Run; its owner stops it
// by cancelling Run's context.
type Relay struct {
	db  *gorm.DB
	st  store
	cfg Config
	log *slog.Logger

	// Publishers are registered before Run and read by its workers; the
	// lock makes a late Register safe rather than racy.
	mu       sync.RWMutex
	pubs     map[string]Publisher
	fallback Publisher

	wake    chan struct{}
	events  chan Event
	dropped atomic.Int64
	stats   atomic.Pointer[Stats] // the last snapshot, written by Run's loop
	running atomic.Bool
}

// New returns a relay for the outbox tables in db (see Migrate). The store for
// db's dialect (SQLite or PostgreSQL) is chosen here, once.
func New(db *gorm.DB, cfg Config) (*Relay, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	st, err := storeFor(db)
	if err != nil {
		return nil, err
	}
	return &Relay{
		db: db, st: st, cfg: cfg, log: cfg.Logger.With("component", "outbox"),
		pubs:   map[string]Publisher{},
		wake:   make(chan struct{}, 1),
		events: make(chan Event, cfg.EventBuffer),
	}, nil
}

// Register sets the publisher of topic, replacing any earlier one.
func (r *Relay) Register(topic string, p Publisher) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pubs[topic] = p
}

// RegisterDefault sets the publisher of every topic that has none of its own.
// A message with no publisher at all fails its attempts with ErrNoPublisher.
func (r *Relay) RegisterDefault(p Publisher) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fallback = p
}

func (r *Relay) publisher(topic string) Publisher {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if p, ok := r.pubs[topic]; ok {
		return p
	}
	return r.fallback
}

// Wake tells the relay that messages were committed; it never blocks.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Events returns the relay's state changes and periodic stats. Sends never
// block: when the channel is full an event is dropped and counted (see
// Stats.DroppedEvents). The channel is never closed.
func (r *Relay) Events() <-chan Event { return r.events }

func (r *Relay) emit(ev Event) {
	if ev.Message != nil && ev.Topic == "" {
		ev.Topic = ev.Message.Topic
	}
	select {
	case r.events <- ev:
	default:
		r.dropped.Add(1)
	}
}

func (r *Relay) now() time.Time { return r.cfg.Clock().UTC() }

// Add is the package's Add with the relay's clock.
func (r *Relay) Add(ctx context.Context, tx *gorm.DB, msg Message) (string, error) {
	return add(ctx, tx, msg, r.cfg.Clock)
}

// Transaction runs fn in a transaction on the relay's database and, once it
// has committed, wakes the relay and announces the messages fn added with Add,
// so they are delivered at once instead of at the next poll.
func (r *Relay) Transaction(ctx context.Context, fn func(tx *gorm.DB) error) error {
	col := &collector{clock: r.cfg.Clock}
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

// claimed is a message leased to this relay under token.
type claimed struct {
	row   messageRow
	token string
}

// result tells the loop that a worker is free again.
type result struct {
	token      string // the claim's: a solo one (soloPrefix) for a suspect
	dispatched bool
	keyed      bool
	at         time.Time
	latency    time.Duration // commit (Add) to dispatch
}

// Run relays until ctx is cancelled. It then stops claiming, lets the
// publishes in flight finish (each bounded by PublishTimeout) and records
// their outcome, so it leaves no lease behind; it returns once every goroutine
// it started has stopped. A Relay runs at most once at a time.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("outbox: relay is already running")
	}
	defer r.running.Store(false)
	// A stopped relay's snapshot goes stale: Stats then counts afresh.
	defer r.stats.Store(nil)
	r.log.Info("outbox relay started", "workers", r.cfg.Workers, "lease", r.cfg.Lease, "poll", r.cfg.PollInterval)

	// Workers publish; one recorder writes their outcomes in batches (one
	// commit for all the attempts that finished meanwhile: with a commit per
	// message the relay would go no faster than the disk syncs); the loop
	// hears of each recorded message on done. Neither channel ever blocks
	// its sender: at most Workers messages are out at once.
	work := make(chan claimed, r.cfg.Workers)
	finished := make(chan attempted, r.cfg.Workers)
	done := make(chan result, r.cfg.Workers)
	var workers, others sync.WaitGroup
	for range r.cfg.Workers {
		workers.Go(func() {
			for c := range work {
				finished <- r.attempt(ctx, c)
			}
		})
	}
	others.Go(func() { r.recorder(ctx, finished, done) })
	others.Go(func() { r.cleaner(ctx) })

	r.loop(ctx, work, done)
	close(work)
	workers.Wait()
	close(finished)
	others.Wait()
	r.log.Info("outbox relay stopped")
	return nil
}

// loop owns the count of idle workers and the dispatch window; it claims
// when woken, on each poll, and when a finished message may have freed the
// next of its key.
func (r *Relay) loop(ctx context.Context, work chan<- claimed, done <-chan result) {
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	statsTick := time.NewTicker(r.cfg.StatsInterval)
	defer statsTick.Stop()

	win := newWindow()
	r.publishStats(ctx, win)

	idle := r.cfg.Workers
	// Suspects (see soloPrefix). While some may be waiting nothing new goes
	// out, and they go one at a time: each once the ordinary attempts still
	// out are done and the suspect before it is done or past its lease. An
	// ordinary attempt is not waited for past PublishTimeout from when the
	// suspects were found: by then it has outlived its deadline (its
	// publisher ignores its context), can no longer be recorded, and must
	// not stall the relay. Looked for at start and on every poll.
	want, full, suspects := true, false, true
	found := r.now()
	solos := 0 // suspects out, hung ones included
	var soloTok string
	var soloUntil time.Time // the lease of the suspect last sent, until its result
	suspectMayGo := func() bool {
		now := r.now()
		others := r.cfg.Workers - idle - solos
		return idle > 0 && (soloTok == "" || now.After(soloUntil)) &&
			(others == 0 || now.Sub(found) > r.cfg.PublishTimeout)
	}
	onResult := func(res result) {
		idle++
		if strings.HasPrefix(res.token, soloPrefix) {
			solos--
			if res.token == soloTok {
				soloTok = ""
			}
		}
		if res.dispatched {
			win.add(res.at, res.latency)
		}
		// The next message of a key becomes claimable only when this one
		// is done; after a full batch there may be more waiting; a suspect
		// may go once the others are done.
		if res.keyed || full || (suspects && suspectMayGo()) {
			want = true
		}
	}
	for {
		if want && ctx.Err() == nil {
			want = false
			if suspects && suspectMayGo() {
				got, tok, err := r.claim(ctx, 0, work)
				idle -= got
				if got > 0 {
					solos++
					soloTok, soloUntil = tok, r.now().Add(r.cfg.Lease)
				}
				suspects = err != nil || got > 0
			}
			if !suspects && idle > 0 {
				n := min(idle, r.cfg.BatchSize)
				got, _, err := r.claim(ctx, n, work)
				idle -= got
				full = err == nil && got == n
				want = full
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
			want = true
		case <-poll.C:
			want = true
			if !suspects && r.hasSuspect(ctx) {
				suspects, found = true, r.now()
				r.log.Warn(logSuspectsFound)
			}
		case res := <-done:
			onResult(res)
			for drained := false; !drained; { // take every result already there
				select {
				case res := <-done:
					onResult(res)
				default:
					drained = true
				}
			}
		case <-statsTick.C:
			r.publishStats(ctx, win)
		}
	}
}

// logSuspectsFound is logged when the relay finds messages cut short.
const logSuspectsFound = "outbox: found messages whose attempt was cut short; sending them one at a time"

// claim leases up to n pending messages, or with n 0 the next suspect alone,
// and hands them to the workers. It returns how many and the claim's token.
func (r *Relay) claim(ctx context.Context, n int, work chan<- claimed) (int, string, error) {
	now := r.now()
	token := NewID(now)
	// Once sent, the claim completes even if Run is being stopped: rows
	// leased but never handed to a worker would wait for their lease.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
	defer cancel()
	var rows []messageRow
	var err error
	if n == 0 {
		token = soloToken(token)
		rows, err = r.st.claimSuspect(cctx, now.UnixMicro(), now.Add(r.cfg.Lease).UnixMicro(), token)
		for _, row := range rows {
			r.log.Warn("outbox: sending alone a message whose last attempt was cut short", "id", row.ID, "topic", row.Topic, "attempt", row.Attempts)
		}
	} else {
		rows, err = r.st.claim(cctx, now.UnixMicro(), now.Add(r.cfg.Lease).UnixMicro(), token, n)
	}
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("outbox claim failed", "err", err)
		}
		return 0, token, err
	}
	for _, row := range rows {
		work <- claimed{row: row, token: token} // buffered to Workers: never blocks
	}
	return len(rows), token, nil
}

func (r *Relay) hasSuspect(ctx context.Context) bool {
	// Bounded like a claim: a hung connection must not hold the loop.
	cctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	ok, err := r.st.hasSuspect(cctx, r.now().UnixMicro())
	if err != nil && ctx.Err() == nil {
		r.log.Error("outbox: looking for suspects failed", "err", err)
	}
	return ok
}

// attempted is a finished attempt on its way to be recorded.
type attempted struct {
	row     messageRow
	outcome outcome
	err     error // the publisher's
	evType  string
	end     time.Time
}

// attempt makes one attempt and decides the message's next state. The
// publish uses a context that survives the cancellation of Run's, bounded by
// PublishTimeout, so that a stopping relay finishes what it started rather
// than leaving leases to expire.
func (r *Relay) attempt(ctx context.Context, c claimed) attempted {
	row := c.row
	if strings.HasPrefix(c.token, soloPrefix) && row.Failures >= r.cfg.MaxAttempts {
		return r.giveUp(c)
	}
	start := r.now()
	err := r.publish(context.WithoutCancel(ctx), row)
	end := r.now()

	o := outcome{
		seq: row.Seq, token: c.token, nowUS: end.UnixMicro(),
		attempt: attemptRow{MessageID: row.ID, Number: row.Attempts, StartedUS: start.UnixMicro(), DurationUS: end.Sub(start).Microseconds()},
	}
	evType := EventDispatched
	if err == nil {
		o.status, o.dueUS, o.failures = StatusDispatched, o.nowUS, row.Failures
	} else {
		o.lastError = errorText(err)
		o.attempt.Error = o.lastError
		o.failures = row.Failures + 1
		if o.failures >= r.cfg.MaxAttempts {
			o.status, o.dueUS, evType = StatusDead, o.nowUS, EventDead
			o.blocks = r.deadPolicy(row.Topic) == BlockKey
		} else {
			o.status, o.dueUS, evType = StatusPending, end.Add(r.backoff(o.failures)).UnixMicro(), EventRetryScheduled
		}
	}
	return attempted{row: row, outcome: o, err: err, evType: evType, end: end}
}

// giveUp makes dead, without sending it again, a suspect whose failures
// reached MaxAttempts at its claim: its last attempts were cut short while
// it was out alone (see soloPrefix), and one more could take the process
// down again.
func (r *Relay) giveUp(c claimed) attempted {
	row, end := c.row, r.now()
	o := outcome{
		seq: row.Seq, token: c.token, nowUS: end.UnixMicro(), givenUp: true,
		status: StatusDead, dueUS: end.UnixMicro(), failures: row.Failures, lastError: row.LastError,
		blocks: r.deadPolicy(row.Topic) == BlockKey,
	}
	err := fmt.Errorf("%w: giving up after %d failed attempts", ErrUnfinished, row.Failures)
	return attempted{row: row, outcome: o, err: err, evType: EventDead, end: end}
}

// maxErrorLen bounds the error text kept per attempt.
const maxErrorLen = 2048

// errorText is err's message as it can be stored: at most maxErrorLen bytes
// of valid UTF-8 without NUL. A publisher's error may quote what a receiver
// answered (bytes PostgreSQL refuses in text); storing it as is would fail
// the whole recording transaction, so every message in the batch would be
// sent again and this one would never count its failures towards dead.
func errorText(err error) string {
	s := err.Error()
	if len(s) > maxErrorLen {
		s = s[:maxErrorLen]
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// maxRecordBatch bounds one recording transaction.
const maxRecordBatch = 256

// recorder writes finished attempts, as many per transaction as have
// arrived, then announces them. It stops when finished is closed, after
// recording everything sent on it; its writes outlive Run's context (bounded
// by a timeout) for the same reason as the publishes.
func (r *Relay) recorder(ctx context.Context, finished <-chan attempted, done chan<- result) {
	batch := make([]attempted, 0, maxRecordBatch)
	outs := make([]outcome, 0, maxRecordBatch)
	for a := range finished {
		batch = append(batch[:0], a)
		for more := true; more && len(batch) < maxRecordBatch; {
			select {
			case a, ok := <-finished:
				if !ok {
					more = false
					break
				}
				batch = append(batch, a)
			default:
				more = false
			}
		}
		outs = outs[:0]
		for _, a := range batch {
			outs = append(outs, a.outcome)
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
		oks, err := r.st.finish(fctx, outs)
		cancel()
		if err != nil {
			// The leases will expire and the messages be delivered again.
			r.log.Error("outbox: recording attempts failed", "messages", len(batch), "err", err)
		}
		for i, a := range batch {
			res := result{token: a.outcome.token, keyed: a.row.Key != "", at: a.end}
			switch {
			case err != nil:
			case !oks[i]:
				r.log.Warn("outbox: lease lost before the attempt was recorded; another claim owns the message", "id", a.row.ID)
			default:
				r.announce(a)
				if a.outcome.status == StatusDispatched {
					res.dispatched, res.latency = true, a.end.Sub(fromUS(a.row.CreatedUS))
				}
			}
			done <- res
		}
	}
}

func (r *Relay) announce(a attempted) {
	row, o := a.row, a.outcome
	if a.err != nil {
		r.log.Warn("outbox: publish failed", "id", row.ID, "topic", row.Topic, "attempt", row.Attempts, "status", o.status, "err", a.err)
	}
	row.Status, row.Failures, row.LastError = string(o.status), o.failures, o.lastError
	sum := row.summary()
	r.emit(Event{Type: a.evType, At: a.end, Message: &sum})
}

func (r *Relay) publish(ctx context.Context, row messageRow) (err error) {
	p := r.publisher(row.Topic)
	if p == nil {
		return fmt.Errorf("%w %q", ErrNoPublisher, row.Topic)
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	defer func() {
		// A panicking publisher is a failed attempt, not a dead relay.
		if v := recover(); v != nil {
			err = fmt.Errorf("publisher panicked: %v", v)
		}
	}()
	return p.Publish(ctx, row.delivery())
}

func (r *Relay) deadPolicy(topic string) DeadPolicy {
	if p, ok := r.cfg.DeadPolicies[topic]; ok {
		return p
	}
	return r.cfg.DefaultDeadPolicy
}

// backoff is BackoffBase·2^(failures-1), capped at BackoffMax, with "equal
// jitter": a random half is added to a fixed half, so retries of messages
// that failed together spread out but never come back sooner than half the
// delay.
func (r *Relay) backoff(failures int) time.Duration {
	d := r.cfg.BackoffBase
	for i := 1; i < failures && d < r.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, r.cfg.BackoffMax)
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
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
			n, err := r.st.cleanup(ctx, before, r.cfg.CleanupBatch)
			if err != nil {
				if ctx.Err() == nil {
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
