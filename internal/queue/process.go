package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/canalhq/canal/internal/outage"
)

// ProcessConfig tunes a Process. Zero fields take the defaults shown.
type ProcessConfig struct {
	Heartbeat      time.Duration    // heartbeat row and lease renewal: 1 s
	RescueInterval time.Duration    // how often expired leases are looked for: 1 s
	Clock          func() time.Time // time.Now
	Logger         *slog.Logger     // slog.Default(); tagged by the caller (a "component"), never here
	// Version is the program's build, stored in the heartbeat row for
	// the processes page ("devel" when empty).
	Version string
	// Outage is the process's view of the database, shared by every loop
	// that talks to it so that an outage is logged once; nil: a new one.
	Outage *outage.Monitor
	// MaxBackoff caps each loop's wait between failed calls while the
	// database is unavailable: 5 s (the heartbeat's: 2 s at most).
	MaxBackoff time.Duration
}

// LostAfter is how many heartbeat intervals a process may miss before it is
// shown as lost (its leases expire and are rescued on their own schedule).
const LostAfter = 5

// Process is one running program's presence: a unique id (host, pid,
// random), a heartbeat row, the lease renewal of every Client it runs, the
// rescuer of expired leases (of any process) and the wake-ups from other
// processes. It is a service: Start it before its Clients, Stop it after.
type Process struct {
	drv  Driver
	cfg  ProcessConfig
	row  ProcessRow
	log  *slog.Logger
	mu   sync.Mutex
	cls  []*Client
	stop context.CancelFunc
	wg   sync.WaitGroup

	// hears: listeners of every wake-up by name (OnWake), for signals
	// that are not a queue's (the jobs' leader and its commands).
	hears []func(name string)
}

// NewProcess returns the process presence for drv.
func NewProcess(drv Driver, cfg ProcessConfig) *Process {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.RescueInterval <= 0 {
		cfg.RescueInterval = time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Version == "" {
		cfg.Version = "devel"
	}
	if cfg.Outage == nil {
		cfg.Outage = outage.New(cfg.Logger)
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	return &Process{
		drv: drv, cfg: cfg, log: cfg.Logger.With("process", id),
		row: ProcessRow{ID: id, Host: host, PID: os.Getpid(), Version: cfg.Version},
	}
}

// ID is the process's unique id, the owner of what its Clients claim.
func (p *Process) ID() string { return p.row.ID }

// ProcessInfo is a process as the dashboard shows it.
type ProcessInfo struct {
	ID        string    `json:"id"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Version   string    `json:"version"`
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"heartbeat"`
	// Lost: no heartbeat for LostAfter intervals (killed, frozen or cut
	// off from the database); a process that stops cleanly removes its row.
	Lost bool `json:"lost"`
	// Self: the process answering.
	Self bool `json:"self"`
}

// ListLostFor is how long List still shows a lost process.
const ListLostFor = 24 * time.Hour

// maxProcessesListed bounds List.
const maxProcessesListed = 200

// List reads every process row sharing the database (up to a bound), the
// latest heartbeat first, each marked lost or not as of now.
func (p *Process) List(ctx context.Context) ([]ProcessInfo, error) {
	rows, err := p.drv.Processes(ctx, maxProcessesListed)
	if err != nil {
		return nil, err
	}
	now := p.cfg.Clock()
	lost := LostAfter * p.cfg.Heartbeat
	out := make([]ProcessInfo, 0, len(rows))
	for _, r := range rows {
		if now.Sub(FromUS(r.HeartbeatUS)) > ListLostFor {
			continue // long gone: a restart has a new id
		}
		out = append(out, ProcessInfo{
			ID: r.ID, Host: r.Host, PID: r.PID, Version: r.Version,
			Started: FromUS(r.StartedUS).UTC(), Heartbeat: FromUS(r.HeartbeatUS).UTC(),
			Lost: now.Sub(FromUS(r.HeartbeatUS)) > lost, Self: r.ID == p.row.ID,
		})
	}
	return out, nil
}

// HeartbeatEvery is the process's heartbeat interval.
func (p *Process) HeartbeatEvery() time.Duration { return p.cfg.Heartbeat }

// Outage is the process's view of the database (see ProcessConfig.Outage).
func (p *Process) Outage() *outage.Monitor { return p.cfg.Outage }

// backoff is a new loop's wait between failed calls.
func (p *Process) backoff(minimum time.Duration) outage.Backoff {
	return outage.Backoff{Min: minimum, Max: max(minimum, p.cfg.MaxBackoff)}
}

// rescueGrace is how long the database must have been back before expired
// leases are taken for dead: every live process's heartbeat renews its
// leases within it (the heartbeat's back-off is capped at 2 s), so an
// outage longer than a lease does not make two processes run one item.
func (p *Process) rescueGrace() time.Duration {
	g := 2 * time.Second
	for _, c := range p.clients() {
		g = max(g, c.cfg.Lease)
	}
	return g + 2*p.cfg.Heartbeat
}

func (p *Process) add(c *Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cls = append(p.cls, c)
}

func (p *Process) clients() []*Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Client(nil), p.cls...)
}

