package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canalhq/canal/internal/outage"
	"github.com/canalhq/canal/internal/queue"
)

// Handler is one execution of a recurring job.
type Handler func(ctx context.Context) error

// Config configures a Processor.
type Config struct {
	// ControlCapacity bounds the control channel (default 100) and
	// ControlPolicy says what happens when it is full (default Wait: the
	// caller waits until its context ends).
	ControlCapacity int
	ControlPolicy   Policy
	// EventCapacity bounds the event channel (default 1024). When it is full
	// events are dropped and counted rather than blocking a job.
	EventCapacity int
	// WatchOnly: the work pool claims no item, leaving them to the
	// processes that run their kinds (a dashboard-only process sharing a
	// PostgreSQL database). Enqueue, retry and delete still work.
	WatchOnly bool
	// MinInterval is the smallest interval a job may have (default 100ms).
	MinInterval time.Duration
	// Store keeps job state across restarts; a store made by NewStore
	// also runs work items on the queue engine. Without one, job state
	// lives in memory and Enqueue returns ErrNoStore.
	Store Store
	// Process is the program's presence on the queue engine (unique id,
	// heartbeat, rescuer), shared with the outbox: started before Run and
	// stopped after it by its owner. Nil: the processor makes its own and
	// starts and stops it with Run.
	Process *queue.Process
	// Workers is how many work items run at once (default 4).
	Workers int
	// WorkCapacity bounds the backlog: the work items waiting in the
	// table, in every process (default 256). WorkPolicy says what Enqueue
	// does when it is full (default Wait: until the caller's deadline,
	// then ErrFull). With DropOldest the oldest waiting item is recorded
	// as dropped, never lost silently.
	WorkCapacity int
	WorkPolicy   Policy
	// WorkLease is how long a claimed item stays leased to this process
	// without a heartbeat (default 10s): a dead process's items are taken
	// over that long after its last heartbeat.
	WorkLease time.Duration
	// WorkPoll is how often the table is looked at when nothing wakes the
	// workers (default 1s).
	WorkPoll time.Duration
	// WorkRetention is how long done and dropped items are kept (default
	// 24h; negative: forever); failed ones stay until deleted by hand.
	WorkRetention time.Duration
	// Instance is ignored: every process has a unique id on the engine,
	// and no process takes another live process's items.
	//
	// Deprecated: nothing to set.
	Instance string
	// RunHistory is how many runs of each recurring job the store keeps
	// (default DefaultRunHistory); older ones are pruned.
	RunHistory int
	// StatsEvery is how often queue depths are checked and, if changed,
	// published (default 250ms).
	StatsEvery time.Duration
	// LeaderLease is how long the recurring jobs' leader holds its lease
	// without renewing it (default DefaultLeaderLease): with a Store, the
	// processes sharing the database elect one leader that runs the
	// recurring jobs; when it dies another takes over this long after.
	LeaderLease time.Duration
	// Logger is tagged by the caller (a "component"); the processor and
	// the queue clients it builds add other keys, never "component".
	Logger *slog.Logger
	// Now is the clock (default time.Now); times are kept in UTC.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.ControlCapacity <= 0 {
		c.ControlCapacity = 100
	}
	if c.EventCapacity <= 0 {
		c.EventCapacity = 1024
	}
	if c.MinInterval <= 0 {
		c.MinInterval = 100 * time.Millisecond
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.WorkCapacity <= 0 {
		c.WorkCapacity = 256
	}
	if c.WorkRetention == 0 {
		c.WorkRetention = 24 * time.Hour
	}
	if c.RunHistory <= 0 {
		c.RunHistory = DefaultRunHistory
	}
	if c.StatsEvery <= 0 {
		c.StatsEvery = 250 * time.Millisecond
	}
	if c.LeaderLease <= 0 {
		c.LeaderLease = DefaultLeaderLease
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

type commandKind int

const (
	cmdStart commandKind = iota
	cmdStop
	cmdTrigger
	cmdStatus
	cmdSetInterval
	cmdList
	cmdRetryWork
	cmdDeleteWork
)

func (k commandKind) String() string {
	return [...]string{"start", "stop", "trigger", "status", "set-interval", "list", "retry work", "delete work"}[k]
}

// command is one request to the processor; reply is buffered so the processor
// never blocks on a caller that gave up.
type command struct {
	kind     commandKind
	name     string
	interval time.Duration
	reply    chan reply
	sent     time.Time // when it entered the control channel (monotonic)
	deadline time.Time // the caller's, if any: a forward waits no longer
	// forwarded: the command came from another process through the
	// database; a process that does not lead refuses it (ErrNoLeader)
	// rather than forwarding it again.
	forwarded bool
}

// jobCommand: a command about recurring jobs, which the leader answers.
func (k commandKind) jobCommand() bool {
	switch k {
	case cmdStart, cmdStop, cmdTrigger, cmdStatus, cmdSetInterval, cmdList:
		return true
	}
	return false
}

type reply struct {
	status Status
	list   []Status
	work   WorkItem // work commands (workadmin.go)
	err    error
}

// job is owned by the processor goroutine; no other goroutine touches it.
type job struct {
	status  Status
	handler Handler
	stop    context.CancelFunc // cancels the runner while running
	reset   chan time.Duration // tells the runner a new interval
	trigger chan struct{}      // asks the runner for one run now
	// triggered: a run asked for while the job was stopped is in
	// progress; more triggers are coalesced into it.
	triggered bool
}

type runResult struct {
	name     string
	at       time.Time
	duration time.Duration
	err      error
	next     time.Time // zero for a triggered run of a stopped job
	manual   bool      // triggered by hand
	skipped  bool      // not run: the fence found the lease gone
}

// Processor owns recurring jobs and the work pool, and answers commands
// about them through its control channel.
type Processor struct {
	cfg      Config
	cmds     *Bounded[command]
	cmdWait  *waitHist // time commands spent in cmds
	results  chan runResult
	events   *emitter
	jobs     map[string]*job
	order    []string
	pool     *pool
	recorder *recorder // nil without a store
	shutdown chan context.Context

	started chan struct{}
	quit    chan struct{} // closed when Run stops taking results
	done    chan struct{} // closed when Run has returned
	once    sync.Once

	// The election, with a store: lease is the store's side of it, elect
	// campaigns (only if this process registers a recurring job: a
	// process with none never leads), leadCh brings its changes to Run.
	// term (>0 while this process leads), termCtx and termCancel belong
	// to Run's goroutine.
	lease      leaseStore
	elect      *elector
	leadCh     chan leadership
	term       int64
	termCtx    context.Context
	termCancel context.CancelFunc
	leading    atomic.Int64  // term, for IsLeader
	cmdWake    chan struct{} // a forwarded command waits (NOTIFY)
	replies    replies       // a command this process forwarded was answered

	// early orders Run's start against a Shutdown that finds Run not
	// started: shutEarly says Shutdown came first, so Run only answers
	// what was queued and returns.
	early     sync.Mutex
	shutEarly bool
}

// NewProcessor returns a processor; register jobs and kinds, then call Run.
func NewProcessor(cfg Config) *Processor {
	cfg.defaults()
	p := &Processor{
		cfg:      cfg,
		results:  make(chan runResult, 64),
		cmdWait:  newWaitHist(),
		events:   newEmitter(cfg.EventCapacity, func() time.Time { return cfg.Now().UTC() }),
		jobs:     make(map[string]*job),
		shutdown: make(chan context.Context, 1),
		started:  make(chan struct{}),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	// An evicted command still gets an answer: the tutorial's
	// TrySetException, with ErrDropped.
	p.cmds = NewBounded(cfg.ControlCapacity, cfg.ControlPolicy, func(_ context.Context, c command) {
		c.reply <- reply{err: fmt.Errorf("%s %q: %w", c.kind, c.name, ErrDropped)}
	})
	if cfg.Store != nil {
		if gs, ok := cfg.Store.(gormStore); ok {
			p.pool = newPool(&p.cfg, p.events, gs)
		}
		var db *outage.Monitor // the process's view of the database
		switch {
		case p.pool != nil:
			db = p.pool.proc.Outage()
		case cfg.Process != nil:
			db = cfg.Process.Outage()
		}
		p.recorder = newRecorder(cfg.Store, p.cfg.RunHistory, p.cfg.Logger, db)
	}
	if ls, ok := cfg.Store.(leaseStore); ok && p.pool != nil {
		p.lease = ls
		p.elect = &elector{
			store: ls, owner: p.pool.proc.ID(), lease: p.cfg.LeaderLease, now: p.now,
			log: p.cfg.Logger.With("role", "leader"), poke: make(chan struct{}, 1),
		}
		p.leadCh = make(chan leadership)
		p.cmdWake = make(chan struct{}, 1)
		id := p.pool.proc.ID()
		p.pool.proc.OnWake(func(name string) {
			switch name {
			case wakeLeader:
				p.elect.wake()
			case wakeCmd:
				select {
				case p.cmdWake <- struct{}{}:
				default:
				}
			case wakeReply + id:
				p.replies.wake()
			}
		})
	}
	return p
}

// Register adds a recurring job before Run; running says whether it starts
// running when the processor starts. A state saved in the Store (running or
// stopped, interval) wins over these defaults.
func (p *Processor) Register(name string, interval time.Duration, running bool, h Handler) error {
	if p.isStarted() {
		return fmt.Errorf("register %q: processor already started", name)
	}
	if name == "" || h == nil {
		return fmt.Errorf("register %q: name and handler are required", name)
	}
	if _, ok := p.jobs[name]; ok {
		return fmt.Errorf("register %q: %w", name, ErrDuplicateJob)
	}
	if err := p.checkInterval(interval); err != nil {
		return fmt.Errorf("register %q: %w", name, err)
	}
	p.jobs[name] = &job{status: Status{Name: name, Interval: interval, Running: running}, handler: h}
	p.order = append(p.order, name)
	if p.elect != nil {
		p.elect.defaults = append(p.elect.defaults, JobState{Name: name, Running: running, Interval: interval})
	}
	return nil
}

// RegisterKind adds a work kind and its handler before Run.
func (p *Processor) RegisterKind(kind string, h WorkHandler, opts KindOptions) error {
	if p.isStarted() {
		return fmt.Errorf("register kind %q: processor already started", kind)
	}
	if p.pool == nil {
		return fmt.Errorf("register kind %q: %w", kind, ErrNoStore)
	}
	return p.pool.register(kind, h, opts)
}

func (p *Processor) isStarted() bool {
	select {
	case <-p.started:
		return true
	default:
		return false
	}
}

// Events returns the channel of state changes. Read it, or events are
// dropped (and counted in Event.Dropped).
func (p *Processor) Events() <-chan Event { return p.events.ch }

// Publish adds an event to the stream without blocking, for producers that
// belong with the jobs (a Pipeline); a full stream drops it and counts it.
func (p *Processor) Publish(e Event) { p.events.publish(e) }

// Run restores saved state, starts running jobs and the worker pool, and
// processes commands until ctx is done (a hard stop: runs in progress are
// cancelled and interrupted work items go back to pending) or Shutdown is
// called (a graceful stop).
func (p *Processor) Run(ctx context.Context) error {
	p.early.Lock()
	shutEarly := p.shutEarly
	p.once.Do(func() { close(p.started) })
	p.early.Unlock()
	runCtx, cancel := context.WithCancel(ctx)
	var runners sync.WaitGroup
	if p.recorder != nil {
		go p.recorder.run()
	}
	// Stop everything this Run started, then wait for it: runners and
	// workers see runCtx end; runOnce stops offering results on quit. The
	// recorder writes the runs already applied before Run returns.
	defer func() {
		p.stopAll()
		close(p.quit)
		cancel()
		runners.Wait()
		if p.elect != nil && p.elect.release(ctx) {
			p.notify(ctx, wakeLeader) // another process leads at once
		}
		if p.pool != nil {
			// A hard stop (after a drain, a no-op): attempts in flight
			// are cancelled and given back.
			_ = p.pool.stop(runCtx)
		}
		if p.recorder != nil {
			p.recorder.stop()
		}
		close(p.done)
	}()

	if err := p.restore(ctx); err != nil {
		if ctx.Err() != nil {
			// Stopped while starting: a clean stop, nothing ran yet.
			return nil
		}
		return err
	}
	if shutEarly {
		// Shutdown came before Run: answer the commands queued until
		// then, and start nothing.
		return p.drain(ctx, runCtx, &runners)
	}
	if p.pool != nil {
		if err := p.pool.start(runCtx); err != nil {
			return err
		}
	}
	runners.Go(func() { p.report(runCtx) })
	switch {
	case p.elect != nil && len(p.order) > 0:
		// Several processes may share the store: the one holding the lease
		// runs the recurring jobs. The first try is made here, so a single
		// process leads as soon as Run runs.
		if l, ok := p.elect.try(ctx); ok {
			p.lead(runCtx, &runners, l)
		}
		runners.Go(func() { p.elect.run(runCtx, p.deliver) })
	case p.lease == nil:
		// No store: this process is the only one.
		for _, name := range p.order {
			j := p.jobs[name]
			if j.status.Running {
				p.startRunner(runCtx, &runners, j, j.status.Interval)
			}
		}
	}
	p.publishSnapshot(ctx)

	for {
		select {
		case <-ctx.Done():
			return nil
		case dctx := <-p.shutdown:
			return p.drain(dctx, runCtx, &runners)
		case r := <-p.results:
			p.applyResult(r)
		case l := <-p.leadCh:
			p.lead(runCtx, &runners, l)
		case cmd := <-p.cmds.C():
			// Take what is queued without blocking, as the tutorial's
			// WaitToReadAsync + TryRead loop does.
			p.handle(runCtx, &runners, cmd)
			for {
				cmd, ok := p.cmds.TryRecv()
				if !ok {
					break
				}
				p.handle(runCtx, &runners, cmd)
			}
		}
	}
}

// drain is the graceful half of shutdown: refuse new commands and work,
// answer the commands already queued, claim no more work and let the
// attempts in flight finish until dctx ends. Whatever is left stays
// pending in the table, for another process or the next start.
func (p *Processor) drain(dctx, runCtx context.Context, runners *sync.WaitGroup) error {
	p.cmds.Close()
	for {
		cmd, ok := p.cmds.TryRecv()
		if !ok {
			break
		}
		p.handle(runCtx, runners, cmd)
	}
	if p.pool != nil {
		if err := p.pool.stop(dctx); err != nil {
			p.cfg.Logger.Warn("work in flight not finished before the deadline; it goes back to pending", "err", err)
		}
	}
	return nil
}

// Shutdown stops intake and drains: queued commands are answered, queued
// work runs until ctx ends, then Run returns. It waits for Run and returns
// ctx's error if that took too long.
func (p *Processor) Shutdown(ctx context.Context) error {
	p.early.Lock()
	if !p.isStarted() {
		// A Run that starts later sees shutEarly and returns at once.
		p.shutEarly = true
		p.early.Unlock()
		p.cmds.Close()
		if p.pool != nil {
			p.pool.close()
		}
		return nil
	}
	p.early.Unlock()
	// The request is left in a one-slot buffer rather than handed over: a
	// caller whose deadline ends before Run takes it must still stop Run
	// (which then drains with that expired deadline, at once).
	select {
	case p.shutdown <- ctx:
	default: // a shutdown is already asked for
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		// Run stops soon (drain saw the same deadline) unless a handler
		// ignores its context; either way the caller's time is up.
		return ctx.Err()
	}
}

// restore applies the saved state of each registered job.
func (p *Processor) restore(ctx context.Context) error {
	if p.cfg.Store == nil {
		return nil
	}
	saved, err := p.cfg.Store.LoadJobs(ctx)
	if err != nil {
		return fmt.Errorf("restore jobs: %w", err)
	}
	p.applyStates(saved)
	return nil
}

// applyStates takes the stored state of each registered job.
func (p *Processor) applyStates(saved []JobState) {
	for _, s := range saved {
		j, ok := p.jobs[s.Name]
		if !ok {
			continue // a job that is no longer registered
		}
		j.status.Executions, j.status.Failures = s.Executions, s.Failures
		j.status.LastRun, j.status.LastDuration, j.status.LastError = s.LastRun, s.LastDuration, s.LastError
		if !s.Saved {
			continue // only counters: registration decides the rest
		}
		j.status.Running = s.Running
		if s.Interval >= p.cfg.MinInterval {
			j.status.Interval = s.Interval
		}
		j.status.Message = "restored"
	}
}

// checkInterval refuses intervals below MinInterval, and finer than a
// millisecond: the store keeps milliseconds, so a finer interval would come
// back different after a restart.
func (p *Processor) checkInterval(d time.Duration) error {
	if d < p.cfg.MinInterval {
		return fmt.Errorf("%w: %s is below %s", ErrInvalidInterval, d, p.cfg.MinInterval)
	}
	if d > MaxInterval { // interval.go
		return fmt.Errorf("%w: %s is above %s", ErrInvalidInterval, d, MaxInterval)
	}
	if d%time.Millisecond != 0 {
		return fmt.Errorf("%w: %s is not a whole number of milliseconds", ErrInvalidInterval, d)
	}
	return nil
}

// save persists a job's new state before the processor applies it, so an
// answer never claims a change that a restart would forget.
func (p *Processor) save(ctx context.Context, j *job, running bool, interval time.Duration) error {
	if p.cfg.Store == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return p.cfg.Store.SaveJob(ctx, JobState{Name: j.status.Name, Running: running, Interval: interval, Saved: true})
}

// publishSnapshot publishes every job and the queue: the jobs as this
// process runs them when it leads, else as stored (the leader's).
func (p *Processor) publishSnapshot(ctx context.Context) {
	list := p.list()
	if p.lease != nil && p.term == 0 {
		if r := p.stored(ctx, command{kind: cmdList}); r.err == nil {
			list = r.list
		}
	} else {
		for _, name := range p.order {
			p.publish(EventJobUpdated, p.jobs[name])
		}
	}
	p.events.publish(Event{Type: EventSnapshot, Jobs: list, Queue: p.queueStats()})
}

func (p *Processor) list() []Status {
	out := make([]Status, 0, len(p.order))
	for _, name := range p.order {
		out = append(out, p.jobs[name].status)
	}
	return out
}

func (p *Processor) handle(ctx context.Context, runners *sync.WaitGroup, cmd command) {
	if !cmd.sent.IsZero() {
		p.cmdWait.observe(time.Since(cmd.sent))
	}
	if p.lease != nil && p.term == 0 && cmd.kind.jobCommand() {
		// Another process leads (or none does): the answer comes from the
		// database or the leader, on a goroutine, so the control channel
		// never waits for it.
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if !cmd.deadline.IsZero() {
			fctx, cancel = context.WithDeadline(ctx, cmd.deadline)
		}
		runners.Go(func() {
			defer cancel()
			r, after := p.forward(fctx, cmd)
			cmd.reply <- r
			after()
		})
		return
	}
	if p.termCtx != nil {
		ctx = p.termCtx // runs started now end with this term
	}
	var r reply
	defer func() {
		if v := recover(); v != nil {
			r = reply{err: fmt.Errorf("%s %q: processor panic: %v", cmd.kind, cmd.name, v)}
			p.cfg.Logger.Error("command panicked", "command", cmd.kind.String(), "job", cmd.name, "panic", v)
		}
		cmd.reply <- r
	}()
	switch cmd.kind {
	case cmdList:
		r.list = p.list()
		return
	case cmdRetryWork, cmdDeleteWork:
		r.work, r.err = p.workCommand(ctx, cmd)
		return
	}
	j, ok := p.jobs[cmd.name]
	if !ok {
		r.err = fmt.Errorf("%s %q: %w", cmd.kind, cmd.name, ErrUnknownJob)
		return
	}
	switch cmd.kind {
	case cmdStart:
		if j.status.Running {
			r.err = fmt.Errorf("start %q: %w", cmd.name, ErrAlreadyRunning)
			break
		}
		if err := p.save(ctx, j, true, j.status.Interval); err != nil {
			r.err = fmt.Errorf("start %q: %w", cmd.name, err)
			break
		}
		j.status.Running = true
		p.startRunner(ctx, runners, j, j.status.Interval)
		j.status.Message = "started"
		p.publish(EventJobStarted, j)
	case cmdStop:
		if !j.status.Running {
			r.err = fmt.Errorf("stop %q: %w", cmd.name, ErrNotRunning)
			break
		}
		if err := p.save(ctx, j, false, j.status.Interval); err != nil {
			r.err = fmt.Errorf("stop %q: %w", cmd.name, err)
			break
		}
		j.stop()
		j.stop, j.reset, j.trigger = nil, nil, nil
		j.status.Running = false
		j.status.NextRun = nil
		j.status.Message = "stopped"
		p.publish(EventJobStopped, j)
	case cmdTrigger:
		switch {
		case j.status.Running:
			select {
			case j.trigger <- struct{}{}:
			default: // a run is already requested
			}
		case !j.triggered: // else the triggered run in progress is this one
			j.triggered = true
			name, h, term := j.status.Name, j.handler, p.term
			runners.Go(func() { p.runOnce(ctx, name, h, 0, true, term) })
		}
		j.status.Message = "triggered"
	case cmdSetInterval:
		if err := p.checkInterval(cmd.interval); err != nil {
			r.err = fmt.Errorf("set interval %q: %w", cmd.name, err)
			break
		}
		if err := p.save(ctx, j, j.status.Running, cmd.interval); err != nil {
			r.err = fmt.Errorf("set interval %q: %w", cmd.name, err)
			break
		}
		j.status.Interval = cmd.interval
		if j.status.Running {
			// Buffered 1: replace a reset the runner has not read yet.
			select {
			case <-j.reset:
			default:
			}
			j.reset <- cmd.interval
			next := p.now().Add(cmd.interval)
			j.status.NextRun = &next
		}
		j.status.Message = "interval set to " + cmd.interval.String()
		p.publish(EventJobUpdated, j)
	case cmdStatus:
	}
	r.status = j.status
}

// startRunner starts j's runner; its first run is due after first, the
// next ones an interval after the end of the one before.
func (p *Processor) startRunner(ctx context.Context, runners *sync.WaitGroup, j *job, first time.Duration) {
	rctx, cancel := context.WithCancel(ctx)
	j.stop = cancel
	j.reset = make(chan time.Duration, 1)
	j.trigger = make(chan struct{}, 1)
	next := p.now().Add(first)
	j.status.NextRun = &next
	name, h, interval, reset, trigger, term := j.status.Name, j.handler, j.status.Interval, j.reset, j.trigger, p.term
	runners.Go(func() {
		t := time.NewTimer(first)
		defer t.Stop()
		for {
			manual := false
			select {
			case <-rctx.Done():
				return
			case d := <-reset:
				interval = d
				t.Reset(interval)
				continue
			case <-trigger:
				manual = true
			case <-t.C:
			}
			p.runOnce(rctx, name, h, interval, manual, term)
			t.Reset(interval)
		}
	})
}

// runOnce executes h and reports to the processor; a panic is a failed run.
// interval is the runner's (the next run is due that long after this one
// ends), or 0 for a triggered run of a stopped job; manual says it was
// triggered by hand. With a store, the run starts only if the fence finds
// this process's lease of term still live.
func (p *Processor) runOnce(ctx context.Context, name string, h Handler, interval time.Duration, manual bool, term int64) {
	start := p.now()
	if p.lease != nil {
		ok, err := p.lease.fence(ctx, name, p.processID(), term, us(start))
		if err != nil || !ok {
			if ctx.Err() != nil {
				return
			}
			p.cfg.Logger.Debug("run not started: the lease is not this process's any more", "job", name, "term", term, "err", err)
			p.elect.wake()
			r := runResult{name: name, skipped: true}
			if interval > 0 {
				r.next = p.now().Add(interval)
			}
			select {
			case p.results <- r:
			case <-p.quit:
			}
			return
		}
	}
	err := func() (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("panic: %v", v)
			}
		}()
		return h(ctx)
	}()
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return // stopped mid-run: not a failure
	}
	end := p.now()
	r := runResult{name: name, at: start, duration: end.Sub(start), err: err, manual: manual}
	if interval > 0 {
		r.next = end.Add(interval)
	}
	select {
	case p.results <- r:
	case <-p.quit:
	}
}

