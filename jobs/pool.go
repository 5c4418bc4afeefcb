package jobs

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/canalhq/canal/internal/queue"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"
	"gorm.io/gorm"
)

// kind is a registered work kind. It is built before Run and only read
// afterwards; its limiter and breaker are safe for concurrent use.
type kind struct {
	name    string
	handler WorkHandler
	opts    KindOptions
	retry   queue.RetryPolicy
	limiter *rate.Limiter                       // nil: no limit
	breaker *gobreaker.CircuitBreaker[struct{}] // nil: disabled
}

// pool runs work items on the queue engine (internal/queue): the table is
// the queue. Enqueue inserts a row (in the caller's transaction if it
// gives one); the engine's Client claims batches of due rows, weighted
// 8:4:2:1 by priority so low never starves, hands them through a bounded
// channel to Workers goroutines that call the kind's handler, and records
// the outcomes in batches. A rate-limited kind or an open breaker snoozes
// the item (back in the table for later, no attempt used, no worker held).
// Leases are renewed by the Process's heartbeat; a dead process's items are
// rescued by any other when their lease expires.
type pool struct {
	cfg     *Config
	store   gormStore
	drv     queue.Driver
	proc    *queue.Process
	ownProc bool // made here: started and stopped with the pool
	events  *emitter
	kinds   map[string]*kind
	client  *queue.Client

	closing   chan struct{} // closed: intake refused
	closeOnce sync.Once
	roomMu    sync.Mutex
	room      chan struct{} // closed (and replaced) when items finish: waiting senders count again
	creditMu  sync.Mutex
	credit    int // enqueues allowed before the backlog is counted again

	stopCleanup context.CancelFunc
	cleanupDone chan struct{}

	busy                                               atomic.Int64
	accepted, rejected, evicted, done, failed, retried atomic.Uint64
}

// priorityWeights share each claimed batch 8:4:2:1 between critical, high,
// normal and low: critical gets most, but low gets a share of every batch
// while it has work and cannot starve.
var priorityWeights = []int{8, 4, 2, 1}

// minFetchAhead: a batch of at least the weights' sum (15) gives every
// waiting priority its share even with one worker.
const minFetchAhead = 16

// fetchCooldown is the least time between two claims of a process.
const fetchCooldown = 2 * time.Millisecond

func newPool(cfg *Config, events *emitter, store gormStore) *pool {
	pl := &pool{
		cfg: cfg, store: store, drv: store.drv, events: events, kinds: map[string]*kind{},
		proc:    cfg.Process,
		closing: make(chan struct{}),
		room:    make(chan struct{}),
	}
	if pl.proc == nil {
		pl.proc = queue.NewProcess(pl.drv, queue.ProcessConfig{Logger: cfg.Logger, Clock: cfg.Now})
		pl.ownProc = true
	}
	return pl
}

func (pl *pool) register(name string, h WorkHandler, opts KindOptions) error {
	if name == "" || h == nil {
		return fmt.Errorf("register kind %q: name and handler are required", name)
	}
	if _, ok := pl.kinds[name]; ok {
		return fmt.Errorf("register kind %q: %w", name, ErrDuplicateKind)
	}
	opts.defaults()
	k := &kind{name: name, handler: h, opts: opts, retry: queue.RetryPolicy{Base: opts.BackoffBase, Max: opts.BackoffMax}}
	if err := k.retry.Validate(); err != nil {
		return fmt.Errorf("register kind %q: %w", name, err)
	}
	if opts.Rate > 0 {
		k.limiter = rate.NewLimiter(opts.Rate, opts.Burst)
	}
	if opts.BreakerFailures > 0 {
		log := pl.cfg.Logger
		k.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        name,
			MaxRequests: 1,
			Timeout:     opts.BreakerOpenFor,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(opts.BreakerFailures) },
			// A shutdown is not the handler's fault.
			IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
			OnStateChange: func(name string, from, to gobreaker.State) {
				log.Warn("work kind circuit breaker", "kind", name, "from", from.String(), "to", to.String())
			},
		})
	}
	pl.kinds[name] = k
	return nil
}