// Wake wakes this process's Clients of queue ("" for all) at once, and
// tells the OnWake listeners.
func (p *Process) Wake(queue string) {
	for _, c := range p.clients() {
		if queue == "" || c.cfg.Queue == queue {
			c.Wake()
		}
	}
	p.mu.Lock()
	hears := append([]func(string){}, p.hears...)
	p.mu.Unlock()
	for _, f := range hears {
		f(queue)
	}
}

// OnWake adds f to the listeners of every wake-up, this process's and
// other processes' (by NOTIFY where the driver has it). f must not block.
func (p *Process) OnWake(f func(name string)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hears = append(p.hears, f)
}

// Notifier is a driver that can wake every process: PostgreSQL's NOTIFY.
type Notifier interface {
	Notify(ctx context.Context, name string) error
}

// Notify wakes name in every process sharing the database: at once in
// this one, and in the others through the driver's NOTIFY if it has one
// (without, they see the change at their next poll).
func (p *Process) Notify(ctx context.Context, name string) error {
	p.Wake(name)
	if n, ok := p.drv.(Notifier); ok {
		if err := n.Notify(ctx, name); err != nil {
			return fmt.Errorf("queue: notify %q: %w", name, err)
		}
	}
	return nil
}

// Start writes the heartbeat row and starts the heartbeat, the rescuer and
// the listener. They run until Stop.
func (p *Process) Start(ctx context.Context) error {
	now := p.cfg.Clock()
	p.row.StartedUS = US(now)
	p.row.HeartbeatUS = US(now)
	if err := p.drv.Heartbeat(ctx, p.row, nil, 0); err != nil {
		return fmt.Errorf("queue: register process: %w", err)
	}
	ctx, p.stop = context.WithCancel(context.WithoutCancel(ctx))
	p.wg.Go(func() { p.heartbeats(ctx) })
	p.wg.Go(func() { p.rescuer(ctx) })
	p.wg.Go(func() { p.listen(ctx) })
	return nil
}

// listen keeps a LISTEN connection open: while it is down the clients poll.
// After it fails it waits a back-off; once it is back it wakes every client,
// since notifications sent meanwhile were lost.
func (p *Process) listen(ctx context.Context) {
	b := p.backoff(time.Second)
	for ctx.Err() == nil {
		began := time.Now()
		listening := false
		err := p.drv.Listen(ctx, func(q string) {
			if !listening {
				listening = true
				p.cfg.Outage.Observe(began, nil)
				b.Reset()
			}
			p.Wake(q)
		})
		if err == nil || ctx.Err() != nil {
			return
		}
		if err := p.cfg.Outage.Observe(began, err); err != nil && b.Failures() == 0 {
			p.log.Warn("queue: listening for wake-ups failed; polling until it is back", "err", err)
		}
		if !b.Wait(ctx) {
			return
		}
		p.Wake("")
	}
}

