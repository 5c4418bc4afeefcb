package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/templates"
	"github.com/labstack/echo/v4"
)

// jobCommandFunc is one command on a named job, such as JobController.Start.
type jobCommandFunc func(ctx context.Context, name string) (jobs.Status, error)

type jobLister interface {
	List(ctx context.Context) ([]jobs.Status, error)
}

type intervalSetter interface {
	SetInterval(ctx context.Context, name string, d time.Duration) (jobs.Status, error)
}

// listJobs answers every job's status, in registration order.
func listJobs(jc jobLister) echo.HandlerFunc {
	return func(c echo.Context) error {
		list, err := jc.List(c.Request().Context())
		if err != nil {
			return jobsError(c, err)
		}
		if list == nil {
			list = []jobs.Status{}
		}
		return c.JSON(http.StatusOK, list)
	}
}

// jobCommand sends cmd through the control channel and answers the job's
// status as the processor reported it in its reply.
func jobCommand(cmd jobCommandFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		st, err := cmd(c.Request().Context(), c.Param("name"))
		if err != nil {
			return jobsError(c, err)
		}
		return c.JSON(http.StatusOK, st)
	}
}

// setJobInterval reads {"interval":"5s"}.
func setJobInterval(jc intervalSetter) echo.HandlerFunc {
	return func(c echo.Context) error {
		var body struct {
			Interval *string `json:"interval"`
		}
		if field, err := decodeBody(c, &body); err != nil {
			return bodyError(c, field, err)
		}
		if body.Interval == nil {
			return badRequest(c, "interval", `interval is required, e.g. {"interval":"5s"}`)
		}
		d, msg := parseInterval(*body.Interval)
		if msg != "" {
			return badRequest(c, "interval", msg)
		}
		st, err := jc.SetInterval(c.Request().Context(), c.Param("name"), d)
		if err != nil {
			return jobsError(c, err)
		}
		return c.JSON(http.StatusOK, st)
	}
}

// tutorialStatus is the JobStatus of the channels tutorial, for its own
// endpoints under /api/job.
type tutorialStatus struct {
	IsRunning         bool       `json:"isRunning"`
	ExecutionCount    int64      `json:"executionCount"`
	LastExecutionTime *time.Time `json:"lastExecutionTime"`
	Message           string     `json:"message"`
}

// tutorialJob serves the tutorial's /api/job/start|stop|status for the
// default job: the first one registered. As in the tutorial, start and stop
// answer 200 with the status even when the job already was in that state.
func tutorialJob(jc JobController, verb string) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		list, err := jc.List(ctx)
		if err != nil {
			return jobsError(c, err)
		}
		if len(list) == 0 {
			return jsonError(c, http.StatusNotFound, "no job is registered")
		}
		name := list[0].Name
		var st jobs.Status
		switch verb {
		case "start":
			st, err = jc.Start(ctx, name)
			if errors.Is(err, jobs.ErrAlreadyRunning) {
				st, err = jc.Status(ctx, name)
				st.Message = "already running"
			}
		case "stop":
			st, err = jc.Stop(ctx, name)
			if errors.Is(err, jobs.ErrNotRunning) {
				st, err = jc.Status(ctx, name)
				st.Message = "already stopped"
			}
		default:
			// The state, not the last command's answer ("interval set to 5s").
			st, err = jc.Status(ctx, name)
			st.Message = "stopped"
			if st.Running {
				st.Message = "running"
			}
		}
		if err != nil {
			return jobsError(c, err)
		}
		return c.JSON(http.StatusOK, tutorialStatus{
			IsRunning: st.Running, ExecutionCount: st.Executions, LastExecutionTime: st.LastRun, Message: st.Message,
		})
	}
}

// retryAfter is what a 503 tells a client to wait, in seconds.
const retryAfter = "1"

