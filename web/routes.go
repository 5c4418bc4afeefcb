package web

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/canalhq/canal/internal/outage"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/static"
	"github.com/canalhq/canal/templates"
	"github.com/canalhq/canal/web/auth"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// JobController is what the web layer asks of the jobs processor. Every call
// goes through the processor's control channel and waits for its reply.
type JobController interface {
	Start(ctx context.Context, name string) (jobs.Status, error)
	Stop(ctx context.Context, name string) (jobs.Status, error)
	Trigger(ctx context.Context, name string) (jobs.Status, error)
	Status(ctx context.Context, name string) (jobs.Status, error)
	SetInterval(ctx context.Context, name string, d time.Duration) (jobs.Status, error)
	List(ctx context.Context) ([]jobs.Status, error)
}

// Deps are everything the HTTP layer uses; server builds them.
type Deps struct {
	Logger *slog.Logger
	Jobs   JobController
	Work   WorkQueue // one-off work items; nil leaves the work API out
	// WorkActions are Retry and Delete of a work item (*jobs.Processor);
	// nil leaves them out.
	WorkActions WorkActions
	Hub         *Hub
	// History is job runs and work items as stored (*jobs.Processor);
	// nil leaves the pages without history and its API out.
	History History
	// Outbox serves the outbox pages and buttons; *outbox.Relay is one.
	// Nil leaves those pages saying no outbox is connected.
	Outbox OutboxAdmin
	// Routes say which publisher gets each topic, shown beside topics.
	Routes []templates.Route
	// Orders is the demo domain (*demo.Orders); nil leaves its route out.
	Orders OrderPlacer
	// Idempotency keeps the answers of POST /api/work and /api/orders
	// sent with an Idempotency-Key (*idempotency.Store, on the database
	// of Work and Orders, which must store in the caller's transaction:
	// EnqueueTx, PlaceOrderTx). Nil: such a request is refused with 501.
	Idempotency IdempotencyStore
	WS          WSConfig
	// Access is who may do what; the zero value is open to loopback
	// Host names only (Canal's default with no tokens configured).
	Access Access
	// Processes lists every process sharing the database (*queue.Process);
	// nil shows none.
	Processes ProcessLister
	// Audit stores every command and write (*audit.Log); nil leaves the
	// audit log and its pages out.
	Audit AuditLog
	// Metrics is the Prometheus registry served on /metrics; nil makes one
	// that reads Work, Outbox and Hub at scrape time.
	Metrics *Metrics
	// Checks are what /readyz asks (the database, the relay, the queue).
	Checks []ReadyCheck
	// Tracer gives requests their spans (OpenTelemetry); nil records none
	// but still passes a caller's traceparent on to the messages it adds.
	Tracer trace.TracerProvider
	// Ready reports whether the program has finished starting.
	Ready   func() bool
	Started time.Time
	// Zone is the zone every page shows times in (-display-tz); nil shows
	// each viewer's own. The hub must be given the same (HubConfig.Zone).
	Zone *time.Location
	// Prefix is the path the dashboard is mounted under in another
	// service ("/canal"; "" at the root): its routes answer under it, and
	// every URL it sends carries it. The hub must be given the same
	// (HubConfig.Prefix).
	Prefix string
	// Database is the process's view of the database (queue.Process's
	// Outage): every page shows its banner while it is away. Nil: none.
	Database *outage.Monitor
}

