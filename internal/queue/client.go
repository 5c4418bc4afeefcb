package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canalhq/canal/internal/outage"
)

// CutShort is the last error of an item whose attempt was cut short while
// it was out alone: its lease expired mid-attempt.
const CutShort = "attempt did not finish: its lease expired (the process died or the publisher hung while sending)"

// LogSuspectsFound is logged when a Client finds rescued items to send alone.
const LogSuspectsFound = "queue: found items whose attempt was cut short; sending them one at a time"

// ErrGaveUp: a suspect's attempts were cut short while it was alone until
// it ran out of them; it is dead without one more try.
var ErrGaveUp = errors.New("queue: attempts did not finish")

// Handler runs one attempt of an item. nil: done; Snooze(d): again after d,
// nothing counted; Permanent(err): dead now; any other error: a failed
// attempt, retried by the RetryPolicy until MaxAttempts. It must honour ctx
// (cancelled at Timeout).
type Handler interface {
	Work(ctx context.Context, it *Item) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, it *Item) error

// Work calls f.
func (f HandlerFunc) Work(ctx context.Context, it *Item) error { return f(ctx, it) }

// Config tunes a Client. Zero fields take the defaults shown.
type Config struct {
	Queue   string // required: the use, e.g. "outbox" or "work"
	Workers int    // parallel attempts: 32
	// FetchAhead is how many items may wait, claimed, for a free worker on
	// top of the busy ones (a bounded channel): Workers, so a claim fetches
	// up to twice the free workers and workers never wait on a claim.
	FetchAhead int
	MaxFetch   int // most items per claim statement: 1000

	Lease   time.Duration // a claim's lease, renewed by the Process heartbeat: 10 s
	Timeout time.Duration // an attempt's deadline; past it its lease is no longer renewed: 5 s

	PollInterval  time.Duration // fallback when nothing wakes the client: 1 s
	FetchCooldown time.Duration // least time between two claims: 0
	// FetchWait is how long a claim waits for half the capacity to be free
	// while items are still out, so claims come in batches: 1 ms.
	FetchWait time.Duration
	// CompleteWindow is how long the completer gathers outcomes after the
	// first before it writes them in one transaction: 1 ms.
	CompleteWindow time.Duration

	MaxAttempts int // failures before dead, when an item has none of its own: 8
	// MaxAttemptsFor, if set, gives an item's budget (say, per kind) when
	// the item has none of its own; 0 from it means MaxAttempts.
	MaxAttemptsFor func(*Item) int
	Retry          RetryPolicy // shared backoff
	// RetryFor, if set, picks an item's policy (say, per kind) instead of
	// Retry; the caller validates what it returns.
	RetryFor func(Item) RetryPolicy
	Weights  []int // priority shares (see ClaimRequest); nil: priority 0 only

	// DeadBlocksKey says whether a dead item holds back its key (true) or
	// is set aside (false); nil: always true.
	DeadBlocksKey func(Item) bool

	Handler Handler     // required
	OnEvent func(Event) // called by the completer after each write; must not block

	Clock  func() time.Time // time.Now
	Logger *slog.Logger     // slog.Default(); tagged by the caller (a "component"), never here
}

func (c Config) withDefaults() (Config, error) {
	if c.Queue == "" || c.Handler == nil {
		return c, fmt.Errorf("%w: Queue and Handler are required", ErrInvalidConfig)
	}
	defInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	defInt(&c.Workers, 32)
	defInt(&c.FetchAhead, c.Workers)
	defInt(&c.MaxFetch, 1000)
	defInt(&c.MaxAttempts, 8)
	defDur(&c.Lease, 10*time.Second)
	defDur(&c.Timeout, 5*time.Second)
	defDur(&c.PollInterval, time.Second)
	defDur(&c.FetchWait, time.Millisecond)
	defDur(&c.CompleteWindow, time.Millisecond)
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.DeadBlocksKey == nil {
		c.DeadBlocksKey = func(Item) bool { return true }
	}
	if c.Workers < 0 || c.FetchAhead < 0 || c.MaxFetch < 0 || c.MaxAttempts < 0 ||
		c.Lease < 0 || c.Timeout < 0 || c.PollInterval < 0 || c.FetchCooldown < 0 {
		return c, fmt.Errorf("%w: negative size or duration", ErrInvalidConfig)
	}
	for _, w := range c.Weights {
		if w <= 0 {
			return c, fmt.Errorf("%w: priority weights must be positive", ErrInvalidConfig)
		}
	}
	return c, c.Retry.Validate()
}

