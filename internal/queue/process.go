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
)

// ProcessConfig tunes a Process. Zero fields take the defaults shown.
type ProcessConfig struct {
	Heartbeat      time.Duration    // heartbeat row and lease renewal: 1 s
	RescueInterval time.Duration    // how often expired leases are looked for: 1 s
	Clock          func() time.Time // time.Now
	Logger         *slog.Logger     // slog.Default()
	// Version is the program's build, stored in the heartbeat row for
	// the processes page ("devel" when empty).
	Version string
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
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	return &Process{
		drv: drv, cfg: cfg, log: cfg.Logger.With("component", "queue", "process", id),
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
	p.wg.Go(func() {
		for ctx.Err() == nil {
			err := p.drv.Listen(ctx, p.Wake)
			if err == nil || ctx.Err() != nil {
				return
			}
			p.log.Warn("queue: listening for wake-ups failed; polling until it is back", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	})
	return nil
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

func (p *Process) heartbeats(ctx context.Context) {
	t := time.NewTicker(p.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.beat(ctx)
	}
}

// beat renews the row and every client's live leases.
func (p *Process) beat(ctx context.Context) {
	now := p.cfg.Clock()
	p.row.HeartbeatUS = US(now)
	bctx, cancel := context.WithTimeout(ctx, 5*p.cfg.Heartbeat)
	defer cancel()
	cls := p.clients()
	if len(cls) == 0 {
		if err := p.drv.Heartbeat(bctx, p.row, nil, 0); err != nil && ctx.Err() == nil {
			p.log.Warn("queue: heartbeat failed", "err", err)
		}
	}
	for _, c := range cls {
		ids := c.renewable(now)
		if err := p.drv.Heartbeat(bctx, p.row, ids, US(now.Add(c.cfg.Lease))); err != nil && ctx.Err() == nil {
			p.log.Warn("queue: heartbeat failed", "err", err)
		}
	}
}

func (p *Process) rescuer(ctx context.Context) {
	t := time.NewTicker(p.cfg.RescueInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 10*p.cfg.RescueInterval)
		n, err := p.drv.Rescue(rctx, US(p.cfg.Clock()), 1000)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("queue: rescue failed", "err", err)
			}
			continue
		}
		if n > 0 {
			p.log.Warn("queue: rescued items whose lease expired (a process died or an attempt hung)", "items", n)
			for _, c := range p.clients() {
				c.suspectsFound()
			}
		}
	}
}