func (p *Processor) applyResult(r runResult) {
	j, ok := p.jobs[r.name]
	if !ok {
		return
	}
	if r.next.IsZero() {
		j.triggered = false
	}
	if r.skipped {
		return
	}
	at := r.at.UTC()
	j.status.LastRun = &at
	j.status.LastDuration = r.duration
	j.status.Executions++
	typ := EventRunSucceeded
	if r.err != nil {
		j.status.Failures++
		j.status.LastError = r.err.Error()
		typ = EventRunFailed
	} else {
		j.status.LastError = ""
	}
	if j.status.Running && !r.next.IsZero() {
		next := r.next.UTC()
		j.status.NextRun = &next
	}
	if p.recorder != nil {
		run := JobRun{Job: r.name, At: at, Duration: r.duration, Manual: r.manual}
		if r.err != nil {
			run.Error = j.status.LastError
		}
		st := j.status
		p.recorder.add(runRecord{run: run, state: JobState{
			Name: st.Name, Running: st.Running, Interval: st.Interval,
			Executions: st.Executions, Failures: st.Failures, LastRun: st.LastRun, LastDuration: st.LastDuration, LastError: st.LastError,
		}})
	}
	p.publish(typ, j)
}

func (p *Processor) stopAll() {
	if p.termCancel != nil {
		p.termCancel()
	}
	for _, j := range p.jobs {
		if j.stop != nil {
			j.stop()
		}
	}
}

