package web

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/static"
	"github.com/canalhq/canal/templates"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
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
	Hub    *Hub
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
	WS     WSConfig
	// Ready reports whether the program has finished starting.
	Ready   func() bool
	Started time.Time
}

// New returns the HTTP handler with every route.
func New(d Deps) *echo.Echo {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Ready == nil {
		d.Ready = func() bool { return true }
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(d.Logger)
	e.Use(middleware.Recover())
	// A page on another site must not press Canal's buttons from a
	// colleague's browser.
	e.Use(crossOriginGuard(http.NewCrossOriginProtection()))
	addRoutes(e, d)
	return e
}

// addRoutes is the map of the whole HTTP surface, on one screen.
func addRoutes(e *echo.Echo, d Deps) {
	// GET and HEAD: uptime checks and caches often ask with HEAD.
	getHead := []string{http.MethodGet, http.MethodHead}
	e.Match(getHead, "/healthz", healthz(d.Ready, d.Started))
	e.Match(getHead, "/static/*", echo.WrapHandler(http.StripPrefix("/static/", http.FileServerFS(static.FS))))

	// Authentication and roles go here: every route registered on app
	// below passes through this one group. (Cross-site POSTs are already
	// refused for every route, in New.)
	app := e.Group("")

	// Pages (server-rendered, readable without JavaScript) and the live
	// sockets: /ws speaks HTML fragments, /ws/events JSON frames.
	app.GET("/", overviewPage(d.Hub, d.Jobs))
	app.GET("/jobs/:name", jobPage(d.Hub, d.Jobs, d.History))
	app.GET("/work", workPage(d.Hub, d.History))
	app.GET("/outbox", outboxPage(d.Hub, d.Outbox, d.Routes))
	app.GET("/outbox/:id", outboxMessagePage(d.Hub, d.Outbox))
	app.GET("/wall", wallPage(d.Hub))
	app.GET("/ws", serveWS(d.Hub, d.WS, d.Logger, false))
	app.GET("/ws/events", serveWS(d.Hub, d.WS, d.Logger, true))
	app.GET("/api/hub/stats", hubStats(d.Hub))

	// The pages' buttons (htmx, or plain form posts without JavaScript).
	if d.Jobs != nil {
		app.POST("/ui/jobs/:name/start", uiJob(d.Jobs, "start"))
		app.POST("/ui/jobs/:name/stop", uiJob(d.Jobs, "stop"))
		app.POST("/ui/jobs/:name/trigger", uiJob(d.Jobs, "trigger"))
	}
	if d.Outbox != nil {
		app.POST("/ui/outbox/retry-dead", uiRetryDead(d.Outbox))
		app.POST("/ui/outbox/:id/retry", uiRetry(d.Outbox))
		app.POST("/ui/outbox/:id/delete", uiDelete(d.Outbox))
	}

	// Jobs API (recurring jobs through the control channel).
	if d.Jobs != nil {
		app.GET("/api/jobs", listJobs(d.Jobs))
		app.GET("/api/jobs/:name", jobCommand(d.Jobs.Status))
		app.POST("/api/jobs/:name/start", jobCommand(d.Jobs.Start))
		app.POST("/api/jobs/:name/stop", jobCommand(d.Jobs.Stop))
		app.POST("/api/jobs/:name/trigger", jobCommand(d.Jobs.Trigger))
		app.PUT("/api/jobs/:name/interval", setJobInterval(d.Jobs))
		app.POST("/api/job/start", tutorialJob(d.Jobs, "start")) // the tutorial's own endpoints
		app.POST("/api/job/stop", tutorialJob(d.Jobs, "stop"))
		app.GET("/api/job/status", tutorialJob(d.Jobs, "status"))
	}
	// History API (runs and work items as stored; read-only).
	if d.History != nil {
		app.GET("/api/jobs/:name/runs", listRuns(d.History))
		app.GET("/api/work", listWork(d.History))
	}

	// Work API (one-off work items).
	if d.Work != nil {
		app.POST("/api/work", postWork(d.Work, 2*time.Second))
		app.GET("/api/work/:id", getWork(d.Work))
		app.GET("/api/queue", queueHealth(d.Work))
	}

	// Outbox API.
	if d.Outbox != nil {
		app.GET("/api/outbox", listOutbox(d.Outbox))
		app.GET("/api/outbox/stats", outboxStats(d.Outbox))
		app.POST("/api/outbox/retry-dead", retryDeadOutbox(d.Outbox))
		app.GET("/api/outbox/:id", getOutbox(d.Outbox))
		app.POST("/api/outbox/:id/retry", retryOutbox(d.Outbox))
		app.DELETE("/api/outbox/:id", deleteOutbox(d.Outbox))
	}

	// Orders demo API: an order and its outbox message in one transaction.
	if d.Orders != nil {
		app.POST("/api/orders", placeOrder(d.Orders))
	}
}