// Stop stops the process's loops and removes its heartbeat row. Stop its
// Clients first: their leases are no longer renewed after this.
func (p *Process) Stop(ctx context.Context) error {
	if p.stop == nil {
		return nil
	}
	p.stop()
	p.wg.Wait()
	p.stop = nil
	if err := p.drv.Forget(ctx, p.row.ID); err != nil {
		return fmt.Errorf("queue: forget process: %w", err)
	}
	return nil
}

// heartbeats beats every Heartbeat; after a failure it tries again sooner
// or later by its back-off (capped at 2 s, so that leases are renewed soon
// after the database is back: see rescueGrace).
func (p *Process) heartbeats(ctx context.Context) {
	b := p.backoff(min(p.cfg.Heartbeat, 250*time.Millisecond))
	b.Max = min(b.Max, 2*time.Second)
	wait := p.cfg.Heartbeat
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if p.beat(ctx) {
			b.Reset()
			wait = p.cfg.Heartbeat
		} else {
			wait = b.Next()
		}
	}
}

// beat renews the row and every client's live leases; false if a write failed.
func (p *Process) beat(ctx context.Context) bool {
	now := p.cfg.Clock()
	p.row.HeartbeatUS = US(now)
	bctx, cancel := context.WithTimeout(ctx, 5*p.cfg.Heartbeat)
	defer cancel()
	ok := true
	write := func(ids []int64, leaseUS int64) bool {
		began := time.Now()
		err := p.drv.Heartbeat(bctx, p.row, ids, leaseUS)
		ok = ok && err == nil
		if err := p.cfg.Outage.Observe(began, err); err != nil && ctx.Err() == nil {
			p.log.Warn("queue: heartbeat failed", "err", err)
		}
		return err == nil
	}
	cls := p.clients()
	if len(cls) == 0 {
		write(nil, 0)
	}
	for _, c := range cls {
		if !ok {
			break // the database is away: the next beat renews them all
		}
		ids, until := c.renewable(now), now.Add(c.cfg.Lease)
		if write(ids, US(until)) {
			c.renewed(ids, until)
		}
	}
	return ok
}

// rescueTimeout bounds one rescue statement. It is a deadline, not a
// pace: at least 10 s, so a short RescueInterval (20 ms in tests) does not
// cut every rescue on a busy database, which then backs off and leaves
// expired leases unrescued (TestRelayReclaimsExpiredLease failed so).
func rescueTimeout(interval time.Duration) time.Duration {
	return max(10*interval, 10*time.Second)
}

// rescuer returns expired leases every RescueInterval, but not while the
// database is away or has been back for less than rescueGrace: leases
// that expired during an outage may belong to live processes that have not
// renewed them yet.
func (p *Process) rescuer(ctx context.Context) {
	b := p.backoff(p.cfg.RescueInterval)
	wait := p.cfg.RescueInterval
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = p.cfg.RescueInterval
		if !p.cfg.Outage.Settled(p.rescueGrace()) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, rescueTimeout(p.cfg.RescueInterval))
		began := time.Now()
		n, err := p.drv.Rescue(rctx, US(p.cfg.Clock()), 1000)
		cancel()
		if err != nil {
			if err := p.cfg.Outage.Observe(began, err); err != nil && ctx.Err() == nil {
				p.log.Warn("queue: rescue failed", "err", err)
			}
			wait = b.Next()
			continue
		}
		p.cfg.Outage.Observe(began, nil)
		b.Reset()
		if n > 0 {
			p.log.Warn("queue: rescued items whose lease expired (a process died or an attempt hung)", "items", n)
			for _, c := range p.clients() {
				c.suspectsFound()
			}
		}
	}
}