// jobsError maps the jobs package's typed errors to HTTP answers, in one
// place for the jobs and work APIs. Anything else is a 500.
func jobsError(c echo.Context, err error) error {
	switch {
	case errors.Is(err, jobs.ErrUnknownJob), errors.Is(err, jobs.ErrUnknownWork):
		return jsonError(c, http.StatusNotFound, err.Error())
	case errors.Is(err, jobs.ErrAlreadyRunning), errors.Is(err, jobs.ErrNotRunning),
		errors.Is(err, jobs.ErrWorkState):
		return jsonError(c, http.StatusConflict, err.Error())
	case errors.Is(err, jobs.ErrInvalidInterval):
		return badRequest(c, "interval", err.Error())
	case errors.Is(err, jobs.ErrInvalidLimit):
		return badRequest(c, "limit", err.Error())
	case errors.Is(err, jobs.ErrInvalidCursor):
		return badRequest(c, "before", err.Error())
	case errors.Is(err, jobs.ErrInvalidState):
		return badRequest(c, "state", err.Error())
	case errors.Is(err, jobs.ErrUnknownKind):
		return badRequest(c, "kind", err.Error())
	case errors.Is(err, jobs.ErrInvalidPriority):
		return badRequest(c, "priority", err.Error())
	case errors.Is(err, jobs.ErrInvalidPayload):
		return badRequest(c, "payload", err.Error())
	case errors.Is(err, jobs.ErrInvalidUnique):
		return badRequest(c, "unique_key", err.Error())
	case errors.Is(err, jobs.ErrDuplicate):
		// The item that holds the key, so a client can follow it.
		body := duplicateError{Error: err.Error(), Field: "unique_key"}
		if dup, ok := errors.AsType[*jobs.DuplicateError](err); ok {
			body.ExistingID, body.UniqueKey = dup.ID, dup.Key
			c.Response().Header().Set("Location", templates.Path(c.Request().Context(), "/api/work/"+dup.ID))
		}
		return c.JSON(http.StatusConflict, body)
	case errors.Is(err, jobs.ErrFull), errors.Is(err, jobs.ErrDropped), errors.Is(err, jobs.ErrClosed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, jobs.ErrNoStore),
		errors.Is(err, jobs.ErrNoLeader), errors.Is(err, jobs.ErrLeaderTimeout):
		// Busy or shutting down, or no process leads the recurring jobs
		// now (one takes over within seconds): try again.
		c.Response().Header().Set("Retry-After", retryAfter)
		return jsonError(c, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		return jsonError(c, http.StatusServiceUnavailable, err.Error())
	}
	return err
}

// duplicateError is the 409 of a work item whose unique key is held.
type duplicateError struct {
	Error      string `json:"error"`
	Field      string `json:"field"`
	UniqueKey  string `json:"unique_key,omitempty"`
	ExistingID string `json:"existing_id,omitempty"`
}

// History is the read-only record of job runs and work items, read straight
// from the jobs store (no command goes through the control channel);
// *jobs.Processor is one.
type History interface {
	runLister
	workLister
}

// runLister reads a job's recorded runs.
type runLister interface {
	Runs(ctx context.Context, job string, before int64, limit int) (jobs.RunPage, error)
}

// listRuns answers a page of a job's runs, newest first:
// ?before=<next of the previous page>&limit=1..jobs.MaxPage.
func listRuns(rl runLister) echo.HandlerFunc {
	return func(c echo.Context) error {
		before, ok := runCursor(c.QueryParam("before"))
		if !ok {
			return badRequest(c, "before", runCursorMessage)
		}
		limit, ok := pageLimit(c.QueryParam("limit"))
		if !ok {
			return badRequest(c, "limit", limitMessage)
		}
		page, err := rl.Runs(c.Request().Context(), c.Param("name"), before, limit)
		if err != nil {
			return jobsError(c, err)
		}
		return c.JSON(http.StatusOK, page)
	}
}

// runCursor reads a run page's before cursor: "" (the newest) or a
// positive run id.
func runCursor(s string) (int64, bool) {
	if s == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}

const runCursorMessage = "before must be the next value of a previous page (a positive run id)"

var limitMessage = fmt.Sprintf("limit must be a whole number from 1 to %d", jobs.MaxPage)

// pageLimit reads ?limit=: "" is the default page (0).
func pageLimit(s string) (int, bool) {
	if s == "" {
		return 0, true
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 1 && n <= jobs.MaxPage
}

// parseInterval reads a job interval as a person types it, or says what is
// wrong with it; the processor enforces its own minimum (MinInterval) too.
func parseInterval(s string) (time.Duration, string) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	switch {
	case err != nil:
		return 0, `interval must be a duration such as "500ms", "5s" or "1m"`
	case d <= 0:
		return 0, "interval must be positive"
	case d > jobs.MaxInterval:
		return 0, fmt.Sprintf("interval %s is too long: at most %s", d, jobs.MaxInterval)
	}
	return d, ""
}