// Client runs one queue's items in this process: a fetcher claims batches
// into a bounded channel, workers run them, a completer writes outcomes in
// batches. It is a service with Start and Stop, started after its Process.
type Client struct {
	drv  Driver
	proc *Process
	cfg  Config
	log  *slog.Logger

	wake     chan struct{}
	suspects chan struct{}

	mu      sync.Mutex
	running map[int64]*claimed // claimed and not yet completed, for the heartbeat
	// out counts claims not yet completed: the completer stops gathering
	// once it holds all of them.
	out atomic.Int64

	stopLoop context.CancelFunc // stops claiming
	hardStop context.CancelFunc // cancels attempts in flight
	done     chan struct{}
}

// NewClient returns a client of cfg.Queue on drv, run under proc.
func NewClient(drv Driver, proc *Process, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{
		drv: drv, proc: proc, cfg: cfg,
		log:      cfg.Logger.With("queue", cfg.Queue),
		wake:     make(chan struct{}, 1),
		suspects: make(chan struct{}, 1),
		running:  map[int64]*claimed{},
	}
	proc.add(c)
	return c, nil
}

// Wake tells the client that items may be claimable; it never blocks.
func (c *Client) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Client) suspectsFound() {
	select {
	case c.suspects <- struct{}{}:
	default:
	}
}

func (c *Client) now() time.Time { return c.cfg.Clock().UTC() }

type claimed struct {
	it         Item
	solo       bool
	started    time.Time // zero until a worker starts it
	leaseUntil time.Time // as last written: by the claim, then the heartbeat
	// ended: its outcome is computed and waits for the completer (which
	// may be retrying while the database is away): its lease is renewed
	// whatever the attempt took, so that nobody runs it again.
	ended bool
}

// finished is an attempt's outcome on its way to the completer.
type finished struct {
	cl  *claimed
	out Outcome
	err error
	ev  string
}

// note tells the fetcher that n claims are over.
type note struct {
	n     int
	keyed bool
	solo  []int64
}

// Start starts the fetcher, the workers and the completer; Stop ends them.
func (c *Client) Start(ctx context.Context) error {
	if c.done != nil {
		return errors.New("queue: client already started")
	}
	loopCtx, stopLoop := context.WithCancel(context.WithoutCancel(ctx))
	hardCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	c.stopLoop, c.hardStop, c.done = stopLoop, hardStop, make(chan struct{})
	capacity := c.cfg.Workers + c.cfg.FetchAhead
	work := make(chan *claimed, capacity)
	fin := make(chan finished, capacity)
	notes := make(chan note, capacity)
	var workers, completer sync.WaitGroup
	for range c.cfg.Workers {
		workers.Go(func() {
			for cl := range work {
				var f finished
				if loopCtx.Err() != nil {
					f = c.giveBack(cl) // stopping: not started, so not run
				} else {
					f = c.attempt(hardCtx, cl)
				}
				c.mu.Lock()
				cl.ended = true
				c.mu.Unlock()
				fin <- f
			}
		})
	}
	completer.Go(func() { c.completer(hardCtx, fin, notes) })
	go func() {
		defer close(c.done)
		c.loop(loopCtx, work, notes, capacity)
		close(work)
		workers.Wait()
		close(fin)
		completer.Wait()
	}()
	c.log.Info("queue client started", "workers", c.cfg.Workers, "lease", c.cfg.Lease)
	return nil
}