func (p *Processor) publish(t EventType, j *job) {
	st := j.status
	p.events.publish(Event{Type: t, Job: &st})
}

// report publishes the queue's state whenever it changed, at most once per
// StatsEvery: depths change on every item, so they are coalesced here
// rather than sent per item.
func (p *Processor) report(ctx context.Context) {
	t := time.NewTicker(p.cfg.StatsEvery)
	defer t.Stop()
	var last *QueueStats
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := p.queueStats()
		if last != nil && sameQueue(*last, *s) {
			continue
		}
		last = s
		p.events.publish(Event{Type: EventQueue, Queue: s})
	}
}

func sameQueue(a, b QueueStats) bool {
	// Dropping our own report must not cause a new one.
	a.EventsDropped, b.EventsDropped = 0, 0
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func (p *Processor) queueStats() *QueueStats {
	s := &QueueStats{Depths: map[string]int{}, Control: p.cmds.Stats(), ControlWait: p.cmdWait.stats(), EventsDropped: p.events.dropped.Load()}
	if p.pool != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.pool.stats(ctx, s)
	}
	return s
}

// Queue reports the work queue's and control channel's state now.
func (p *Processor) Queue() QueueStats { return *p.queueStats() }

func (p *Processor) now() time.Time { return p.cfg.Now().UTC() }

