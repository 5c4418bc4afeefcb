// Package server is Canal's composition root: it reads the configuration,
// opens the database, builds every service, and starts and stops them in
// order.
package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canalhq/canal/internal/queue"
	queuedialect "github.com/canalhq/canal/internal/queue/dialect"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/server/demo"
	"github.com/canalhq/canal/web"
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
	log := newLogger(stderr, cfg.LogLevel)

	db, err := openDB(ctx, cfg.DB, log)
	if err != nil {
		return err
	}
	sqlDB, _ := db.DB()
	defer sqlDB.Close()

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
	qproc := queue.NewProcess(qdrv, queue.ProcessConfig{Logger: log})
	jobStore, err := jobs.NewStore(db)
	if err != nil {
		return fmt.Errorf("jobs store: %w", err)
	}
	queuePolicy, _ := jobs.ParsePolicy(cfg.QueuePolicy) // validated in parseConfig
	proc := jobs.NewProcessor(jobs.Config{
		Store: jobStore, Process: qproc, Workers: cfg.Workers, WorkCapacity: cfg.QueueCapacity, WorkPolicy: queuePolicy,
		Logger: log.With("component", "jobs"),
	})
	if cfg.Demo {
		if err := registerDemo(proc); err != nil {
			return err
		}
	}

	relay, routes, closePublishers, err := newRelay(ctx, db, cfg, qproc, log)
	if err != nil {
		return err
	}
	defer closePublishers()
	orders := demo.NewOrders(relay, nil, log.With("component", "orders"))

	hub := web.NewHub(web.HubConfig{
		JobEvents:    proc.Events(),
		OutboxEvents: relay.Events(),
		Logger:       log.With("component", "hub"),
	})

	var ready atomic.Bool
	handler := web.New(web.Deps{
		Logger:  log,
		Jobs:    proc,
		Work:    proc,
		History: proc,
		Hub:     hub,
		Outbox:  relay,
		Routes:  routes,
		Orders:  orders,
		WS:      web.WSConfig{OriginPatterns: cfg.AllowedOrigins},
		Ready:   ready.Load,
		Started: time.Now(),
	})

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}

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
	hubDone.Go(func() { hub.Run(hubCtx) })
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
	log.Info("canal started", "url", url, "db", redact(cfg.DB), "demo", cfg.Demo)
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
	// 2. Browsers get 1012 (service restart) and reconnect by themselves.
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

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated in parseConfig
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