// start starts the process (if the pool made it), the engine's client and
// the retention cleanup.
func (pl *pool) start(ctx context.Context) error {
	if pl.cfg.WatchOnly {
		// Claiming would only fail other processes' items (a standalone
		// dashboard has no handler): they wait for a process that has one.
		return nil
	}
	timeout := time.Minute
	for _, k := range pl.kinds {
		timeout = max(timeout, k.opts.Timeout)
	}
	c, err := queue.NewClient(pl.drv, pl.proc, queue.Config{
		Queue: workQueue, Workers: pl.cfg.Workers, FetchAhead: max(pl.cfg.Workers, minFetchAhead),
		Lease: pl.cfg.WorkLease, PollInterval: pl.cfg.WorkPoll,
		// Every Enqueue wakes the fetcher: a short cooldown gathers the
		// items of a burst into one claim rather than one claim each.
		FetchCooldown: fetchCooldown,
		// The engine's deadline is the longest kind's; each kind's own
		// is applied around its handler.
		Timeout: timeout + time.Second,
		Weights: priorityWeights,
		RetryFor: func(it queue.Item) queue.RetryPolicy {
			if k, ok := pl.kinds[it.Kind]; ok {
				return k.retry
			}
			return queue.RetryPolicy{}
		},
		DeadBlocksKey: func(queue.Item) bool { return false },
		Handler:       queue.HandlerFunc(pl.work),
		OnEvent:       pl.onEvent,
		Clock:         pl.cfg.Now,
		Logger:        pl.cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("work client: %w", err)
	}
	pl.client = c
	if pl.ownProc {
		if err := pl.proc.Start(ctx); err != nil {
			return err
		}
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	pl.stopCleanup, pl.cleanupDone = cancel, make(chan struct{})
	go pl.cleanup(cctx)
	return nil
}

// close refuses new items from now on.
func (pl *pool) close() { pl.closeOnce.Do(func() { close(pl.closing) }) }

// stop stops claiming and lets the attempts in flight finish until ctx
// ends; items claimed but not started go back to the table, and attempts
// cut by ctx's end are given back uncounted.
func (pl *pool) stop(ctx context.Context) error {
	pl.close()
	var err error
	if pl.client != nil {
		err = pl.client.Stop(ctx)
		if ctx.Err() != nil {
			err = ctx.Err()
		}
	}
	if pl.stopCleanup != nil {
		pl.stopCleanup()
		<-pl.cleanupDone
		pl.stopCleanup = nil
	}
	if pl.ownProc && pl.client != nil {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if perr := pl.proc.Stop(pctx); perr != nil {
			pl.cfg.Logger.Warn("work process stop", "err", perr)
		}
	}
	pl.client = nil
	return err
}

func (pl *pool) now() time.Time { return pl.cfg.Now().UTC() }

func (pl *pool) validate(nw NewWork) (*kind, error) {
	k, ok := pl.kinds[nw.Kind]
	if !ok {
		return nil, fmt.Errorf("enqueue %q: %w", nw.Kind, ErrUnknownKind)
	}
	if !nw.Priority.valid() {
		return nil, fmt.Errorf("enqueue %q: %w: %d", nw.Kind, ErrInvalidPriority, int(nw.Priority))
	}
	if len(nw.Payload) > 0 && !json.Valid(nw.Payload) {
		return nil, fmt.Errorf("enqueue %q: %w: not JSON", nw.Kind, ErrInvalidPayload)
	}
	if !utf8.Valid(nw.Payload) { // json.Valid lets it through; PostgreSQL does not
		return nil, fmt.Errorf("enqueue %q: %w: not valid UTF-8", nw.Kind, ErrInvalidPayload)
	}
	if err := uniqueItem(&queue.NewItem{}, nw.Unique); err != nil {
		return nil, fmt.Errorf("enqueue %q: %w", nw.Kind, err)
	}
	return k, nil
}

// enqueue admits the item to the bounded backlog, then inserts it, in tx
// if not nil (it commits with the caller's write) or on its own.
func (pl *pool) enqueue(ctx context.Context, tx *gorm.DB, nw NewWork) (WorkItem, error) {
	k, err := pl.validate(nw)
	if err != nil {
		return WorkItem{}, err
	}
	select {
	case <-pl.closing:
		pl.rejected.Add(1)
		return WorkItem{}, fmt.Errorf("enqueue %q: %w", nw.Kind, ErrClosed)
	default:
	}
	db := tx
	if db == nil {
		db = pl.store.db
	}
	db = db.WithContext(ctx)
	if err := pl.admit(ctx, db); err != nil {
		pl.rejected.Add(1)
		return WorkItem{}, fmt.Errorf("enqueue %q: %w", nw.Kind, err)
	}
	now := pl.now()
	ni := queue.NewItem{
		PublicID: newWorkID(now), Kind: nw.Kind, Priority: int(nw.Priority), Payload: nw.Payload,
		MaxAttempts: k.opts.MaxAttempts, CreatedAt: now,
	}
	if len(ni.Payload) == 0 {
		ni.Payload = nil
	}
	if err := uniqueItem(&ni, nw.Unique); err != nil {
		return WorkItem{}, fmt.Errorf("enqueue %q: %w", nw.Kind, err)
	}
	if by := strings.TrimSpace(nw.EnqueuedBy); by != "" {
		meta, err := json.Marshal(workMeta{EnqueuedBy: queue.Text(by)})
		if err != nil {
			return WorkItem{}, fmt.Errorf("enqueue %q: %w", nw.Kind, err)
		}
		ni.Meta = meta
	}
	if _, err := queue.Insert(ctx, pl.drv, db, workQueue, now, ni); err != nil {
		if dup, ok := errors.AsType[*queue.DuplicateError](err); ok {
			return WorkItem{}, fmt.Errorf("enqueue %q: %w", nw.Kind, &DuplicateError{Key: dup.UniqueKey, ID: dup.PublicID})
		}
		return WorkItem{}, fmt.Errorf("enqueue %q: %w", nw.Kind, err)
	}
	pl.accepted.Add(1)
	it := WorkItem{
		ID: ni.PublicID, Kind: nw.Kind, Priority: nw.Priority, Payload: nw.Payload,
		State: WorkPending, MaxAttempts: k.opts.MaxAttempts, CreatedAt: now, UpdatedAt: now, RunAt: now,
	}
	if ni.UniqueKey != "" {
		it.UniqueKey, it.UniqueStates = ni.UniqueKey, uniqueWorkStates(ni.UniqueStates)
	}
	// Published before the wake so that it cannot arrive after the item's
	// own started or done event.
	pl.events.publish(Event{Type: EventWorkQueued, Work: &it})
	if tx == nil {
		pl.proc.Wake(workQueue)
	} else {
		// Claimable once the caller commits: PostgreSQL's trigger wakes
		// every process then; in-process, look again shortly (the poll
		// is the fallback).
		time.AfterFunc(20*time.Millisecond, func() { pl.proc.Wake(workQueue) })
	}
	return it, nil
}

// admit applies the full-backlog policy: the backlog is the waiting items
// of the work queue in the table, bounded by WorkCapacity. Counting it
// costs up to WorkCapacity index entries, so a count that finds room
// allows half of that room without counting again (other processes share
// the rest).
func (pl *pool) admit(ctx context.Context, db *gorm.DB) error {
	limit := pl.cfg.WorkCapacity
	for {
		pl.creditMu.Lock()
		if pl.credit > 0 {
			pl.credit--
			pl.creditMu.Unlock()
			return nil
		}
		n, err := pl.waiting(ctx, db, limit)
		if err != nil {
			pl.creditMu.Unlock()
			return err
		}
		if n < limit {
			pl.credit = (limit - n - 1) / 2
			pl.creditMu.Unlock()
			return nil
		}
		pl.creditMu.Unlock()
		switch pl.cfg.WorkPolicy {
		case DropNewest:
			return ErrFull
		case DropOldest:
			dropped, err := pl.dropOldest(ctx, db)
			if err != nil {
				return err
			}
			if dropped {
				return nil
			}
			// Nothing left to drop: count again.
		default: // Wait, until the caller's deadline
			pl.roomMu.Lock()
			room := pl.room
			pl.roomMu.Unlock()
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%w: %w", ErrFull, ctx.Err())
			case <-pl.closing:
				t.Stop()
				return ErrClosed
			case <-room:
				t.Stop()
			case <-t.C:
			}
		}
	}
}

// waiting counts the pending items, up to limit, on db (the caller's
// transaction, if any: its own items count).
func (pl *pool) waiting(ctx context.Context, db *gorm.DB, limit int) (int, error) {
	n, err := pl.drv.CountUpTo(ctx, db, queue.Filter{Queue: workQueue, States: []queue.State{queue.StatePending}}, int64(limit))
	if err != nil {
		return 0, fmt.Errorf("count backlog: %w", err)
	}
	return int(n), nil
}

const evictReason = "evicted by a newer item (queue full, drop-oldest)"

// dropOldest marks the oldest waiting item dropped: it was accepted, so it
// is recorded with the reason and an event, never silently lost. It runs
// on db (the caller's transaction, if any: on SQLite a second connection
// would wait for that transaction's write lock). False: nothing was
// waiting any more.
func (pl *pool) dropOldest(ctx context.Context, db *gorm.DB) (bool, error) {
	it, err := pl.drv.DropOldest(ctx, db, workQueue, evictReason, queue.US(pl.now()))
	if errors.Is(err, queue.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	pl.evicted.Add(1)
	w := toWork(it)
	pl.events.publish(Event{Type: EventWorkDropped, Work: &w})
	return true, nil
}

func breakerRetry(k *kind) time.Duration {
	return max(k.opts.BreakerOpenFor/4, 100*time.Millisecond)
}

// errInterrupted marks an attempt a hard stop cut: given back, not counted.
var errInterrupted = errors.New("interrupted by shutdown")

// work is the engine's handler: one attempt of one item.
func (pl *pool) work(ctx context.Context, qi *queue.Item) error {
	k, known := pl.kinds[qi.Kind]
	if !known {
		// No handler will ever appear in this process.
		return queue.Permanent(fmt.Errorf("%w: %q", ErrUnknownKind, qi.Kind))
	}
	if k.limiter != nil {
		r := k.limiter.Reserve()
		if d := r.Delay(); d > 0 {
			// Give the token back; the item waits in the table, so a
			// rate-limited kind does not tie up a worker.
			r.Cancel()
			return fmt.Errorf("rate limited: %w", queue.Snooze(d))
		}
	}
	if k.breaker != nil && k.breaker.State() == gobreaker.StateOpen {
		return fmt.Errorf("circuit breaker open: %w", queue.Snooze(breakerRetry(k)))
	}
	it := toWork(*qi)
	it.State, it.LastError = WorkRunning, ""
	pl.busy.Add(1)
	defer pl.busy.Add(-1)
	pl.events.publish(Event{Type: EventWorkStarted, Work: &it})
	err := pl.call(ctx, k, it)
	switch {
	case err == nil:
		return nil
	case errors.Is(ctx.Err(), context.Canceled):
		// Only a hard stop cancels the engine's context (its deadline is
		// the engine's timeout): the attempt does not count.
		return fmt.Errorf("%w: %w", errInterrupted, queue.Snooze(0))
	case errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests):
		// The breaker refused the call: no attempt was made.
		return fmt.Errorf("circuit breaker open: %w", queue.Snooze(breakerRetry(k)))
	}
	return err
}

// call runs the handler through the kind's breaker with the attempt's
// timeout; a panic is a failed attempt.
func (pl *pool) call(ctx context.Context, k *kind, it WorkItem) error {
	hctx, cancel := context.WithTimeout(ctx, k.opts.Timeout)
	defer cancel()
	run := func() (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("panic: %v", v)
			}
		}()
		return k.handler(hctx, it)
	}
	if k.breaker == nil {
		return run()
	}
	_, err := k.breaker.Execute(func() (struct{}, error) { return struct{}{}, run() })
	return err
}

