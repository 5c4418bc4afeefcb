package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canalhq/canal/internal/audit"
	"github.com/canalhq/canal/internal/clusterevents"
	"github.com/canalhq/canal/internal/idempotency"
	"github.com/canalhq/canal/internal/outage"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/templates"
	"github.com/canalhq/canal/web"
	"github.com/canalhq/canal/web/auth"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"
)

// DashboardConfig is what a dashboard shows and who may use it. Only Jobs
// is required.
type DashboardConfig struct {
	// Prefix is the path the dashboard is mounted under in the service's
	// own mux ("/canal" or "/canal/"); "" serves it at the root. Every
	// page, link, form, socket and cookie stays under it.
	Prefix string
	// Jobs is the service's own processor, with its jobs and work kinds
	// registered. The service runs (and shuts down) it; the dashboard
	// reads its Events, so nothing else should.
	Jobs *jobs.Processor
	// Outbox is the service's relay, which it runs; nil leaves the outbox
	// pages saying none is connected. The dashboard reads its Events.
	Outbox *outbox.Relay
	// Routes say which publisher each topic goes to, shown on the outbox
	// page; nil shows none.
	Routes []templates.Route
	// Authenticator says who each request is: the service's own single
	// sign-on or session (auth.AuthenticatorFunc), or *auth.Tokens.
	// Viewers may read, operators may also press buttons. Nil leaves the
	// dashboard open to everyone as an operator, answering loopback Host
	// names only (as `canal` does with no tokens).
	Authenticator auth.Authenticator
	// Login serves the dashboard's own login page (*auth.Tokens); nil
	// leaves it out, for an Authenticator that knows the service's login.
	Login web.Login
	// AllowedHosts are the Host names the dashboard answers besides the
	// loopback ones ("*": any). A page whose name merely resolves to the
	// service (DNS rebinding) is refused.
	AllowedHosts []string
	// TrustedProxies are the reverse proxies in front of the service:
	// their requests' client address (the login limit's, the audit's) is
	// read from X-Forwarded-For. None: the connection's address.
	TrustedProxies []*net.IPNet
	// AllowedOrigins are other origins whose pages may open the sockets.
	AllowedOrigins []string
	// Zone is the zone times are shown in; nil shows each viewer's own.
	Zone *time.Location
	// AuditRetention is how long the audit log keeps who did what
	// (default 90 days).
	AuditRetention time.Duration
	// Tracer gives requests their spans; nil records none.
	Tracer trace.TracerProvider
	Logger *slog.Logger

	// Set by the canal program only: the demo's order route and whether
	// the program has finished starting (a mounted dashboard is ready as
	// soon as it is made).
	orders web.OrderPlacer
	ready  func() bool
	// Set by the program: the processes sharing the database, and the
	// bridge's carrier of other processes' events (nil: pass-through).
	processes web.ProcessLister
	processID string
	events    clusterevents.Transport
	database  *outage.Monitor // the process's view of the database (nil: none)
}

// Dashboard is Canal's web layer: pages, WebSockets and the JSON API over
// a service's processor and relay. Handler serves it; Run runs its hub
// and the goroutines behind it, and must be running for the pages to load.
type Dashboard struct {
	cfg     DashboardConfig
	audit   *audit.Log
	idem    *idempotency.Store // Idempotency-Key records of the API's writes
	metrics *web.Metrics
	hub     *web.Hub
	handler http.Handler

	// The processor's and relay's events pass through the metrics on their
	// way to the hub; Run owns the goroutines that carry them.
	jobsIn    <-chan jobs.Event
	jobsOut   chan jobs.Event
	outboxIn  <-chan outbox.Event
	outboxOut chan outbox.Event
	bridge    *clusterevents.Bridge // nil unless the program set processID

	ran atomic.Bool
}

// ErrNoJobs is returned by NewDashboard without a processor.
var ErrNoJobs = errors.New("dashboard: DashboardConfig.Jobs is required")

// NewDashboard builds the dashboard over db (the service's own *gorm.DB,
// SQLite or PostgreSQL, migrated for jobs and outbox by the service with
// jobs.Migrate and outbox.Migrate). It creates the audit log's and the
// Idempotency-Key records' tables if needed. Mount Handler under
// cfg.Prefix and call Run.
func NewDashboard(ctx context.Context, db *gorm.DB, cfg DashboardConfig) (*Dashboard, error) {
	if cfg.Jobs == nil {
		return nil, ErrNoJobs
	}
	if err := audit.Migrate(ctx, db); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	if err := idempotency.Migrate(ctx, db); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	return newDashboard(db, cfg)
}

