package jobs

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultLeaderLease is how long the leader's lease lasts without renewal:
// when the leader dies, another process leads within about this long. The
// leader renews it every third of it.
const DefaultLeaderLease = 3 * time.Second

// Wake-up names (queue.Process.Notify) of the election and of forwarded
// commands.
const (
	wakeLeader = "jobs.leader"          // the lease was released: try to take it
	wakeCmd    = "jobs.cmd"             // a command waits for the leader
	wakeReply  = "jobs.reply."          // + process id: a command of this process was answered
	maxBackoff = 5 * time.Second        // longest wait between tries while the database fails
	stepDown   = 2 * time.Second        // bound of the release at a clean stop
	notifyWait = 2 * time.Second        // bound of one NOTIFY
	cmdPoll    = 500 * time.Millisecond // the leader looks for commands this often without a wake-up
)

// leadership is a change the elector tells the processor: term > 0, this
// process now leads, with the jobs' stored state read at the takeover;
// term 0, it no longer does.
type leadership struct {
	term   int64
	states []JobState
}

// elector campaigns for the lease and keeps it: a service owned by
// Processor.Run. It alone touches term and down.
type elector struct {
	store leaseStore
	owner string
	lease time.Duration
	now   func() time.Time
	log   *slog.Logger
	poke  chan struct{} // try now: the lease was released, or a run found the fence shut
	// defaults are the registered jobs' states, written for jobs that have
	// no saved state at each takeover.
	defaults []JobState

	term  int64
	valid time.Time // this process stops leading before the lease's end
	down  bool      // the database failed at the last try (logged once)
}

func (e *elector) wake() {
	select {
	case e.poke <- struct{}{}:
	default:
	}
}

// try takes the lease if it is free and reads the jobs' state.
func (e *elector) try(ctx context.Context) (leadership, bool) {
	start := e.now()
	term, err := e.store.acquire(ctx, e.owner, us(start), us(start.Add(e.lease)))
	if err != nil {
		if ctx.Err() == nil {
			e.failed(err)
		}
		return leadership{}, false
	}
	e.ok()
	if term == 0 {
		return leadership{}, false
	}
	states, err := e.takeover(ctx)
	if err != nil {
		e.failed(err)
		// Let the lease go, so that no process waits for it to expire.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stepDown)
		_ = e.store.release(rctx, e.owner, term)
		cancel()
		return leadership{}, false
	}
	e.term, e.valid = term, start.Add(e.lease-e.lease/3)
	e.log.Info("leading the recurring jobs", "term", term)
	return leadership{term: term, states: states}, true
}

func (e *elector) takeover(ctx context.Context) ([]JobState, error) {
	if err := e.store.ensureJobs(ctx, e.defaults); err != nil {
		return nil, err
	}
	return e.store.LoadJobs(ctx)
}

// run keeps or seeks the lease until ctx ends; deliver hands a change to
// the processor and reports false when it no longer listens.
func (e *elector) run(ctx context.Context, deliver func(leadership) bool) {
	every := e.lease / 3
	wait := every
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.poke:
		}
		if e.term == 0 {
			if l, ok := e.try(ctx); ok {
				if !deliver(l) {
					return
				}
			}
		} else if lost := e.renew(ctx); lost {
			e.term = 0
			if !deliver(leadership{}) {
				return
			}
		}
		wait = every
		if e.down && e.term == 0 {
			wait = min(2*wait, maxBackoff)
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
	}
}

// renew extends the lease; true when this process no longer leads: the
// lease went to another process, or the database failed for so long that
// it may have.
func (e *elector) renew(ctx context.Context) (lost bool) {
	start := e.now()
	ok, err := e.store.renew(ctx, e.owner, e.term, us(start), us(start.Add(e.lease)))
	switch {
	case err != nil:
		e.failed(err)
		if e.now().Before(e.valid) {
			return false
		}
		e.log.Warn("stopped leading the recurring jobs: the lease could not be renewed", "term", e.term)
		return true
	case !ok:
		e.ok()
		e.log.Warn("stopped leading the recurring jobs: another process holds the lease", "term", e.term)
		return true
	}
	e.ok()
	e.valid = start.Add(e.lease - e.lease/3)
	return false
}

// release lets the lease go at a clean stop, so another process leads at
// once instead of after the lease's end.
func (e *elector) release(ctx context.Context) bool {
	if e.term == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stepDown)
	defer cancel()
	if err := e.store.release(ctx, e.owner, e.term); err != nil {
		e.log.Warn("lease not released; another process leads when it ends", "err", err)
		return false
	}
	e.term = 0
	return true
}

// failed logs the first failure of an outage, not every try.
func (e *elector) failed(err error) {
	if !e.down {
		e.log.Warn("leader election: database unavailable; trying again quietly", "err", err)
	}
	e.down = true
}

func (e *elector) ok() {
	if e.down {
		e.log.Info("leader election: database back")
	}
	e.down = false
}

// deliver hands a change of leadership to Run; false once Run stopped
// taking them.
func (p *Processor) deliver(l leadership) bool {
	select {
	case p.leadCh <- l:
		return true
	case <-p.quit:
		return false
	}
}

// lead applies a change of leadership in Run's goroutine: the former
// term's runners and command server stop; a new term restores the jobs'
// stored state and schedules each running job from its last run, so the
// interval holds across a hand-over.
func (p *Processor) lead(ctx context.Context, runners *sync.WaitGroup, l leadership) {
	if p.termCancel != nil {
		p.termCancel()
		p.termCtx, p.termCancel = nil, nil
	}
	for _, j := range p.jobs {
		j.stop, j.reset, j.trigger = nil, nil, nil
		j.status.NextRun = nil
	}
	p.term = l.term
	p.leading.Store(l.term)
	if l.term == 0 {
		p.publishSnapshot(ctx)
		return
	}
	p.termCtx, p.termCancel = context.WithCancel(ctx)
	p.applyStates(l.states)
	byName := make(map[string]JobState, len(l.states))
	for _, s := range l.states {
		byName[s.Name] = s
	}
	now := p.now()
	for _, name := range p.order {
		j := p.jobs[name]
		if j.status.Running {
			first := j.status.Interval
			if s, ok := byName[name]; ok {
				s.Interval = j.status.Interval
				if next := nextRun(s, now); !next.IsZero() {
					first = next.Sub(now)
				}
			}
			p.startRunner(p.termCtx, runners, j, first)
		}
	}
	tctx := p.termCtx
	runners.Go(func() { p.serveCommands(tctx) })
	p.publishSnapshot(ctx)
}

// IsLeader says whether this process runs the recurring jobs now: it holds
// the lease, or it has no store and is the only process.
func (p *Processor) IsLeader() bool {
	return p.lease == nil || p.leading.Load() > 0
}
