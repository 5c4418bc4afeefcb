package web

import (
	"context"
	"errors"
	"net/http"

	"github.com/a-h/templ"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/templates"
	"github.com/labstack/echo/v4"
)

// WorkActions are the buttons on a work item, through the processor's
// control channel; *jobs.Processor is one.
type WorkActions interface {
	RetryWork(ctx context.Context, id string) (jobs.WorkItem, error)
	DeleteWork(ctx context.Context, id string) (jobs.WorkItem, error)
}

// workDetail is what an item's page shows: the item and its attempts.
type workDetail interface {
	workGetter
	workAttempter
}

// workWithAttempts reads an item and every recorded attempt of it.
func workWithAttempts(ctx context.Context, wd workDetail, id string) (jobs.WorkItem, []jobs.WorkAttempt, error) {
	it, err := wd.Work(ctx, id)
	if err != nil {
		return it, nil, err
	}
	atts, err := wd.WorkAttempts(ctx, id)
	if errors.Is(err, jobs.ErrUnknownWork) {
		return it, nil, nil // deleted between the two reads: the item as last seen
	}
	return it, atts, err
}

// workItemPage shows one work item: payload, kind, priority, state, its
// attempts and last error, and Retry or Delete where they apply.
func workItemPage(h *Hub, wg workDetail, acts WorkActions) echo.HandlerFunc {
	return func(c echo.Context) error {
		if wg == nil {
			return notFound(c, "No work queue is connected to this dashboard.", "/", "Overview")
		}
		id := c.Param("id")
		it, atts, err := workWithAttempts(c.Request().Context(), wg, id)
		if errors.Is(err, jobs.ErrUnknownWork) {
			return notFound(c, "There is no work item “"+id+"”.", "/work", "Work")
		}
		if err != nil {
			return err
		}
		v, err := h.View(c.Request().Context())
		if err != nil {
			return err
		}
		return render(c, http.StatusOK, templates.WorkItemPage(it, atts, acts != nil, v.Seq))
	}
}

// retryWork: POST /api/work/:id/retry — a failed or dropped item runs
// again from its first attempt; 409 for the others.
func retryWork(wa WorkActions) echo.HandlerFunc {
	return func(c echo.Context) error {
		it, err := wa.RetryWork(c.Request().Context(), c.Param("id"))
		if err != nil {
			return jobsError(c, err)
		}
		return c.JSON(http.StatusOK, it)
	}
}

// deleteWork: DELETE /api/work/:id — only a finished item (409 for the
// others, so nothing waiting or running vanishes); 204 when gone.
func deleteWork(wa WorkActions) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, err := wa.DeleteWork(c.Request().Context(), c.Param("id")); err != nil {
			return jobsError(c, err)
		}
		return c.NoContent(http.StatusNoContent)
	}
}

// uiRetryWork and uiDeleteWork are the buttons: pressed in a row of the
// work table (row=1), the row answers at once, rendered from the result.
func uiRetryWork(wa WorkActions, wg workGetter) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), uiTimeout)
		defer cancel()
		id := c.Param("id")
		it, err := wa.RetryWork(ctx, id)
		if err != nil {
			return failedRow(c, err, workRowNow(ctx, wg, id))
		}
		return answerRow(c, true, "retried "+id+": now "+string(it.State), templates.WorkRow(it, true))
	}
}

func uiDeleteWork(wa WorkActions, wg workGetter) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), uiTimeout)
		defer cancel()
		id := c.Param("id")
		if _, err := wa.DeleteWork(ctx, id); err != nil {
			return failedRow(c, err, workRowNow(ctx, wg, id))
		}
		return answerRow(c, true, "deleted "+id, templates.WorkGoneRow(id, "Deleted "+id+"."))
	}
}

// workRowNow is an item's row as stored now, after an action that failed.
func workRowNow(ctx context.Context, wg workGetter, id string) templ.Component {
	it, err := wg.Work(ctx, id)
	switch {
	case errors.Is(err, jobs.ErrUnknownWork):
		return templates.WorkGoneRow(id, "This work item no longer exists (deleted).")
	case err != nil:
		return nil
	}
	return templates.WorkRow(it, true)
}
