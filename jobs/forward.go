package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// A command for a recurring job posted to a process that does not lead is
// forwarded through the database: the process writes a command row and
// wakes the leader (NOTIFY on PostgreSQL, the leader's poll on SQLite); the
// leader takes the row, puts the command on its own control channel, writes
// the reply into the row and wakes the asking process, which reads it.

// forwardTimeout bounds the wait for the leader's reply when the caller's
// context has no earlier deadline.
const forwardTimeout = 5 * time.Second

// forwardMargin: a forward gives up at least this long (and up to a fifth
// of the time left, at most a second) before its caller's deadline.
const forwardMargin = 50 * time.Millisecond

// Errors of forwarded commands; test them with errors.Is.
var (
	// ErrNoLeader: no process leads the recurring jobs now (none runs
	// them, or the leader died and its lease has not ended yet).
	ErrNoLeader = errors.New("no process leads the recurring jobs")
	// ErrLeaderTimeout: the leader did not answer in time.
	ErrLeaderTimeout = errors.New("the leader did not answer in time")
)

// commandRow is a command forwarded to the leader, and its reply.
type commandRow struct {
	ID         int64  `gorm:"column:id;primaryKey;autoIncrement"`
	Kind       string `gorm:"column:kind;size:50;not null"`
	Job        string `gorm:"column:job;size:200;not null"`
	IntervalMS int64  `gorm:"column:interval_ms;not null;default:0"`
	Sender     string `gorm:"column:sender;size:300;not null"`
	DeadlineUS int64  `gorm:"column:deadline_us;not null"`
	TakenBy    string `gorm:"column:taken_by;size:300;not null;default:''"`
	Answered   bool   `gorm:"column:answered;not null;default:false"`
	Reply      string `gorm:"column:reply;type:text"`
	ErrCode    string `gorm:"column:err_code;size:50"`
	ErrMsg     string `gorm:"column:err_msg;type:text"`
}

func (commandRow) TableName() string { return "canal_job_commands" }

// commandStore keeps forwarded commands.
type commandStore interface {
	postCommand(ctx context.Context, c *commandRow) error
	// takeCommands claims for owner up to limit commands nobody took whose
	// deadline has not passed, oldest first.
	takeCommands(ctx context.Context, owner string, nowUS int64, limit int) ([]commandRow, error)
	answerCommand(ctx context.Context, c commandRow) error
	// commandReply reads a command; ok false while it is unanswered.
	commandReply(ctx context.Context, id int64) (c commandRow, ok bool, err error)
	// dropCommand deletes a command (answered and read, or given up while
	// nobody took it) and reports whether it did.
	dropCommand(ctx context.Context, id int64, untakenOnly bool) (bool, error)
	// cleanCommands deletes commands whose deadline passed before beforeUS.
	cleanCommands(ctx context.Context, beforeUS int64) error
}

func (s gormStore) postCommand(ctx context.Context, c *commandRow) error {
	if err := s.db.WithContext(ctx).Create(c).Error; err != nil {
		return fmt.Errorf("post command: %w", err)
	}
	return nil
}

func (s gormStore) takeCommands(ctx context.Context, owner string, nowUS int64, limit int) ([]commandRow, error) {
	var rows []commandRow
	err := s.db.WithContext(ctx).Raw(`UPDATE canal_job_commands SET taken_by = ?
WHERE taken_by = '' AND id IN (SELECT id FROM canal_job_commands WHERE taken_by = '' AND deadline_us > ? ORDER BY id LIMIT ?)
RETURNING id, kind, job, interval_ms, sender, deadline_us, taken_by, answered, reply, err_code, err_msg`, owner, nowUS, limit).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("take commands: %w", err)
	}
	slices.SortFunc(rows, func(a, b commandRow) int { return cmp.Compare(a.ID, b.ID) })
	return rows, nil
}