// Stop stops claiming, lets the attempts in flight finish and records every
// outcome (items claimed but not started are given back), so it leaves no
// lease behind. If ctx ends first, the attempts in flight are cancelled.
func (c *Client) Stop(ctx context.Context) error {
	if c.done == nil {
		return nil
	}
	c.stopLoop()
	select {
	case <-c.done:
	case <-ctx.Done():
		c.hardStop()
		<-c.done
	}
	c.hardStop()
	c.log.Info("queue client stopped")
	return nil
}

// loop owns the count of claims not yet completed and the suspect state.
func (c *Client) loop(ctx context.Context, work chan<- *claimed, notes <-chan note, capacity int) {
	poll := time.NewTicker(c.cfg.PollInterval)
	defer poll.Stop()
	out, solos := 0, 0
	want, full := true, false
	// Suspects (see the package doc): while some may wait, nothing new is
	// claimed; they go one at a time, each once the others still out are
	// done (not waited for past Timeout from when they were found) and the
	// previous suspect is done or past its lease.
	suspects, found := true, c.now()
	var soloID int64
	var soloUntil time.Time
	mayGoSolo := func() bool {
		now := c.now()
		others := out - solos
		return out < capacity && (soloID == 0 || now.After(soloUntil)) &&
			(others == 0 || now.Sub(found) > c.cfg.Timeout)
	}
	var last time.Time
	// After a failed claim the next waits a back-off (the database may be
	// away: see the outage package).
	b := c.proc.backoff(min(c.cfg.PollInterval, 250*time.Millisecond))
	// batchTimer ends FetchWait: then a claim takes whatever is free.
	batchTimer := time.NewTimer(time.Hour)
	batchTimer.Stop()
	defer batchTimer.Stop()
	waiting, forced := false, false
	onNote := func(n note) {
		out -= n.n
		for _, id := range n.solo {
			solos--
			if id == soloID {
				soloID = 0
			}
		}
		if n.keyed || full || (suspects && mayGoSolo()) {
			want = true
		}
	}
	for {
		if want && !forced && !suspects && out > 0 && capacity-out < capacity/2 {
			// Busy: wait for half the capacity, or FetchWait.
			if !waiting {
				waiting = true
				batchTimer.Reset(c.cfg.FetchWait)
			}
			want = false
		}
		if want && ctx.Err() == nil {
			forced = false
			if waiting {
				waiting = false
				batchTimer.Stop()
			}
			if wait := c.cfg.FetchCooldown - time.Since(last); wait > 0 {
				time.Sleep(wait)
			}
			last = time.Now()
			want = false
			if suspects && mayGoSolo() {
				if soloID != 0 {
					// The last suspect is out past its lease (never
					// renewed): it is rescued now, so that, being the
					// oldest, it goes again rather than the next one
					// going out beside it.
					c.rescueNow(ctx)
				}
				got, err := c.claim(ctx, work, true, 1)
				if len(got) > 0 {
					out++
					solos++
					soloID, soloUntil = got[0], c.now().Add(c.cfg.Lease)
				}
				suspects = err != nil || len(got) > 0
			}
			if !suspects && out < capacity {
				n := min(capacity-out, c.cfg.MaxFetch)
				got, err := c.claim(ctx, work, false, n)
				out += len(got)
				full = err == nil && len(got) == n
				want = full && out < capacity
				if err != nil {
					// Wait, but keep taking notes: the completer must
					// not block on them.
					t := time.NewTimer(b.Next())
				sleep:
					for {
						select {
						case <-ctx.Done():
							break sleep
						case <-t.C:
							break sleep
						case n := <-notes:
							onNote(n)
						}
					}
					t.Stop()
					want = true
				} else {
					b.Reset()
				}
			}
		}
		select {
		case <-ctx.Done():
			// Wait for what is out, so the completer records it.
			for out > 0 {
				onNote(<-notes)
			}
			return
		case <-c.wake:
			want = true
		case <-batchTimer.C:
			if waiting {
				waiting = false
				want, forced = true, true
			}
		case <-c.suspects:
			if !suspects {
				suspects, found, want = true, c.now(), true
				c.log.Warn(LogSuspectsFound)
			}
		case <-poll.C:
			want = true
			if !suspects {
				hctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
				began := time.Now()
				has, err := c.drv.HasRescued(hctx, c.cfg.Queue)
				cancel()
				if err := c.proc.Outage().Observe(began, err); err != nil && ctx.Err() == nil {
					c.log.Warn("queue: looking for rescued items failed", "err", err)
				}
				if has {
					suspects, found = true, c.now()
					c.log.Warn(LogSuspectsFound)
				}
			}
		case n := <-notes:
			onNote(n)
			for drained := false; !drained; {
				select {
				case n := <-notes:
					onNote(n)
				default:
					drained = true
				}
			}
		}
	}
}

