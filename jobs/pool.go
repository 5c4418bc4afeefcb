package jobs

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"
)

// kind is a registered work kind. It is built before Run and only read
// afterwards; its limiter and breaker are safe for concurrent use.
type kind struct {
	name    string
	handler WorkHandler
	opts    KindOptions
	limiter *rate.Limiter                       // nil: no limit
	breaker *gobreaker.CircuitBreaker[struct{}] // nil: disabled
}

// pool runs work items: one bounded queue per priority feeds Workers
// goroutines; a scheduler goroutine holds items that must wait (retry
// backoff, rate limit, open breaker, recovery) and puts them back on the
// queues when due. The store is the record of every accepted item, so what
// is in memory can always be rebuilt from it.
type pool struct {
	cfg    *Config
	store  Store
	events *emitter
	kinds  map[string]*kind
	queues [numPriorities]*Bounded[WorkItem]
	sched  chan WorkItem // to the scheduler; RunAt says when

	schedCancel context.CancelFunc
	schedDone   chan struct{}
	draining    chan struct{} // closed once no item can be added: workers exit when the queues are empty
	wg          sync.WaitGroup
	workers     sync.WaitGroup

	// recovered says start has read the waiting items from the store.
	// Items enqueued before that are already in their queue (or refused
	// at its door): early lists them so that the recovery does not queue
	// them a second time. The lock orders each enqueue's insert before or
	// after the recovery's read.
	recoverMu sync.RWMutex
	recovered bool
	earlyMu   sync.Mutex
	early     map[string]struct{}

	// turns is the order in which workers prefer priorities.
	turns []Priority

	busy, scheduled                       atomic.Int64
	accepted, done, failed, retried, turn atomic.Uint64
}

// priorityWeights share the workers' first picks 8:4:2:1 between critical,
// high, normal and low: critical gets most turns, but low gets first pick
// once in every 15 and cannot starve.
var priorityWeights = [numPriorities]int{8, 4, 2, 1}

