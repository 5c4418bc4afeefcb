package web

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/templates"
	"github.com/labstack/echo/v4"
)

// OutboxReader is what the outbox pages read from the relay.
type OutboxReader interface {
	List(ctx context.Context, f outbox.ListFilter) (outbox.Page, error)
	Get(ctx context.Context, id string) (outbox.Record, error)
	Stats(ctx context.Context) (outbox.Stats, error)
}

// OutboxActions are the outbox buttons: the relay's admin methods.
type OutboxActions interface {
	Retry(ctx context.Context, id string) (outbox.Record, error)
	RetryDead(ctx context.Context, topic string) (int64, error)
	Delete(ctx context.Context, id string) error
}

// OutboxAdmin is both; *outbox.Relay is one.
type OutboxAdmin interface {
	OutboxReader
	OutboxActions
}

var _ OutboxAdmin = (*outbox.Relay)(nil)

// overviewPage renders the dashboard's first load from the hub's view; the
// jobs' statuses come from the processor itself when there is one, so a
// page loaded before any event still shows every job.
func overviewPage(h *Hub, jc JobController) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		v, err := h.View(ctx)
		if err != nil {
			return err
		}
		if jc != nil {
			if list, err := jc.List(ctx); err == nil {
				v.Jobs = list
			}
		}
		return render(c, http.StatusOK, templates.Overview(v))
	}
}

// wallPage renders the wall screen's first load.
func wallPage(h *Hub) echo.HandlerFunc {
	return func(c echo.Context) error {
		v, err := h.View(c.Request().Context())
		if err != nil {
			return err
		}
		return render(c, http.StatusOK, templates.WallPage(v))
	}
}

// jobPage renders one job's live card and a page of its recorded runs,
// read from the store (rl nil: no history); an unknown job is a 404 page.
func jobPage(h *Hub, jc JobController, rl runLister) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		name := c.Param("name")
		before, ok := runCursor(c.QueryParam("before"))
		if !ok {
			return badPage(c, "before", runCursorMessage)
		}
		v, err := h.View(ctx)
		if err != nil {
			return err
		}
		var s jobs.Status
		known := false
		if jc != nil {
			s, err = jc.Status(ctx, name)
			if err != nil && !errors.Is(err, jobs.ErrUnknownJob) {
				return err
			}
			known = err == nil
		} else {
			for _, j := range v.Jobs {
				if j.Name == name {
					s, known = j, true
				}
			}
		}
		if !known {
			return notFound(c, "There is no job named “"+name+"”.", "/", "Overview")
		}
		page := jobs.RunPage{}
		if rl != nil {
			page, err = rl.Runs(ctx, name, before, 0)
			if errors.Is(err, jobs.ErrUnknownJob) {
				return notFound(c, "There is no job named “"+name+"”.", "/", "Overview")
			}
			if err != nil {
				return err
			}
		}
		return render(c, http.StatusOK, templates.JobPage(s, page, before, v.Seq))
	}
}

// workPage lists stored work items by state and kind, a page at a time,
// with bounded counts per state (wl nil: nothing stored to show).
func workPage(h *Hub, wl workLister) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		f := templates.WorkFilter{
			State:  jobs.WorkState(c.QueryParam("state")),
			Kind:   strings.TrimSpace(c.QueryParam("kind")),
			Before: c.QueryParam("before"),
		}
		if f.State != "" && !jobs.ValidWorkState(f.State) {
			return badPage(c, "state", workStateMessage)
		}
		if len(f.Kind) > maxKindLen {
			return badPage(c, "kind", kindMessage)
		}
		before, err := jobs.ParseWorkCursor(f.Before)
		if err != nil {
			return badPage(c, "before", workCursorMessage)
		}
		var (
			page   = jobs.WorkPage{}
			counts map[jobs.WorkState]jobs.Count
		)
		if wl != nil {
			page, err = wl.ListWork(ctx, jobs.WorkFilter{State: f.State, Kind: f.Kind}, before, 0)
			if err == nil {
				counts, err = wl.CountWork(ctx, f.Kind)
			}
			if msg, bad := badInput(err); bad {
				return badPage(c, "query", msg)
			}
			if err != nil {
				return err
			}
		}
		v, err := h.View(ctx)
		if err != nil {
			return err
		}
		return render(c, http.StatusOK, templates.WorkPage(v, counts, f, page))
	}
}

// outboxPage is the filterable, paged message table.
func outboxPage(h *Hub, ob OutboxReader, routes []templates.Route) echo.HandlerFunc {
	return func(c echo.Context) error {
		if ob == nil {
			return notFound(c, "No outbox is connected to this dashboard.", "/", "Overview")
		}
		ctx := c.Request().Context()
		f, lf, field, bad := outboxFilter(c)
		if bad != "" {
			return badPage(c, field, bad)
		}
		page, err := ob.List(ctx, lf)
		if errors.Is(err, outbox.ErrInvalidFilter) {
			return badPage(c, "query", err.Error())
		}
		if err != nil {
			return err
		}
		v, err := h.View(ctx)
		if err != nil {
			return err
		}
		st := v.Outbox
		if st == nil {
			if s, err := ob.Stats(ctx); err == nil {
				st = &s
			}
		}
		return render(c, http.StatusOK, templates.OutboxPage(st, f, page, v.Seq, routes))
	}
}

// outboxMessagePage shows one message with its attempts; unknown is a 404.
func outboxMessagePage(h *Hub, ob OutboxReader) echo.HandlerFunc {
	return func(c echo.Context) error {
		if ob == nil {
			return notFound(c, "No outbox is connected to this dashboard.", "/", "Overview")
		}
		id := c.Param("id")
		rec, err := ob.Get(c.Request().Context(), id)
		if errors.Is(err, outbox.ErrNotFound) {
			return notFound(c, "There is no outbox message “"+id+"”.", "/outbox", "Outbox")
		}
		if err != nil {
			return err
		}
		v, err := h.View(c.Request().Context())
		if err != nil {
			return err
		}
		return render(c, http.StatusOK, templates.OutboxMessage(rec, v.Seq))
	}
}

func notFound(c echo.Context, what, back, backLabel string) error {
	return render(c, http.StatusNotFound, templates.NotFound(what, back, backLabel))
}

// badPage is a page's 400: the same checks and words as its API twin, as
// an error page for a browser, or as the API's JSON naming the field for
// htmx or a client that asks for JSON.
func badPage(c echo.Context, field, msg string) error {
	r := c.Request()
	if r.Header.Get("HX-Request") != "" || !strings.Contains(r.Header.Get("Accept"), "text/html") && strings.Contains(r.Header.Get("Accept"), "json") {
		return badRequest(c, field, msg)
	}
	return render(c, http.StatusBadRequest, templates.Problem(http.StatusBadRequest, msg, r.URL.Path))
}

// badInput reports whether err is the jobs store refusing the query.
func badInput(err error) (string, bool) {
	for _, e := range []error{jobs.ErrInvalidLimit, jobs.ErrInvalidCursor, jobs.ErrInvalidState, jobs.ErrUnknownKind} {
		if errors.Is(err, e) {
			return err.Error(), true
		}
	}
	return "", false
}

// dashboardJSON answers the view the overview and the wall render, as JSON:
// the same figures from the same source.
func dashboardJSON(h *Hub) echo.HandlerFunc {
	return func(c echo.Context) error {
		v, err := h.View(c.Request().Context())
		if err != nil {
			return jsonError(c, http.StatusServiceUnavailable, err.Error())
		}
		return c.JSON(http.StatusOK, v)
	}
}