// claim leases up to n items (a rescued one alone if solo) and hands them
// to the workers; the channel has room for every claim out, so it never
// blocks. It returns the claimed IDs.
func (c *Client) claim(ctx context.Context, work chan<- *claimed, solo bool, n int) ([]int64, error) {
	now := c.now()
	req := ClaimRequest{
		Queue: c.cfg.Queue, Owner: c.proc.ID(), NowUS: US(now), LeaseUS: US(now.Add(c.cfg.Lease)),
		Limit: n, Weights: c.cfg.Weights,
	}
	// Once sent, a claim completes even if the client is stopping: rows
	// leased but never handed to a worker would wait for their lease.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
	defer cancel()
	var items []Item
	var err error
	began := time.Now()
	if solo {
		items, err = c.drv.ClaimRescued(cctx, req)
	} else {
		items, err = c.drv.Claim(cctx, req)
	}
	if lerr := c.proc.Outage().Observe(began, err); lerr != nil && ctx.Err() == nil {
		c.log.Error("queue: claim failed", "err", lerr)
	}
	if err != nil {
		return nil, err
	}
	c.out.Add(int64(len(items)))
	ids := make([]int64, len(items))
	c.mu.Lock()
	for i := range items {
		cl := &claimed{it: items[i], solo: solo, leaseUntil: FromUS(req.LeaseUS)}
		c.running[items[i].ID] = cl
		ids[i] = items[i].ID
	}
	c.mu.Unlock()
	for _, id := range ids {
		c.mu.Lock()
		cl := c.running[id]
		c.mu.Unlock()
		if solo {
			c.log.Warn("queue: running alone an item whose last attempt was cut short", "id", cl.it.PublicID, "kind", cl.it.Kind, "attempt", cl.it.Attempt)
		}
		work <- cl
	}
	return ids, nil
}

func (c *Client) rescueNow(ctx context.Context) {
	if !c.proc.Outage().Settled(c.proc.rescueGrace()) {
		return // see Process.rescuer
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	began := time.Now()
	_, err := c.drv.Rescue(rctx, US(c.now()), 1000)
	if err := c.proc.Outage().Observe(began, err); err != nil && ctx.Err() == nil {
		c.log.Warn("queue: rescue failed", "err", err)
	}
}

// renewable lists the claims whose leases the heartbeat extends: all but
// attempts past their Timeout (a hung handler is cut by its lease) and
// suspects (sent alone under their first lease, so the next suspect knows
// when this one's is over); but every attempt that has ended, whose outcome
// waits to be written. Of those, only the leases that end within
// renewWithin: a batch claimed a moment ago is not rewritten every beat
// (each renewal is a new version of the row, and every index gets an
// entry for it).
func (c *Client) renewable(now time.Time) []int64 {
	within := c.renewWithin()
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]int64, 0, len(c.running))
	for id, cl := range c.running {
		if cl.leaseUntil.Sub(now) > within {
			continue
		}
		if cl.ended || !cl.solo && (cl.started.IsZero() || now.Sub(cl.started) < c.cfg.Timeout) {
			ids = append(ids, id)
		}
	}
	return ids
}

// renewWithin is how close to its end a lease is renewed: half the lease,
// and never less than three heartbeats, so that two beats may fail (or a
// short lease be configured) without a live claim expiring.
func (c *Client) renewWithin() time.Duration {
	return max(c.cfg.Lease/2, 3*c.proc.HeartbeatEvery())
}

