package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

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

// uiRetry retries one outbox message (a dead one, or a pending one now).
func uiRetry(ob OutboxActions) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), uiTimeout)
		defer cancel()
		id := c.Param("id")
		rec, err := ob.Retry(ctx, id)
		if err != nil {
			return failed(c, err)
		}
		return answer(c, true, "retried "+id+": now "+string(rec.Status))
	}
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

// uiDelete deletes a dead message for good.
func uiDelete(ob OutboxActions) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), uiTimeout)
		defer cancel()
		id := c.Param("id")
		if err := ob.Delete(ctx, id); err != nil {
			return failed(c, err)
		}
		return answer(c, true, "deleted "+id)
	}
}

// answer renders the result fragment for htmx (200 either way, since htmx
// does not swap error answers), or sends a plain form post back where it
// came from.
func answer(c echo.Context, ok bool, text string) error {
	if c.Request().Header.Get("HX-Request") == "" {
		return c.Redirect(http.StatusSeeOther, backTo(c))
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
	case errors.Is(err, jobs.ErrUnknownJob), errors.Is(err, outbox.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, jobs.ErrAlreadyRunning), errors.Is(err, jobs.ErrNotRunning),
		errors.Is(err, outbox.ErrNotDead), errors.Is(err, outbox.ErrNotRetryable):
		return http.StatusConflict
	case errors.Is(err, outbox.ErrInvalidFilter):
		return http.StatusBadRequest
	case errors.Is(err, jobs.ErrClosed), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// backTo is the page a form came from, if it is one of ours.
func backTo(c echo.Context) string {
	ref, err := url.Parse(c.Request().Referer())
	if err != nil || ref.Host != c.Request().Host || ref.Path == "" || ref.Path[0] != '/' {
		return "/"
	}
	if ref.RawQuery != "" {
		return ref.Path + "?" + ref.RawQuery
	}
	return ref.Path
}