// New returns the HTTP handler with every route, under d.Prefix when set.
func New(d Deps) *echo.Echo {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Ready == nil {
		d.Ready = func() bool { return true }
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	// Without an extractor, Echo's RealIP believes X-Forwarded-For from
	// anyone.
	e.IPExtractor = d.Access.ipExtractor()
	if d.Metrics == nil {
		d.Metrics = NewMetrics(MetricSources{Work: d.Work, Outbox: d.Outbox})
		d.Metrics.AddHub(d.Hub)
	}
	e.HTTPErrorHandler = errorHandler(d.Logger)
	e.Use(accessLog(d.Logger))
	e.Use(middleware.Recover())
	e.Use(d.Metrics.instrument)
	if d.Tracer == nil {
		d.Tracer = noop.NewTracerProvider()
	}
	e.Use(tracing(d.Tracer))
	e.Use(securityHeaders)
	// One bound for every request body; the JSON decoders apply the same
	// one and answer 413 with a JSON error.
	e.Use(middleware.BodyLimit(strconv.Itoa(maxBody)))
	// A page whose name merely resolves to this address (DNS rebinding)
	// is not this dashboard.
	allowedHost := hostPolicy(d.Access.Hosts)
	e.Use(hostGuard(allowedHost))
	// A page on another site must not press Canal's buttons from a
	// colleague's browser.
	e.Use(crossOriginGuard(http.NewCrossOriginProtection()))
	// Wrong Bearer tokens and failed logins share one limit per address.
	logins := newLoginLimiter(d.Access.FailedLogins)
	e.Use(d.Access.identify(logins))
	e.Use(withZone(d.Zone))
	e.Use(wellFormedQuery)
	e.Use(withDatabase(d.Database))
	addRoutes(e, d, logins, allowedHost)
	if p := templates.CleanPrefix(d.Prefix); p != "" {
		return mountAt(p, e, d.Logger)
	}
	return e
}

// addRoutes is the map of the whole HTTP surface, on one screen.
func addRoutes(e *echo.Echo, d Deps, logins *loginLimiter, allowedHost func(string) bool) {
	// GET and HEAD: uptime checks and caches often ask with HEAD.
	getHead := []string{http.MethodGet, http.MethodHead}
	e.Match(getHead, "/healthz", healthz(d.Ready, d.Started))
	e.Match(getHead, "/readyz", readyz(d.Ready, d.Checks, allowedHost, d.Logger))
	e.Match(getHead, "/static/*", staticFiles(static.FS))

	// Logging in, and who may do what: every route below names the role
	// it needs. Operators' writes also need the CSRF token when a browser
	// sends them (see require).
	viewer := d.Access.require(auth.Viewer)
	// Every command and write is counted and audited, refused ones too;
	// so is every login, and every wall link used. Reads are not. The
	// API's intake (work items, orders) is summarised: a caller's
	// requests with one outcome in a minute are one row with a count.
	rc := recorder{log: d.Audit, hub: d.Hub, metrics: d.Metrics, logger: d.Logger}
	rec := rc.middleware
	tallied := rc
	tallied.summarise = true
	e.GET("/login", loginPage(d.Access, logins), onlyWithToken(rec))
	if d.Access.Login != nil {
		e.POST("/login", loginSubmit(d.Access, logins), rec)
	}
	operator := []echo.MiddlewareFunc{rec, d.Access.require(auth.Operator)}
	intake := []echo.MiddlewareFunc{tallied.middleware, d.Access.require(auth.Operator)}
	e.POST("/logout", logout, viewer)
	e.GET("/metrics", d.Metrics.handler(), viewer)

	app := e.Group("")

	// Pages (server-rendered, readable without JavaScript) and the live
	// sockets: /ws speaks HTML fragments, /ws/events JSON frames.
	app.GET("/", overviewPage(d.Hub, d.Jobs), viewer)
	app.GET("/jobs/:name", jobPage(d.Hub, d.Jobs, d.History), viewer)
	app.GET("/work", workPage(d.Hub, d.History), viewer)
	app.GET("/work/:id", workItemPage(d.Hub, d.Work, d.WorkActions), viewer)
	app.GET("/outbox", outboxPage(d.Hub, d.Outbox, d.Routes), viewer)
	app.GET("/outbox/:id", outboxMessagePage(d.Hub, d.Outbox), viewer)
	app.GET("/wall", wallPage(d.Hub), viewer)
	app.GET("/ws", serveWS(d.Hub, d.WS, d.Logger, false), viewer)
	app.GET("/ws/events", serveWS(d.Hub, d.WS, d.Logger, true), viewer)
	app.GET("/api/hub/stats", hubStats(d.Hub), viewer)
	app.GET("/api/dashboard", dashboardJSON(d.Hub), viewer) // every figure the overview and the wall show

	// Narrow fragment endpoints: one live region each, one query each,
	// shared by every viewer of the same region (fragments.go).
	fs := newFragments(d.Hub)
	if d.Outbox != nil {
		app.GET("/fragments/outbox", outboxListFragment(fs, d.Outbox, d.Routes), viewer)
		app.GET("/fragments/outbox/:id", outboxMessageFragment(fs, d.Outbox), viewer)
	}
	if d.History != nil {
		app.GET("/fragments/work", workListFragment(fs, d.History), viewer)
		app.GET("/fragments/jobs/:name/runs", jobRunsFragment(fs, d.History), viewer)
	}
	if d.Work != nil {
		app.GET("/fragments/work/:id", workItemFragment(fs, d.Work, d.WorkActions != nil), viewer)
	}

	// The pages' buttons (htmx, or plain form posts without JavaScript).
	if d.Jobs != nil {
		app.POST("/ui/jobs/:name/start", uiJob(d.Jobs, "start"), operator...)
		app.POST("/ui/jobs/:name/stop", uiJob(d.Jobs, "stop"), operator...)
		app.POST("/ui/jobs/:name/trigger", uiJob(d.Jobs, "trigger"), operator...)
		app.POST("/ui/jobs/:name/interval", uiSetInterval(d.Jobs), operator...)
	}
	if d.Outbox != nil {
		app.POST("/ui/outbox/retry-dead", uiRetryDead(d.Outbox), operator...)
		app.POST("/ui/outbox/:id/retry", uiRetry(d.Outbox, d.Routes), operator...)
		app.POST("/ui/outbox/:id/delete", uiDelete(d.Outbox, d.Routes), operator...)
	}
	if d.WorkActions != nil && d.Work != nil {
		app.POST("/ui/work/:id/retry", uiRetryWork(d.WorkActions, d.Work), operator...)
		app.POST("/ui/work/:id/delete", uiDeleteWork(d.WorkActions, d.Work), operator...)
	}

	// Jobs API (recurring jobs through the control channel).
	if d.Jobs != nil {
		app.GET("/api/jobs", listJobs(d.Jobs), viewer)
		app.GET("/api/jobs/:name", jobCommand(d.Jobs.Status), viewer)
		app.POST("/api/jobs/:name/start", jobCommand(d.Jobs.Start), operator...)
		app.POST("/api/jobs/:name/stop", jobCommand(d.Jobs.Stop), operator...)
		app.POST("/api/jobs/:name/trigger", jobCommand(d.Jobs.Trigger), operator...)
		app.PUT("/api/jobs/:name/interval", setJobInterval(d.Jobs), operator...)
		app.POST("/api/job/start", tutorialJob(d.Jobs, "start"), operator...) // the tutorial's own endpoints
		app.POST("/api/job/stop", tutorialJob(d.Jobs, "stop"), operator...)
		app.GET("/api/job/status", tutorialJob(d.Jobs, "status"), viewer)
	}
	// History API (runs and work items as stored; read-only).
	if d.History != nil {
		app.GET("/api/jobs/:name/runs", listRuns(d.History), viewer)
		app.GET("/api/work", listWork(d.History), viewer)
	}

	// Work API (one-off work items).
	if d.Work != nil {
		txq, _ := d.Work.(workTxEnqueuer)
		app.POST("/api/work", postWork(d.Work, txq, d.idempotent("POST /api/work"), 2*time.Second), intake...)
		app.GET("/api/work/:id", getWork(d.Work), viewer)
		var counter workCounter
		if d.History != nil {
			counter = d.History
		}
		app.GET("/api/queue", queueHealth(d.Work, counter, d.Hub), viewer)
	}
	if d.WorkActions != nil {
		app.POST("/api/work/:id/retry", retryWork(d.WorkActions), operator...)
		app.DELETE("/api/work/:id", deleteWork(d.WorkActions), operator...)
	}

	// Outbox API.
	if d.Outbox != nil {
		app.GET("/api/outbox", listOutbox(d.Outbox), viewer)
		app.GET("/api/outbox/stats", outboxStats(d.Outbox), viewer)
		app.POST("/api/outbox/retry-dead", retryDeadOutbox(d.Outbox), operator...)
		app.GET("/api/outbox/:id", getOutbox(d.Outbox), viewer)
		app.POST("/api/outbox/:id/retry", retryOutbox(d.Outbox), operator...)
		app.DELETE("/api/outbox/:id", deleteOutbox(d.Outbox), operator...)
	}

	// Every process sharing the database (read-only).
	app.GET("/processes", processesPage(d.Processes), viewer)
	app.GET("/api/processes", listProcesses(d.Processes), viewer)

	// Audit log (who did what; read-only).
	if d.Audit != nil {
		app.GET("/audit", auditPage(d.Audit), viewer)
		app.GET("/api/audit", listAudit(d.Audit), viewer)
	}

	// Orders demo API: an order and its outbox message in one transaction.
	if d.Orders != nil {
		app.POST("/api/orders", placeOrder(d.Orders, d.idempotent("POST /api/orders")), intake...)
	}
}

// idempotent is the Idempotency-Key handling of a write route; nil without
// a store.
func (d Deps) idempotent(route string) *idempotentWrite {
	if d.Idempotency == nil {
		return nil
	}
	return &idempotentWrite{store: d.Idempotency, route: route}
}