// send puts cmd on the control channel under its policy, then waits for
// the reply until ctx is done.
func (p *Processor) send(ctx context.Context, cmd command) (reply, error) {
	cmd.reply = make(chan reply, 1)
	cmd.sent = time.Now()
	if d, ok := ctx.Deadline(); ok {
		cmd.deadline = d
	}
	if err := p.cmds.Send(ctx, cmd); err != nil {
		return reply{}, fmt.Errorf("%s %q: control channel: %w", cmd.kind, cmd.name, err)
	}
	select {
	case r := <-cmd.reply:
		return r, r.err
	case <-p.done:
		select {
		case r := <-cmd.reply:
			return r, r.err
		default:
			return reply{}, fmt.Errorf("%s %q: %w", cmd.kind, cmd.name, ErrClosed)
		}
	case <-ctx.Done():
		return reply{}, fmt.Errorf("%s %q: waiting for reply: %w", cmd.kind, cmd.name, ctx.Err())
	}
}

// Start starts a stopped job.
func (p *Processor) Start(ctx context.Context, name string) (Status, error) {
	r, err := p.send(ctx, command{kind: cmdStart, name: name})
	return r.status, err
}

// Stop stops a running job; a run in progress is cancelled.
func (p *Processor) Stop(ctx context.Context, name string) (Status, error) {
	r, err := p.send(ctx, command{kind: cmdStop, name: name})
	return r.status, err
}

// Trigger runs a job once now, whether it is running or not.
func (p *Processor) Trigger(ctx context.Context, name string) (Status, error) {
	r, err := p.send(ctx, command{kind: cmdTrigger, name: name})
	return r.status, err
}

// Status reports one job.
func (p *Processor) Status(ctx context.Context, name string) (Status, error) {
	r, err := p.send(ctx, command{kind: cmdStatus, name: name})
	return r.status, err
}

// SetInterval changes how often a job runs.
func (p *Processor) SetInterval(ctx context.Context, name string, d time.Duration) (Status, error) {
	r, err := p.send(ctx, command{kind: cmdSetInterval, name: name, interval: d})
	return r.status, err
}

// List reports every job in registration order.
func (p *Processor) List(ctx context.Context) ([]Status, error) {
	r, err := p.send(ctx, command{kind: cmdList})
	return r.list, err
}