func (s gormStore) answerCommand(ctx context.Context, c commandRow) error {
	err := s.db.WithContext(ctx).Exec(`UPDATE canal_job_commands SET answered = ?, reply = ?, err_code = ?, err_msg = ? WHERE id = ?`,
		true, c.Reply, c.ErrCode, dbText(c.ErrMsg), c.ID).Error
	if err != nil {
		return fmt.Errorf("answer command %d: %w", c.ID, err)
	}
	return nil
}

func (s gormStore) commandReply(ctx context.Context, id int64) (commandRow, bool, error) {
	var rows []commandRow
	if err := s.db.WithContext(ctx).Where("id = ?", id).Limit(1).Find(&rows).Error; err != nil {
		return commandRow{}, false, fmt.Errorf("read command %d: %w", id, err)
	}
	if len(rows) == 0 {
		return commandRow{}, false, fmt.Errorf("read command %d: gone", id)
	}
	return rows[0], rows[0].Answered, nil
}

func (s gormStore) dropCommand(ctx context.Context, id int64, untakenOnly bool) (bool, error) {
	q := s.db.WithContext(ctx).Where("id = ?", id)
	if untakenOnly {
		q = q.Where("taken_by = ''")
	}
	res := q.Delete(&commandRow{})
	if res.Error != nil {
		return false, fmt.Errorf("drop command %d: %w", id, res.Error)
	}
	return res.RowsAffected == 1, nil
}

func (s gormStore) cleanCommands(ctx context.Context, beforeUS int64) error {
	if err := s.db.WithContext(ctx).Where("deadline_us < ?", beforeUS).Delete(&commandRow{}).Error; err != nil {
		return fmt.Errorf("clean commands: %w", err)
	}
	return nil
}

// remoteErrors name the errors a reply can carry across processes.
var remoteErrors = []struct {
	code string
	err  error
}{
	{"unknown_job", ErrUnknownJob}, {"already_running", ErrAlreadyRunning}, {"not_running", ErrNotRunning},
	{"invalid_interval", ErrInvalidInterval}, {"closed", ErrClosed}, {"full", ErrFull}, {"dropped", ErrDropped},
	{"no_leader", ErrNoLeader}, {"timeout", ErrLeaderTimeout},
}

func errCode(err error) string {
	for _, r := range remoteErrors {
		if errors.Is(err, r.err) {
			return r.code
		}
	}
	return "error"
}

// leaderError is the leader's error as the asking process sees it: the
// leader's message, and the sentinel its code names (none for "error").
type leaderError struct {
	msg string
	err error
}

func (e *leaderError) Error() string { return e.msg }
func (e *leaderError) Unwrap() error { return e.err }

func remoteError(code, msg string) error {
	for _, r := range remoteErrors {
		if r.code == code {
			return &leaderError{msg: msg, err: r.err}
		}
	}
	return &leaderError{msg: msg}
}

var forwardedKinds = map[commandKind]string{cmdStart: "start", cmdStop: "stop", cmdTrigger: "trigger", cmdSetInterval: "set-interval"}

func kindNamed(s string) (commandKind, bool) {
	for k, n := range forwardedKinds {
		if n == s {
			return k, true
		}
	}
	return 0, false
}

// replies wakes the commands of this process that wait for the leader.
type replies struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed at the next wake-up.
func (r *replies) wait() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ch == nil {
		r.ch = make(chan struct{})
	}
	return r.ch
}

func (r *replies) wake() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ch != nil {
		close(r.ch)
		r.ch = nil
	}
}

