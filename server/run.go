// Package server is Canal's composition root: it reads the configuration,
// opens the database, builds every service, and starts and stops them in
// order.
package server

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	_ "time/tzdata" // -display-tz works on machines without a zone database

	"github.com/canalhq/canal/internal/outage"
	"github.com/canalhq/canal/internal/queue"
	queuedialect "github.com/canalhq/canal/internal/queue/dialect"
	"github.com/canalhq/canal/internal/redact"
	"github.com/canalhq/canal/internal/tracing"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/server/demo"
	"github.com/canalhq/canal/web"
	"github.com/canalhq/canal/web/auth"
)

// Run is the whole program. main calls it with the process's arguments,
// environment and streams; tests call it in-process. It returns when ctx is
// cancelled and everything has shut down. `canal bench ...` runs a
// benchmark instead (see internal/bench) and `canal migrate` applies the
// database migrations; both return when done.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	switch {
	case len(args) > 1 && args[1] == "bench":
		return runBench(ctx, args[2:], stdout, stderr)
	case len(args) > 1 && args[1] == "migrate":
		return runMigrate(ctx, args[2:], getenv, stdout, stderr)
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)

	db, err := openDB(ctx, cfg.DB, log)
	if err != nil {
		return err
	}
	sqlDB, _ := db.DB()
	defer sqlDB.Close()
	if db.Dialector.Name() == "sqlite" {
		// Last before the close, once everything else has stopped: the
		// WAL goes into the database file and is left empty.
		defer func() {
			tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if ok, err := truncateWAL(tctx, sqlDB, 5*time.Second); err != nil || !ok {
				log.Warn("sqlite: WAL not truncated at stop", "err", err)
			}
		}()
	}

	if err := migrate(ctx, db); err != nil {
		return err
	}
	// The process's presence in the queue engine (heartbeat, rescuer of
	// expired leases, wake-ups from other processes): started before the
	// engine's clients and stopped after them.
	qdrv, err := queuedialect.For(db)
	if err != nil {
		return err
	}
	// The drivers' prepared statements close before the pool, after
	// everything that uses them has stopped (deferred calls run last first).
	defer qdrv.Close()
	// One view of the database for every loop of this process: an outage
	// is logged once, shown on every page and fails /readyz.
	dbState := outage.New(log.With("component", "database"))
	qproc := queue.NewProcess(qdrv, queue.ProcessConfig{Logger: log.With("component", "queue"), Version: buildVersion(), Outage: dbState})
	jobStore, err := jobs.NewStore(db)
	if err != nil {
		return fmt.Errorf("jobs store: %w", err)
	}
	defer jobStore.(io.Closer).Close()
	queuePolicy, _ := jobs.ParsePolicy(cfg.QueuePolicy) // validated in parseConfig
	proc := jobs.NewProcessor(jobs.Config{
		// Without the demo this binary has no work kind: on PostgreSQL,
		// where other processes may run them, it claims none.
		WatchOnly: !cfg.Demo && qdrv.Dialect() == "postgres",
		Store:     jobStore, Process: qproc, Workers: cfg.Workers, WorkCapacity: cfg.QueueCapacity, WorkPolicy: queuePolicy,
		Logger: log.With("component", "jobs"),
	})
	if cfg.Demo {
		if err := registerDemo(proc); err != nil {
			return err
		}
	}

	tracer, stopTracing, err := tracing.Setup(ctx, getenv, stderr)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTracing(sctx); err != nil {
			log.Warn("tracing: flush at stop", "err", err)
		}
	}()
	relay, routes, closePublishers, err := newRelay(ctx, db, cfg, qproc, log, tracer)
	if err != nil {
		return err
	}
	defer closePublishers()
	defer relay.Close()
	orders := demo.NewOrders(relay, nil, log.With("component", "orders"))
	// The demo's own routes exist only with the demo.
	var orderRoutes web.OrderPlacer
	if cfg.Demo {
		orderRoutes = orders
	}

	access, err := newAccess(cfg)
	if err != nil {
		return err
	}
	// Other processes' events reach this one's hub over NOTIFY (or NATS).
	transport, closeTransport, err := eventTransport(ctx, db, qdrv.Dialect(), cfg, log)
	if err != nil {
		return err
	}
	defer closeTransport()
	// The web layer is the same dashboard a service mounts in its own mux
	// (dashboard.go), here at the root (migrated above with the rest).
	var ready atomic.Bool
	dash, err := newDashboard(db, DashboardConfig{
		Jobs: proc, Outbox: relay, Routes: routes,
		Authenticator: access.Authenticator, Login: access.Login, AllowedHosts: access.Hosts, TrustedProxies: cfg.TrustedProxies,
		AllowedOrigins: cfg.AllowedOrigins, Zone: cfg.Zone, AuditRetention: cfg.AuditRetention,
		Tracer: tracer, Logger: log,
		orders: orderRoutes, ready: ready.Load,
		processes: qproc, processID: qproc.ID(), events: transport, database: dbState,
	})
	if err != nil {
		return err
	}
	handler := dash.Handler()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	srv := newHTTPServer(handler, log, cfg.timeouts)

	// Shutdown order (below): HTTP stops accepting, browsers get 1012, work
	// drains, the database closes.
	svcCtx, stopServices := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServices()
	if err := qproc.Start(svcCtx); err != nil {
		return err
	}
	// Last to stop (deferred before the database closes): the clients'
	// leases are renewed until they have stopped.
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := qproc.Stop(stopCtx); err != nil {
			log.Warn("queue process stop", "err", err)
		}
	}()
	var procDone, relayDone, hubDone sync.WaitGroup
	procDone.Go(func() {
		if err := proc.Run(svcCtx); err != nil {
			log.Error("jobs processor stopped", "err", err)
		}
	})
	relayDone.Go(func() {
		if err := relay.Run(svcCtx); err != nil {
			log.Error("outbox relay stopped", "err", err)
		}
	})
	hubCtx, stopHub := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHub()
	hubDone.Go(func() { _ = dash.Run(hubCtx) }) // the hub, its taps, the events bridge, the audit pruner, the idempotency cleaner
	// The demo's producers stop first on shutdown, before the jobs drain.
	var demoDone sync.WaitGroup
	defer demoDone.Wait()
	demoCtx, stopDemo := context.WithCancel(svcCtx)
	defer stopDemo()
	if cfg.Demo {
		demoDone.Go(func() { runDemo(demoCtx, proc, log.With("component", "demo")) })
		demoDone.Go(func() { orders.Generate(demoCtx, 500*time.Millisecond, nil) })
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	url := "http://" + ln.Addr().String()
	ready.Store(true)
	log.Info("canal started", "url", url, "db", redact.DSN(cfg.DB), "demo", cfg.Demo)
	logAccess(log, cfg, access)
	fmt.Fprintf(stdout, "canal: listening on %s\n", url)

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		// Every goroutine started above is stopped and waited for before
		// the deferred database close.
		stopDemo()
		demoDone.Wait()
		stopServices()
		stopHub()
		procDone.Wait()
		relayDone.Wait()
		hubDone.Wait()
		return fmt.Errorf("http server: %w", err)
	}

	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	ready.Store(false)
	deadline, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()

	// 1. HTTP stops accepting; requests in flight finish (the processor
	// and relay still answer them). Hijacked WebSockets are not waited for.
	if err := srv.Shutdown(deadline); err != nil {
		log.Warn("http shutdown", "err", err)
		_ = srv.Close()
	}
	// 2. Browsers get 1012 (service restart) and reconnect by themselves;
	// the dashboard's other goroutines stop with the hub.
	stopHub()
	hubDone.Wait()
	// 3. Work drains: the demo's producers stop, the jobs processor closes
	// intake and runs queued work until the deadline (what is left stays
	// pending in the store and runs after the restart), and the relay
	// finishes and records the publishes it started, leaving no leases.
	stopDemo()
	demoDone.Wait()
	if err := proc.Shutdown(deadline); err != nil {
		log.Warn("jobs did not drain before the shutdown deadline", "err", err)
	}
	stopServices()
	if !waitGroup(deadline, &procDone) {
		log.Warn("jobs did not drain before the shutdown deadline")
	}
	if !waitGroup(deadline, &relayDone) {
		log.Warn("outbox relay did not finish its publishes before the shutdown deadline")
	}
	// 4. The database closes (deferred above).
	log.Info("stopped")
	return nil
}

