package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/a-h/templ"
	"github.com/canalhq/canal/internal/outage"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/templates"
	"github.com/labstack/echo/v4"
)

// The dashboard's buttons. Each lands in the same control channel (or relay
// admin method) as the JSON API and answers a small fragment: the reply the
// processor or relay gave, or its error. Every open page then sees the change
// through the hub. With JavaScript off the forms post normally and come back.

// uiTimeout bounds how long a button waits for the processor's reply.
const uiTimeout = 5 * time.Second

type jobAction func(ctx context.Context, name string) (jobs.Status, error)

// uiJob runs one job command: start, stop or trigger.
func uiJob(jc JobController, verb string) echo.HandlerFunc {
	return func(c echo.Context) error {
		var act jobAction
		switch verb {
		case "start":
			act = jc.Start
		case "stop":
			act = jc.Stop
		default:
			act = jc.Trigger
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), uiTimeout)
		defer cancel()
		name := c.Param("name")
		s, err := act(ctx, name)
		if err != nil {
			return failed(c, err)
		}
		msg := s.Message
		if msg == "" {
			msg = "done"
		}
		return answer(c, true, name+": "+msg)
	}
}

// uiSetInterval changes a job's interval from its page's form; a bad
// value is answered in the form's result line, naming what is wrong.
func uiSetInterval(jc JobController) echo.HandlerFunc {
	return func(c echo.Context) error {
		name := c.Param("name")
		d, msg := parseInterval(c.FormValue("interval"))
		if msg != "" {
			c.Set(auditResultKey, msg)
			return answer(c, false, msg)
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), uiTimeout)
		defer cancel()
		s, err := jc.SetInterval(ctx, name, d)
		if err != nil {
			return failed(c, err)
		}
		return answer(c, true, name+": every "+s.Interval.String())
	}
}

// uiRetry retries one outbox message (a dead one, or a pending one now).
// Pressed in a table row (form value row=1), the answer carries the row
// again, rendered from the retried record, so it is right at once.
func uiRetry(ob OutboxAdmin, routes []templates.Route) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), uiTimeout)
		defer cancel()
		id := c.Param("id")
		rec, err := ob.Retry(ctx, id)
		if err != nil {
			return failedRow(c, err, messageRowNow(ctx, ob, id, routes))
		}
		return answerRow(c, true, "retried "+id+": now "+string(rec.Status), templates.MessageRow(rec, routes, true))
	}
}

// messageRowNow is a message's row as stored now, for an action that
// failed: the row says what is true instead of keeping useless buttons.
func messageRowNow(ctx context.Context, ob OutboxReader, id string, routes []templates.Route) templ.Component {
	rec, err := ob.Get(ctx, id)
	switch {
	case errors.Is(err, outbox.ErrNotFound):
		return templates.MessageGoneRow(id, "This message no longer exists (deleted).")
	case err != nil:
		return nil
	}
	return templates.MessageRow(rec, routes, true)
}

// uiRetryDead retries every dead message, or those of ?topic=.
func uiRetryDead(ob OutboxActions) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), uiTimeout)
		defer cancel()
		topic := c.QueryParam("topic")
		n, err := ob.RetryDead(ctx, topic)
		if err != nil {
			return failed(c, err)
		}
		what := "dead messages"
		if topic != "" {
			what = fmt.Sprintf("dead messages of %s", topic)
		}
		return answer(c, true, "retried "+strconv.FormatInt(n, 10)+" "+what)
	}
}

// uiDelete deletes a dead message for good; pressed in a row, the row
// says it is gone at once.
func uiDelete(ob OutboxAdmin, routes []templates.Route) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), uiTimeout)
		defer cancel()
		id := c.Param("id")
		if err := ob.Delete(ctx, id); err != nil {
			return failedRow(c, err, messageRowNow(ctx, ob, id, routes))
		}
		return answerRow(c, true, "deleted "+id, templates.MessageGoneRow(id, "Deleted "+id+"."))
	}
}

// failedRow is failed for a button that may sit in a table row: pressed
// there (with htmx), the answer carries the row as it now stands.
func failedRow(c echo.Context, err error, row templ.Component) error {
	if c.Request().Header.Get("HX-Request") == "" || c.FormValue("row") == "" || row == nil {
		return failed(c, err)
	}
	c.Set(auditResultKey, err.Error())
	return answerRow(c, false, err.Error(), row)
}

// answerRow is answer plus, for a press in a table row, the row itself
// (swapped by id, out of band).
func answerRow(c echo.Context, ok bool, text string, row templ.Component) error {
	if c.Request().Header.Get("HX-Request") == "" || c.FormValue("row") == "" || row == nil {
		return answer(c, ok, text)
	}
	c.Response().Header().Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
	c.Response().WriteHeader(http.StatusOK)
	ctx := c.Request().Context()
	if err := templates.Result(ok, text).Render(ctx, c.Response()); err != nil {
		return err
	}
	// A <tr> outside a table is dropped by the HTML parser; htmx takes
	// out-of-band elements out of a <template> as they are.
	if _, err := io.WriteString(c.Response(), "<template>"); err != nil {
		return err
	}
	if err := row.Render(ctx, c.Response()); err != nil {
		return err
	}
	_, err := io.WriteString(c.Response(), "</template>")
	return err
}

// answer renders the result fragment for htmx (200 either way, since htmx
// does not swap error answers), or sends a plain form post back where it
// came from.
func answer(c echo.Context, ok bool, text string) error {
	if c.Request().Header.Get("HX-Request") == "" {
		return redirect(c, backTo(c))
	}
	return render(c, http.StatusOK, templates.Result(ok, text))
}

// failed answers a button whose command failed: the result line for htmx,
// or, for a form posted without JavaScript, a page that says what went
// wrong with the status an API client would get (the error is not lost in
// a redirect).
func failed(c echo.Context, err error) error {
	c.Set(auditResultKey, err.Error())
	if c.Request().Header.Get("HX-Request") != "" {
		return render(c, http.StatusOK, templates.Result(false, err.Error()))
	}
	return render(c, commandStatus(err), templates.Problem(commandStatus(err), err.Error(), backTo(c)))
}

// commandStatus is the HTTP status of a command's error, as the JSON API
// answers it.
func commandStatus(err error) int {
	switch {
	case errors.Is(err, jobs.ErrUnknownJob), errors.Is(err, jobs.ErrUnknownWork), errors.Is(err, outbox.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, jobs.ErrAlreadyRunning), errors.Is(err, jobs.ErrNotRunning), errors.Is(err, jobs.ErrWorkState),
		errors.Is(err, outbox.ErrNotDead), errors.Is(err, outbox.ErrNotRetryable):
		return http.StatusConflict
	case errors.Is(err, outbox.ErrInvalidFilter), errors.Is(err, jobs.ErrInvalidInterval):
		return http.StatusBadRequest
	case errors.Is(err, jobs.ErrClosed), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, jobs.ErrNoLeader), errors.Is(err, jobs.ErrLeaderTimeout), outage.Unavailable(err):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// backTo is the page a form came from, if it is one of ours, as a path of
// the dashboard (without the prefix it may be mounted under).
func backTo(c echo.Context) string {
	ref, err := url.Parse(c.Request().Referer())
	if err != nil || ref.Host != c.Request().Host || ref.Path == "" || ref.Path[0] != '/' {
		return "/"
	}
	p, ok := appPath(c, ref.Path)
	if !ok {
		return "/"
	}
	if ref.RawQuery != "" {
		return p + "?" + ref.RawQuery
	}
	return p
}