// weightedOrder spreads each priority's turns evenly (smooth weighted round
// robin) rather than in runs.
func weightedOrder(w [numPriorities]int) []Priority {
	var cur [numPriorities]int
	total := 0
	for _, v := range w {
		total += v
	}
	out := make([]Priority, 0, total)
	for range total {
		best := 0
		for i := range cur {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		out = append(out, Priority(best))
	}
	return out
}

func newPool(cfg *Config, events *emitter) *pool {
	pl := &pool{
		cfg: cfg, store: cfg.Store, events: events,
		kinds:     map[string]*kind{},
		sched:     make(chan WorkItem, 256),
		schedDone: make(chan struct{}),
		draining:  make(chan struct{}),
		turns:     weightedOrder(priorityWeights),
	}
	for i := range pl.queues {
		pl.queues[i] = NewBounded(cfg.WorkCapacity, cfg.WorkPolicy, pl.evict)
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
	k := &kind{name: name, handler: h, opts: opts}
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

// start recovers waiting items from the store and starts the scheduler and
// the workers; they stop when ctx ends.
func (pl *pool) start(ctx context.Context) error {
	pl.recoverMu.Lock()
	items, err := pl.store.RecoverWork(ctx, pl.cfg.Instance, pl.now())
	if err == nil {
		items = slices.DeleteFunc(items, func(it WorkItem) bool { _, ok := pl.early[it.ID]; return ok })
		pl.recovered, pl.early = true, nil
	}
	pl.recoverMu.Unlock()
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	pl.schedCancel = cancel
	pl.wg.Go(func() { pl.scheduler(sctx, items) })
	for range pl.cfg.Workers {
		pl.workers.Go(func() { pl.worker(ctx) })
	}
	if len(items) > 0 {
		pl.cfg.Logger.Info("recovered work items", "count", len(items))
	}
	return nil
}

func (pl *pool) wait() {
	pl.workers.Wait()
	pl.wg.Wait()
}

// drain closes the queues to new items and stops the scheduler (what it
// held is retrying or pending in the store). From then on the queues only
// shrink, so each worker finishes its item, takes what is left, and exits
// when it finds them empty. drain waits for that, or for ctx.
func (pl *pool) drain(ctx context.Context) error {
	for _, q := range pl.queues {
		q.Close() // returns once no Enqueue can add an item
	}
	if pl.schedCancel != nil {
		pl.schedCancel()
		<-pl.schedDone
	}
	close(pl.draining)
	done := make(chan struct{})
	go func() { pl.workers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (pl *pool) now() time.Time { return pl.cfg.Now().UTC() }

// enqueue stores the item, then offers it to its priority's queue. An item
// the queue refuses was never accepted: it is marked dropped with the reason
// and the caller gets the error (the API answers 503).
func (pl *pool) enqueue(ctx context.Context, nw NewWork) (WorkItem, error) {
	k, ok := pl.kinds[nw.Kind]
	if !ok {
		return WorkItem{}, fmt.Errorf("enqueue %q: %w", nw.Kind, ErrUnknownKind)
	}
	if !nw.Priority.valid() {
		return WorkItem{}, fmt.Errorf("enqueue %q: %w: %d", nw.Kind, ErrInvalidPriority, int(nw.Priority))
	}
	if len(nw.Payload) > 0 && !json.Valid(nw.Payload) {
		return WorkItem{}, fmt.Errorf("enqueue %q: %w: not JSON", nw.Kind, ErrInvalidPayload)
	}
	if !utf8.Valid(nw.Payload) { // json.Valid lets it through; PostgreSQL does not
		return WorkItem{}, fmt.Errorf("enqueue %q: %w: not valid UTF-8", nw.Kind, ErrInvalidPayload)
	}
	q := pl.queues[nw.Priority]
	select {
	case <-q.Closed():
		return WorkItem{}, fmt.Errorf("enqueue %q: %w", nw.Kind, ErrClosed)
	default:
	}
	now := pl.now()
	it := WorkItem{
		ID: rand.Text(), Kind: nw.Kind, Priority: nw.Priority, Payload: nw.Payload,
		State: WorkPending, MaxAttempts: k.opts.MaxAttempts, CreatedAt: now, UpdatedAt: now, RunAt: now,
	}
	pl.recoverMu.RLock()
	err := pl.store.InsertWork(ctx, it)
	if err == nil && !pl.recovered {
		pl.earlyMu.Lock()
		if pl.early == nil {
			pl.early = map[string]struct{}{}
		}
		pl.early[it.ID] = struct{}{}
		pl.earlyMu.Unlock()
	}
	pl.recoverMu.RUnlock()
	if err != nil {
		return WorkItem{}, fmt.Errorf("enqueue %q: %w", nw.Kind, err)
	}
	// Published before the send so that it cannot arrive after the item's
	// own started or done event.
	pl.events.publish(Event{Type: EventWorkQueued, Work: &it})
	if err := q.Send(ctx, it); err != nil {
		reason := "rejected at the door: " + err.Error()
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if derr := pl.store.DropWork(dctx, it.ID, reason, pl.now()); derr != nil {
			// It stays pending and runs after a restart: at least once.
			pl.cfg.Logger.Error("record rejected work item", "id", it.ID, "err", derr)
		}
		it.State, it.LastError = WorkDropped, reason
		pl.events.publish(Event{Type: EventWorkDropped, Work: &it})
		return WorkItem{}, fmt.Errorf("enqueue %q: %w", nw.Kind, err)
	}
	pl.accepted.Add(1)
	return it, nil
}

// evict records an item that DropOldest pushed out of a queue: it was
// accepted, so it is marked dropped in the store, never silently lost.
func (pl *pool) evict(ctx context.Context, it WorkItem) {
	const reason = "evicted by a newer item (queue full, drop-oldest)"
	if err := pl.store.DropWork(context.WithoutCancel(ctx), it.ID, reason, pl.now()); err != nil {
		pl.cfg.Logger.Error("record evicted work item", "id", it.ID, "err", err)
	}
	it.State, it.LastError = WorkDropped, reason
	pl.events.publish(Event{Type: EventWorkDropped, Work: &it})
}

// next takes the next item, preferring priorities in turns' order.
func (pl *pool) next(ctx context.Context) (WorkItem, bool) {
	first := pl.turns[(pl.turn.Add(1)-1)%uint64(len(pl.turns))]
	if it, ok := pl.queues[first].TryRecv(); ok {
		return it, true
	}
	for _, q := range pl.queues {
		if it, ok := q.TryRecv(); ok {
			return it, true
		}
	}
	select {
	case it := <-pl.queues[Critical].C():
		return it, true
	case it := <-pl.queues[High].C():
		return it, true
	case it := <-pl.queues[Normal].C():
		return it, true
	case it := <-pl.queues[Low].C():
		return it, true
	case <-pl.draining:
		// Nothing can be added any more: take what is left, then stop.
		for _, q := range pl.queues {
			if it, ok := q.TryRecv(); ok {
				return it, true
			}
		}
		return WorkItem{}, false
	case <-ctx.Done():
		return WorkItem{}, false
	}
}

func (pl *pool) worker(ctx context.Context) {
	for {
		it, ok := pl.next(ctx)
		if !ok {
			return
		}
		pl.process(ctx, it)
	}
}

// later hands an item to the scheduler to be queued again at it.RunAt.
func (pl *pool) later(ctx context.Context, it WorkItem) {
	select {
	case pl.sched <- it:
	case <-pl.schedDone: // shutting down: the store has it as waiting
	case <-ctx.Done():
	}
}

// deferItem postpones an item without using an attempt.
func (pl *pool) deferItem(ctx context.Context, it WorkItem, d time.Duration, why string) {
	it.RunAt = pl.now().Add(d)
	it.LastError = why
	pl.events.publish(Event{Type: EventWorkDeferred, Work: &it})
	pl.later(ctx, it)
}

func (pl *pool) process(ctx context.Context, q WorkItem) {
	k, known := pl.kinds[q.Kind]
	if known && k.limiter != nil {
		r := k.limiter.Reserve()
		if d := r.Delay(); d > 0 {
			// Give the token back and let the scheduler hold the item,
			// so a rate-limited kind does not tie up a worker.
			r.Cancel()
			pl.deferItem(ctx, q, d, "rate limited")
			return
		}
	}
	if known && k.breaker != nil && k.breaker.State() == gobreaker.StateOpen {
		pl.deferItem(ctx, q, breakerRetry(k), "circuit breaker open")
		return
	}
	now := pl.now()
	timeout := time.Minute
	if known {
		timeout = k.opts.Timeout
	}
	it, ok, err := pl.store.ClaimWork(ctx, q.ID, pl.cfg.Instance, now, now.Add(timeout+30*time.Second))
	if err != nil {
		if ctx.Err() == nil {
			pl.cfg.Logger.Error("claim work item", "id", q.ID, "err", err)
			pl.deferItem(ctx, q, time.Second, "claim failed")
		}
		return
	}
	if !ok {
		return // another claimant has it, or it is no longer waiting
	}
	pl.busy.Add(1)
	defer pl.busy.Add(-1)
	pl.events.publish(Event{Type: EventWorkStarted, Work: &it})

	var runErr error
	if !known {
		runErr = fmt.Errorf("%w: %q", ErrUnknownKind, it.Kind)
		it.Attempts = it.MaxAttempts // no handler will ever appear in this run
	} else {
		runErr = pl.call(ctx, k, it)
	}
	pl.finish(ctx, k, it, runErr)
}

func breakerRetry(k *kind) time.Duration {
	return max(k.opts.BreakerOpenFor/4, 100*time.Millisecond)
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

// finish records the attempt's outcome and publishes it.
func (pl *pool) finish(ctx context.Context, k *kind, it WorkItem, runErr error) {
	now := pl.now()
	it.UpdatedAt = now
	var typ EventType
	switch {
	case runErr == nil:
		it.State, it.LastError, it.FinishedAt = WorkDone, "", &now
		typ = EventWorkDone
	case ctx.Err() != nil:
		// Shutdown interrupted the attempt: it does not count, and the
		// item runs again after the restart.
		it.State, it.Attempts, it.RunAt = WorkPending, it.Attempts-1, now
		typ = ""
	case errors.Is(runErr, gobreaker.ErrOpenState) || errors.Is(runErr, gobreaker.ErrTooManyRequests):
		// The breaker refused the call: no attempt was made.
		it.State, it.Attempts, it.RunAt, it.LastError = WorkRetrying, it.Attempts-1, now.Add(breakerRetry(k)), runErr.Error()
		typ = EventWorkDeferred
	case it.Attempts < it.MaxAttempts:
		it.State, it.LastError = WorkRetrying, runErr.Error()
		it.RunAt = now.Add(backoff(k.opts.BackoffBase, k.opts.BackoffMax, it.Attempts))
		typ = EventWorkRetried
	default:
		it.State, it.LastError, it.FinishedAt = WorkFailed, runErr.Error(), &now
		typ = EventWorkFailed
	}
	if !pl.record(ctx, it, now) {
		return
	}
	switch typ {
	case EventWorkDone:
		pl.done.Add(1)
	case EventWorkFailed:
		pl.failed.Add(1)
	case EventWorkRetried:
		pl.retried.Add(1)
	}
	if typ != "" {
		pl.events.publish(Event{Type: typ, Work: &it})
	}
	if it.State == WorkRetrying {
		pl.later(ctx, it)
	}
}

// record stores an attempt's outcome. While the store fails (a locked or
// unreachable database) it tries again, with backoff, holding its worker:
// an outcome left unrecorded would leave the item running in the store
// until the next restart. It gives up only when the pool stops (recovery
// then takes the item back) or when the claim was lost.
func (pl *pool) record(ctx context.Context, it WorkItem, now time.Time) bool {
	delay := 100 * time.Millisecond
	for {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		ok, err := pl.store.FinishWork(sctx, pl.cfg.Instance, it, now)
		cancel()
		if err == nil {
			if !ok {
				pl.cfg.Logger.Warn("work outcome not recorded: the claim was lost", "id", it.ID, "state", it.State)
			}
			return ok
		}
		if ctx.Err() != nil {
			pl.cfg.Logger.Error("work outcome not recorded; the item runs again after the restart", "id", it.ID, "state", it.State, "err", err)
			return false
		}
		pl.cfg.Logger.Warn("record work outcome; trying again", "id", it.ID, "state", it.State, "in", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// scheduler owns the items that wait: a heap by RunAt, and per priority
// the items that are due but not yet back on their queue. It never blocks
// on a full queue without also listening for new items, so workers handing
// it retries cannot deadlock with it.
func (pl *pool) scheduler(ctx context.Context, recovered []WorkItem) {
	defer close(pl.schedDone)
	var (
		waiting dueHeap
		ready   [numPriorities][]WorkItem
	)
	for _, it := range recovered {
		heap.Push(&waiting, it)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := pl.now()
		for waiting.Len() > 0 && !waiting[0].RunAt.After(now) {
			it := heap.Pop(&waiting).(WorkItem)
			ready[it.Priority] = append(ready[it.Priority], it)
		}
		n := waiting.Len()
		var out [numPriorities]chan WorkItem
		var head [numPriorities]WorkItem
		for p := range ready {
			n += len(ready[p])
			if len(ready[p]) > 0 {
				out[p], head[p] = pl.queues[p].ch, ready[p][0]
			}
		}
		pl.scheduled.Store(int64(n))
		var due <-chan time.Time
		if waiting.Len() > 0 {
			timer.Reset(waiting[0].RunAt.Sub(now))
			due = timer.C
		}
		select {
		case <-ctx.Done():
			pl.scheduled.Store(0)
			return
		case it := <-pl.sched:
			heap.Push(&waiting, it)
		case <-due:
		case out[Critical] <- head[Critical]:
			ready[Critical] = ready[Critical][1:]
		case out[High] <- head[High]:
			ready[High] = ready[High][1:]
		case out[Normal] <- head[Normal]:
			ready[Normal] = ready[Normal][1:]
		case out[Low] <- head[Low]:
			ready[Low] = ready[Low][1:]
		}
	}
}

// dueHeap orders waiting items by RunAt, then priority.
type dueHeap []WorkItem

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if !h[i].RunAt.Equal(h[j].RunAt) {
		return h[i].RunAt.Before(h[j].RunAt)
	}
	return h[i].Priority < h[j].Priority
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(WorkItem)) }
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

func (pl *pool) stats(s *QueueStats) {
	for p, q := range pl.queues {
		s.Depths[priorityNames[p]] = q.Len()
		st := q.Stats()
		s.Rejected += st.Rejected
		s.Evicted += st.Evicted
	}
	s.Capacity = pl.cfg.WorkCapacity
	s.Policy = pl.cfg.WorkPolicy.String()
	s.Workers = pl.cfg.Workers
	s.Busy = int(pl.busy.Load())
	s.Scheduled = int(pl.scheduled.Load())
	s.Accepted = pl.accepted.Load()
	s.Done = pl.done.Load()
	s.Failed = pl.failed.Load()
	s.Retried = pl.retried.Load()
	for name, k := range pl.kinds {
		if k.breaker != nil {
			if s.Breakers == nil {
				s.Breakers = map[string]string{}
			}
			s.Breakers[name] = k.breaker.State().String()
		}
	}
}

// Enqueue stores a work item and queues it. The item is in the store before
// Enqueue returns, so once it returns without error the item will run, even
// after a crash. ErrFull (possibly wrapping the ctx's deadline) or
// ErrClosed mean it was not accepted.
func (p *Processor) Enqueue(ctx context.Context, nw NewWork) (WorkItem, error) {
	if p.pool == nil {
		return WorkItem{}, ErrNoStore
	}
	return p.pool.enqueue(ctx, nw)
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