// waitGroup waits for wg or ctx, whichever comes first; false means ctx won.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// newLogger is the process's logger. One rule keeps a key from appearing
// twice in a line: the caller tags. Whoever builds a component passes it
// log.With("component", name); a package never adds "component" to the
// logger it is given (it adds keys of its own: queue, process, role).
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated in parseConfig
	opts := &slog.HandlerOptions{Level: l, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		// "10s", not 10000000000 nanoseconds.
		if a.Value.Kind() == slog.KindDuration {
			a.Value = slog.StringValue(a.Value.Duration().String())
		}
		return a
	}}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// newAccess builds who may do what from the tokens; with none, the
// dashboard is open (validate allowed that on loopback or with -insecure).
func newAccess(cfg Config) (web.Access, error) {
	a := web.Access{Hosts: cfg.AllowedHosts}
	// A dashboard listening on one named address answers to that name.
	if host, _, err := net.SplitHostPort(cfg.Addr); err == nil && host != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			a.Hosts = append(a.Hosts, host)
		}
	}
	if cfg.Open() {
		return a, nil
	}
	tok, err := auth.NewTokens(cfg.OperatorToken, cfg.ViewerToken, 0)
	if err != nil {
		return a, fmt.Errorf("tokens: %w", err)
	}
	a.Authenticator, a.Login = tok, tok
	return a, nil
}