// onEvent turns the engine's recorded outcomes into work events; the
// engine calls it after each batch is written.
func (pl *pool) onEvent(ev queue.Event) {
	w := toWork(ev.Item)
	var typ EventType
	switch ev.Type {
	case queue.EventDone:
		pl.done.Add(1)
		typ = EventWorkDone
	case queue.EventRetry:
		pl.retried.Add(1)
		typ = EventWorkRetried
	case queue.EventDead:
		pl.failed.Add(1)
		typ = EventWorkFailed
	case queue.EventSnoozed:
		if errors.Is(ev.Err, errInterrupted) {
			return
		}
		typ = EventWorkDeferred
		if ev.Err != nil {
			w.LastError = ev.Err.Error()
		}
	case queue.EventLeaseLost:
		pl.cfg.Logger.Warn("work outcome not recorded: the claim was lost", "id", w.ID)
		return
	default:
		return
	}
	pl.events.publish(Event{Type: typ, Work: &w})
	if typ != EventWorkDeferred {
		pl.roomMu.Lock()
		close(pl.room)
		pl.room = make(chan struct{})
		pl.roomMu.Unlock()
	}
}

// cleanup deletes done and dropped items older than WorkRetention, in
// bounded batches, until stopped.
func (pl *pool) cleanup(ctx context.Context) {
	defer close(pl.cleanupDone)
	if pl.cfg.WorkRetention < 0 {
		return
	}
	every := min(max(pl.cfg.WorkRetention/10, time.Second), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for range 10 { // at most 10 batches a round; the rest next time
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			began := time.Now()
			n, err := pl.drv.Cleanup(cctx, workQueue, queue.US(pl.now().Add(-pl.cfg.WorkRetention)), cleanupBatch)
			cancel()
			if err != nil {
				if err := pl.proc.Outage().Observe(began, err); err != nil && ctx.Err() == nil {
					pl.cfg.Logger.Warn("work retention cleanup", "err", err)
				}
				break
			}
			if n < cleanupBatch {
				break
			}
		}
	}
}