// forward answers a job command on a process that does not lead: Status
// and List from the database, the others by the leader. after is what is
// left to do once the caller has its reply (the clean-up of a command
// given up).
func (p *Processor) forward(ctx context.Context, cmd command) (r reply, after func()) {
	after = func() {}
	switch cmd.kind {
	case cmdStatus, cmdList:
		return p.stored(ctx, cmd), after
	}
	if cmd.forwarded {
		// The leadership moved while the command waited here.
		return reply{err: fmt.Errorf("%s %q: %w", cmd.kind, cmd.name, ErrNoLeader)}, after
	}
	fail := func(err error) (reply, func()) {
		return reply{err: fmt.Errorf("%s %q: %w", cmd.kind, cmd.name, err)}, after
	}
	// A job no process ever stored is unknown whoever leads (404, not
	// "no leader"): the answer is the same on every process.
	if st := p.stored(ctx, command{kind: cmdStatus, name: cmd.name}); st.err != nil {
		return reply{err: fmt.Errorf("%s %q: %w", cmd.kind, cmd.name, errors.Unwrap(st.err))}, after
	}
	l, err := p.Leader(ctx)
	if err != nil {
		return fail(err)
	}
	if l.Process == "" {
		return fail(ErrNoLeader)
	}
	// Give up a little before the caller does, so that the caller gets
	// ErrLeaderTimeout rather than its own deadline.
	now := p.now()
	deadline := now.Add(forwardTimeout)
	if d, ok := ctx.Deadline(); ok {
		margin := min(max(forwardMargin, d.Sub(now)/5), 20*forwardMargin)
		if d.Add(-margin).Before(deadline) {
			deadline = d.Add(-margin)
		}
	}
	row := commandRow{Kind: forwardedKinds[cmd.kind], Job: cmd.name, IntervalMS: cmd.interval.Milliseconds(),
		Sender: p.processID(), DeadlineUS: us(deadline)}
	if err := p.lease.postCommand(ctx, &row); err != nil {
		return fail(err)
	}
	p.notify(ctx, wakeCmd)
	timeout := time.NewTimer(deadline.Sub(p.now()))
	defer timeout.Stop()
	poll := time.NewTicker(cmdPoll / 2)
	defer poll.Stop()
	for {
		woken := p.replies.wait()
		c, ok, err := p.lease.commandReply(ctx, row.ID)
		if err == nil && ok {
			return decodeReply(c), func() { _, _ = p.lease.dropCommand(context.WithoutCancel(ctx), row.ID, false) }
		}
		select {
		case <-woken:
		case <-poll.C:
		case <-timeout.C:
			after = func() { p.giveUp(ctx, row.ID) }
			return fail(fmt.Errorf("%w (leader %s)", ErrLeaderTimeout, l.Process))
		case <-ctx.Done():
			after = func() { p.giveUp(ctx, row.ID) }
			return fail(fmt.Errorf("waiting for the leader: %w", ctx.Err()))
		}
	}
}

// giveUp deletes a command nobody took yet, so no leader runs it later; a
// taken one is being answered and is cleaned up after its deadline.
func (p *Processor) giveUp(ctx context.Context, id int64) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyWait)
	defer cancel()
	_, _ = p.lease.dropCommand(dctx, id, true)
}

func decodeReply(c commandRow) reply {
	if c.ErrCode != "" {
		return reply{err: remoteError(c.ErrCode, c.ErrMsg)}
	}
	var r reply
	if err := json.Unmarshal([]byte(c.Reply), &r.status); err != nil {
		return reply{err: fmt.Errorf("%s %q: the leader's reply: %w", c.Kind, c.Job, err)}
	}
	return r
}

// stored answers Status and List from the database: the state every
// process shares, which the leader writes.
func (p *Processor) stored(ctx context.Context, cmd command) reply {
	states, err := p.cfg.Store.LoadJobs(ctx)
	if err != nil {
		return reply{err: fmt.Errorf("%s %q: %w", cmd.kind, cmd.name, err)}
	}
	if cmd.kind == cmdStatus {
		for _, s := range states {
			if s.Name == cmd.name {
				return reply{status: storedStatus(s)}
			}
		}
		return reply{err: fmt.Errorf("%s %q: %w", cmd.kind, cmd.name, ErrUnknownJob)}
	}
	// Registration order first, as the leader lists them, then the jobs
	// only other processes registered.
	rank := make(map[string]int, len(p.order))
	for i, n := range p.order {
		rank[n] = i
	}
	slices.SortStableFunc(states, func(a, b JobState) int {
		ra, oka := rank[a.Name]
		rb, okb := rank[b.Name]
		switch {
		case oka && okb:
			return ra - rb
		case oka:
			return -1
		case okb:
			return 1
		}
		return 0
	})
	out := make([]Status, 0, len(states))
	for _, s := range states {
		if s.Interval <= 0 {
			continue // counters of a job no process registers any more
		}
		out = append(out, storedStatus(s))
	}
	return reply{list: out}
}