// newDashboard is NewDashboard over a migrated database: the canal program
// builds its web layer with it too.
func newDashboard(db *gorm.DB, cfg DashboardConfig) (*Dashboard, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	proc := cfg.Jobs
	d := &Dashboard{cfg: cfg, audit: audit.New(db), idem: idempotency.New(db, idempotency.Config{})}

	// Interfaces get a nil relay as nil, not as a typed nil pointer.
	var outboxAdmin web.OutboxAdmin
	var outboxWindow web.OutboxWindow
	src := web.MetricSources{Work: proc}
	d.jobsIn = proc.Events()
	d.jobsOut = make(chan jobs.Event, cap(d.jobsIn))
	hc := web.HubConfig{
		JobEvents:  d.jobsOut,
		JobHistory: proc,
		Zone:       cfg.Zone,
		Prefix:     cfg.Prefix,
		Logger:     cfg.Logger.With("component", "hub"),
	}
	if relay := cfg.Outbox; relay != nil {
		outboxAdmin, outboxWindow, src.Outbox = relay, relay, relay
		d.outboxIn = relay.Events()
		d.outboxOut = make(chan outbox.Event, cap(d.outboxIn))
		hc.OutboxEvents, hc.OutboxHistory = d.outboxOut, outboxWindow
	}
	if cfg.processID != "" {
		// The hub sees every process's events: the bridge passes this
		// one's through (counted by the metrics first) and feeds it the
		// others'.
		d.bridge = clusterevents.New(clusterevents.Config{
			Process: cfg.processID, Transport: cfg.events,
			Jobs: d.jobsOut, Outbox: d.outboxOut,
			Logger: cfg.Logger.With("component", "clusterevents"),
		})
		hc.JobEvents, hc.OutboxEvents = d.bridge.Jobs(), d.bridge.Outbox()
	}
	hc.Processes, hc.Database = cfg.processes, cfg.database
	d.metrics = web.NewMetrics(src)
	d.hub = web.NewHub(hc)
	d.metrics.AddHub(d.hub)

	d.handler = web.New(web.Deps{
		Logger:      cfg.Logger,
		Jobs:        proc,
		Work:        proc,
		WorkActions: proc,
		History:     proc,
		Hub:         d.hub,
		Outbox:      outboxAdmin,
		Routes:      cfg.Routes,
		Orders:      cfg.orders,
		Idempotency: d.idem,
		WS:          web.WSConfig{OriginPatterns: cfg.AllowedOrigins},
		Access:      web.Access{Authenticator: cfg.Authenticator, Login: cfg.Login, Hosts: cfg.AllowedHosts, TrustedProxies: cfg.TrustedProxies},
		Audit:       d.audit,
		Processes:   cfg.processes,
		Metrics:     d.metrics,
		Checks:      readyChecks(sqlDB, cfg.database, cfg.Outbox, proc),
		Database:    cfg.database,
		Tracer:      cfg.Tracer,
		Ready:       cfg.ready,
		Started:     time.Now(),
		Zone:        cfg.Zone,
		Prefix:      cfg.Prefix,
	})
	return d, nil
}

// Handler serves the dashboard: every page, the WebSockets and the JSON
// API, under DashboardConfig.Prefix (it answers 404 outside it). With
// net/http: mux.Handle("/canal/", d.Handler()); with Echo:
// e.Any("/canal/*", echo.WrapHandler(d.Handler())).
func (d *Dashboard) Handler() http.Handler { return d.handler }

// Metrics is the dashboard's Prometheus registry (served on Prefix +
// "/metrics"), where a service may add its own.
func (d *Dashboard) Metrics() *web.Metrics { return d.metrics }

// Run runs the hub (the live updates every browser gets), the event taps
// that feed it, the audit log's pruner and the expired Idempotency-Key
// records' cleaner until ctx ends; then it closes
// every browser's socket with 1012 (they reconnect by themselves) and
// returns once all of them have stopped. Run may be called once.
func (d *Dashboard) Run(ctx context.Context) error {
	if !d.ran.CompareAndSwap(false, true) {
		return errors.New("dashboard: Run called twice")
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	// The taps stop after the hub, which reads them until it stops.
	tapCtx, stopTaps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopTaps()
	wg.Go(func() { d.metrics.CountJobs(tapCtx, d.jobsIn, d.jobsOut) })
	if d.outboxIn != nil {
		wg.Go(func() { d.metrics.CountOutbox(tapCtx, d.outboxIn, d.outboxOut) })
	}
	wg.Go(func() {
		audit.Pruner{Log: d.audit, Retention: d.cfg.AuditRetention, Logger: d.cfg.Logger.With("component", "audit")}.Run(ctx)
	})
	wg.Go(func() {
		idempotency.Cleaner{Store: d.idem, Logger: d.cfg.Logger.With("component", "idempotency")}.Run(ctx)
	})
	if d.bridge != nil {
		wg.Go(func() { d.bridge.Run(ctx) })
	}
	d.hub.Run(ctx)
	return nil
}