// renewed records the lease end the heartbeat wrote for ids. Not for an
// attempt that has ended: the heartbeat skips a row the completer has
// locked, and if that write fails the outcome waits on the lease the row
// still has; so an ended attempt, once near its lease's end, is renewed at
// every beat until its outcome is written.
func (c *Client) renewed(ids []int64, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if cl, ok := c.running[id]; ok && !cl.ended {
			cl.leaseUntil = until
		}
	}
}

func (c *Client) maxAttempts(it *Item) int {
	if it.MaxAttempts > 0 {
		return it.MaxAttempts
	}
	if c.cfg.MaxAttemptsFor != nil {
		if n := c.cfg.MaxAttemptsFor(it); n > 0 {
			return n
		}
	}
	return c.cfg.MaxAttempts
}

func (c *Client) baseOutcome(cl *claimed, now time.Time) Outcome {
	it := cl.it
	return Outcome{
		ID: it.ID, Owner: c.proc.ID(), Attempt: it.Attempt, Queue: it.Queue, Key: it.Key,
		Failures: it.Failures, LastError: it.LastError, NowUS: US(now),
	}
}

// giveBack returns a claim not started: pending again, its attempt uncounted.
func (c *Client) giveBack(cl *claimed) finished {
	o := c.baseOutcome(cl, c.now())
	o.State, o.GiveBack = StatePending, true
	if cl.solo {
		o.State = StateRescued // still a suspect
	}
	o.RunAtUS = US(cl.it.RunAt)
	return finished{cl: cl, out: o, ev: ""}
}

// attempt runs one attempt and decides the item's next state.
func (c *Client) attempt(ctx context.Context, cl *claimed) finished {
	it := &cl.it // see run
	if cl.solo && it.Failures >= c.maxAttempts(it) {
		o := c.baseOutcome(cl, c.now())
		o.State, o.GiveBack, o.Blocks = StateDead, true, c.cfg.DeadBlocksKey(*it)
		err := fmt.Errorf("%w: giving up after %d failed attempts", ErrGaveUp, it.Failures)
		return finished{cl: cl, out: o, err: err, ev: EventDead}
	}
	start := c.now()
	c.mu.Lock()
	cl.started = start
	c.mu.Unlock()
	err := c.run(ctx, it)
	end := c.now()
	o := c.baseOutcome(cl, end)
	o.StartedUS, o.DurationUS = US(start), end.Sub(start).Microseconds()
	o.Meta = it.newMeta
	if err == nil {
		o.State = StateDone
		return finished{cl: cl, out: o, ev: EventDone}
	}
	if d, cause, ok := snoozed(err); ok {
		o.State, o.GiveBack, o.RunAtUS = StatePending, true, US(end.Add(d))
		if cause != nil {
			o.LastError = Text(cause.Error())
		}
		return finished{cl: cl, out: o, err: err, ev: EventSnoozed}
	}
	o.Error = Text(err.Error())
	o.LastError = o.Error
	o.Failures = it.Failures + 1
	if IsPermanent(err) || o.Failures >= c.maxAttempts(it) {
		o.State, o.Blocks = StateDead, c.cfg.DeadBlocksKey(*it)
		return finished{cl: cl, out: o, err: err, ev: EventDead}
	}
	policy := c.cfg.Retry
	if c.cfg.RetryFor != nil {
		policy = c.cfg.RetryFor(*it)
	}
	o.State, o.RunAtUS = StatePending, US(end.Add(policy.Delay(o.Failures)))
	return finished{cl: cl, out: o, err: err, ev: EventRetry}
}

// run calls the handler. The item goes by pointer: copied by value into
// each frame down to the handler, a worker's stack outgrew its first size
// on every attempt after the collector had shrunk it (about a third of the
// process's time in a drain with 2 000 workers).
func (c *Client) run(ctx context.Context, it *Item) (err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	defer func() {
		// A panicking handler is a failed attempt, not a dead process.
		if v := recover(); v != nil {
			err = fmt.Errorf("handler panicked: %v", v)
		}
	}()
	return c.cfg.Handler.Work(ctx, it)
}

// maxCompleteBatch bounds one completion transaction.
const maxCompleteBatch = 1000