// logAccess says at start who may use the dashboard, never the tokens.
func logAccess(log *slog.Logger, cfg Config, a web.Access) {
	switch {
	case cfg.Open() && cfg.Insecure && !loopback(cfg.Addr):
		log.Warn("INSECURE: no authentication and -insecure: everyone who can reach " + cfg.Addr +
			" is an operator who can stop jobs and read every payload; set CANAL_OPERATOR_TOKEN instead")
	case cfg.Open():
		log.Info("no authentication configured: listening on loopback only, and everyone on this machine is an operator "+
			"(set CANAL_OPERATOR_TOKEN and CANAL_VIEWER_TOKEN to require a login)", "addr", cfg.Addr)
	default:
		log.Info("authentication on", "operator_token", cfg.OperatorToken != "", "viewer_token", cfg.ViewerToken != "",
			"allowed_hosts", append(append([]string{}, web.LoopbackHosts...), a.Hosts...))
	}
	if !loopback(cfg.Addr) && len(cfg.AllowedHosts) == 0 {
		log.Warn("only loopback Host names (and the -addr host) are allowed: set -allowed-hosts to the names people use to reach this dashboard")
	}
}

// httpTimeouts are the HTTP limits: a slow or idle client cannot hold a
// connection for long. WebSockets clear these deadlines for themselves
// after the upgrade. Config carries them unexported so that a test can
// shorten them; zero is the default.
type httpTimeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

var defaultHTTPTimeouts = httpTimeouts{
	ReadHeader: 10 * time.Second,
	Read:       30 * time.Second,
	Write:      30 * time.Second,
	Idle:       60 * time.Second,
}

func newHTTPServer(h http.Handler, log *slog.Logger, t httpTimeouts) *http.Server {
	if t == (httpTimeouts{}) {
		t = defaultHTTPTimeouts
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// readyChecks are what /readyz asks: the database answers, the relay's
// loop still takes its periodic snapshot, and the work queues have room.
func readyChecks(db *sql.DB, dbState *outage.Monitor, relay *outbox.Relay, proc *jobs.Processor) []web.ReadyCheck {
	return []web.ReadyCheck{
		{Name: "database", Down: "database unreachable", Check: func(ctx context.Context) error {
			began := time.Now()
			err := db.PingContext(ctx)
			dbState.Observe(began, err)
			if st := dbState.Status(); !st.Available {
				return fmt.Errorf("database unavailable since %s: %s", st.Since.UTC().Format(time.RFC3339), st.Reason)
			}
			return err
		}},
		{Name: "relay", Down: "outbox relay stuck or unreachable", Check: func(ctx context.Context) error {
			if relay == nil { // a mounted dashboard without an outbox
				return nil
			}
			st, err := relay.Stats(ctx)
			if err != nil {
				return err
			}
			if age := time.Since(st.At); !st.At.IsZero() && age > relayStuckAfter {
				return fmt.Errorf("the relay's last snapshot is %s old: its loop is stuck", age.Round(time.Second))
			}
			return nil
		}},
		{Name: "queue", Down: "work queue full or processor down", Check: func(context.Context) error {
			h := proc.Health()
			if h.Status == jobs.HealthDown {
				return fmt.Errorf("jobs processor down: %s", strings.Join(h.Reasons, "; "))
			}
			for _, p := range jobs.Priorities() {
				if n, c := h.Queue.Depths[p.String()], h.Queue.Capacity; c > 0 && float64(n) >= queueReadyShare*float64(c) {
					return fmt.Errorf("%s queue %d/%d: over %.0f%% full", p, n, c, 100*queueReadyShare)
				}
			}
			return nil
		}},
	}
}

const (
	relayStuckAfter = 30 * time.Second // the relay snapshots every second
	queueReadyShare = 0.9
)