const cleanupBatch = 1000

func (pl *pool) stats(ctx context.Context, s *QueueStats) {
	began := time.Now()
	due, later, err := pl.store.depths(ctx, queue.US(pl.now()), CountLimit)
	if err := pl.proc.Outage().Observe(began, err); err != nil && ctx.Err() == nil {
		pl.cfg.Logger.Warn("queue depths", "err", err)
	}
	for p := range numPriorities {
		s.Depths[priorityNames[p]] = due[p]
		s.Scheduled += later[p]
	}
	s.Capacity = pl.cfg.WorkCapacity
	s.Policy = pl.cfg.WorkPolicy.String()
	if !pl.cfg.WatchOnly { // a pool that claims nothing runs no worker
		s.Workers = pl.cfg.Workers
	}
	s.Busy = int(pl.busy.Load())
	s.Process = WorkCounters{Accepted: pl.accepted.Load(), Rejected: pl.rejected.Load(), Evicted: pl.evicted.Load(),
		Done: pl.done.Load(), Failed: pl.failed.Load(), Retried: pl.retried.Load()}
	for name, k := range pl.kinds {
		if k.breaker != nil {
			if s.Breakers == nil {
				s.Breakers = map[string]string{}
			}
			s.Breakers[name] = k.breaker.State().String()
		}
	}
}