// completer writes outcomes, as many per transaction as have arrived, then
// announces them. It stops when fin is closed, after writing everything
// sent on it; its writes outlive the client's context (bounded by Timeout).
func (c *Client) completer(ctx context.Context, fin <-chan finished, notes chan<- note) {
	batch := make([]finished, 0, maxCompleteBatch)
	outs := make([]Outcome, 0, maxCompleteBatch)
	window := time.NewTimer(time.Hour)
	window.Stop()
	for f := range fin {
		batch = append(batch[:0], f)
		// Gather what finishes within CompleteWindow of the first: one
		// transaction for a batch, rather than one for each few outcomes
		// the workers happen to hand over between two writes.
		window.Reset(c.cfg.CompleteWindow)
		for more := int64(len(batch)) < c.out.Load(); more && len(batch) < maxCompleteBatch; {
			select {
			case f, ok := <-fin:
				if !ok {
					more = false
					break
				}
				batch = append(batch, f)
				more = int64(len(batch)) < c.out.Load() // nothing else is out
			case <-window.C:
				more = false
			}
		}
		window.Stop()
		outs = outs[:0]
		for _, f := range batch {
			outs = append(outs, f.out)
		}
		oks, err := c.complete(ctx, outs)
		n := note{n: len(batch)}
		c.mu.Lock()
		for _, f := range batch {
			delete(c.running, f.cl.it.ID)
		}
		c.mu.Unlock()
		c.out.Add(-int64(len(batch)))
		for i, f := range batch {
			if f.cl.it.Key != "" {
				n.keyed = true
			}
			if f.cl.solo {
				n.solo = append(n.solo, f.cl.it.ID)
			}
			switch {
			case err != nil:
			case !oks[i]:
				c.log.Warn("queue: claim lost before the outcome was recorded; another claim owns the item", "id", f.cl.it.PublicID)
				c.emit(Event{Type: EventLeaseLost, At: c.now(), Item: f.cl.it})
			case f.ev != "":
				c.emit(c.event(f))
			}
		}
		notes <- n
	}
}

// complete writes outs, trying again after a back-off while it fails (the
// database may be away: the outcomes are kept, their leases renewed), until
// it succeeds or ctx ends (a stop past its deadline): then the leases
// expire and the items are rescued and run again.
func (c *Client) complete(ctx context.Context, outs []Outcome) ([]bool, error) {
	b := c.proc.backoff(100 * time.Millisecond)
	for {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
		began := time.Now()
		oks, err := c.drv.Complete(cctx, outs)
		cancel()
		lerr := c.proc.Outage().Observe(began, err)
		if err == nil {
			return oks, nil
		}
		if ctx.Err() != nil || !outage.Unavailable(err) && b.Failures() >= 3 {
			c.log.Error("queue: outcomes not recorded; the items will be rescued and run again", "items", len(outs), "err", err)
			return nil, err
		}
		if lerr != nil && b.Failures() == 0 {
			c.log.Error("queue: recording outcomes failed; trying again", "items", len(outs), "err", lerr)
		}
		if !b.Wait(ctx) {
			c.log.Error("queue: outcomes not recorded before the stop; the items will be rescued and run again", "items", len(outs), "err", err)
			return nil, err
		}
	}
}

func (c *Client) event(f finished) Event {
	it, o := f.cl.it, f.out
	it.State, it.Failures, it.LastError, it.Blocks = o.State, o.Failures, o.LastError, o.Blocks
	it.RunAt, it.LeaseUntil, it.Owner = FromUS(o.RunAtUS), time.Time{}, ""
	if o.GiveBack {
		it.Attempt--
	}
	at := FromUS(o.NowUS)
	it.UpdatedAt = at
	ev := Event{Type: f.ev, At: at, Item: it, Err: f.err}
	if o.State.Final() {
		it.FinishedAt = at
		ev.Item = it
	}
	if o.State == StateDone {
		ev.Latency = at.Sub(it.CreatedAt)
	}
	return ev
}

func (c *Client) emit(ev Event) {
	if c.cfg.OnEvent != nil {
		c.cfg.OnEvent(ev)
	}
}