func storedStatus(s JobState) Status {
	st := Status{
		Name: s.Name, Running: s.Running, Interval: s.Interval, Executions: s.Executions, Failures: s.Failures,
		LastRun: s.LastRun, LastDuration: s.LastDuration, LastError: s.LastError,
	}
	if s.Running {
		next := nextRun(s, time.Time{})
		if !next.IsZero() {
			st.NextRun = &next
		}
	}
	return st
}

// nextRun is when a job is due by its stored state: an interval after the
// end of its last run (or after the start of a run cut short), or now if
// that has passed; zero if it never ran.
func nextRun(s JobState, now time.Time) time.Time {
	var last time.Time
	if s.LastRun != nil {
		last = s.LastRun.Add(s.LastDuration)
	}
	if s.LastStart != nil && s.LastStart.After(last) {
		last = *s.LastStart
	}
	if last.IsZero() {
		return time.Time{}
	}
	next := last.Add(s.Interval)
	if !now.IsZero() && next.Before(now) {
		return now
	}
	return next
}

// serveCommands answers forwarded commands while this process leads: it
// takes them from the database when woken (or every cmdPoll), puts each on
// its own control channel and writes the reply.
func (p *Processor) serveCommands(ctx context.Context) {
	t := time.NewTicker(cmdPoll)
	defer t.Stop()
	lastClean := time.Time{}
	for {
		cmds, err := p.lease.takeCommands(ctx, p.processID(), us(p.now()), 32)
		if err != nil && ctx.Err() == nil {
			p.cfg.Logger.Debug("forwarded commands: take", "err", err)
		}
		for _, c := range cmds {
			p.answer(ctx, c)
		}
		if now := p.now(); now.Sub(lastClean) > time.Minute {
			lastClean = now
			_ = p.lease.cleanCommands(ctx, us(now.Add(-time.Minute)))
		}
		select {
		case <-ctx.Done():
			return
		case <-p.cmdWake:
		case <-t.C:
		}
	}
}

func (p *Processor) answer(ctx context.Context, c commandRow) {
	kind, ok := kindNamed(c.Kind)
	var r reply
	if !ok {
		r.err = fmt.Errorf("unknown command %q", c.Kind)
	} else {
		cctx, cancel := context.WithDeadline(ctx, fromUS(c.DeadlineUS))
		r, _ = p.send(cctx, command{kind: kind, name: c.Job, interval: time.Duration(c.IntervalMS) * time.Millisecond, forwarded: true})
		cancel()
	}
	if r.err != nil {
		c.ErrCode, c.ErrMsg = errCode(r.err), r.err.Error()
	} else {
		b, err := json.Marshal(r.status)
		if err != nil {
			c.ErrCode, c.ErrMsg = "error", err.Error()
		}
		c.Reply = string(b)
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyWait)
	defer cancel()
	if err := p.lease.answerCommand(actx, c); err != nil {
		p.cfg.Logger.Warn("forwarded command not answered", "command", c.Kind, "job", c.Job, "err", err)
		return
	}
	p.notify(actx, wakeReply+c.Sender)
}

// notify wakes name in every process, quietly: the others' polls are the
// fallback.
func (p *Processor) notify(ctx context.Context, name string) {
	if p.pool == nil {
		return
	}
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyWait)
	defer cancel()
	if err := p.pool.proc.Notify(nctx, name); err != nil {
		p.cfg.Logger.Debug("notify", "name", name, "err", err)
	}
}

// processID is this process's id on the engine, "" without a store.
func (p *Processor) processID() string {
	if p.pool == nil {
		return ""
	}
	return p.pool.proc.ID()
}