// Enqueue stores a work item in the queue's table. Once it returns without
// error the item will run, even after a crash. ErrFull (possibly wrapping
// the ctx's deadline) or ErrClosed mean it was not accepted.
func (p *Processor) Enqueue(ctx context.Context, nw NewWork) (WorkItem, error) {
	if p.pool == nil {
		return WorkItem{}, ErrNoStore
	}
	return p.pool.enqueue(ctx, nil, nw)
}

// EnqueueTx stores a work item in tx, the caller's own gorm transaction on
// the processor's database: it commits, and becomes runnable, with the
// caller's business write, or not at all. The backlog policy applies as in
// Enqueue, inside tx (under Wait, waiting holds the transaction open: on
// SQLite, where it blocks the writer, prefer DropNewest).
func (p *Processor) EnqueueTx(ctx context.Context, tx *gorm.DB, nw NewWork) (WorkItem, error) {
	if p.pool == nil {
		return WorkItem{}, ErrNoStore
	}
	if tx == nil {
		return WorkItem{}, fmt.Errorf("enqueue %q: %w: nil transaction", nw.Kind, ErrNoStore)
	}
	return p.pool.enqueue(ctx, tx, nw)
}

// Work reports a work item as stored; ErrUnknownWork if there is none.
func (p *Processor) Work(ctx context.Context, id string) (WorkItem, error) {
	if p.pool == nil {
		return WorkItem{}, fmt.Errorf("work %q: %w", id, ErrUnknownWork)
	}
	return p.pool.store.GetWork(ctx, id)
}

// Kinds lists the registered work kinds.
func (p *Processor) Kinds() []string {
	if p.pool == nil {
		return nil
	}
	out := make([]string, 0, len(p.pool.kinds))
	for name := range p.pool.kinds {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// workIDs are 26 characters of base32, as crypto/rand.Text gives, but of
// 48 bits of Unix milliseconds then 80 random bits: items made close in
// time share a prefix, so the unique index on public ids takes each batch
// of inserts and state changes on a few pages rather than one page per item.
var workIDs = base32.StdEncoding.WithPadding(base32.NoPadding)

func newWorkID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	rand.Read(b[6:]) // never fails since Go 1.24
	return workIDs.EncodeToString(b[:])
}
