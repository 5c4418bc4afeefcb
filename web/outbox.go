package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/canalhq/canal/outbox"
	"github.com/labstack/echo/v4"
)

// The JSON outbox API. Each maker takes the one relay method it calls.

type outboxLister interface {
	List(ctx context.Context, f outbox.ListFilter) (outbox.Page, error)
}

type outboxGetter interface {
	Get(ctx context.Context, id string) (outbox.Record, error)
}

type outboxStatser interface {
	Stats(ctx context.Context) (outbox.Stats, error)
}

type outboxRetrier interface {
	Retry(ctx context.Context, id string) (outbox.Record, error)
}

type outboxDeadRetrier interface {
	RetryDead(ctx context.Context, topic string) (int64, error)
}

type outboxDeleter interface {
	Delete(ctx context.Context, id string) error
}

const maxTopicLen = 200

// listOutbox: GET /api/outbox?status=&topic=&limit=&before= — a page of
// messages, newest first; "next" is the before cursor of the next page.
func listOutbox(ob outboxLister) echo.HandlerFunc {
	return func(c echo.Context) error {
		var f outbox.ListFilter
		if s := c.QueryParam("status"); s != "" {
			st, ok := outbox.ParseStatus(s)
			if !ok {
				return badRequest(c, "status", statusMessage(s))
			}
			f.Status = st
		}
		f.Topic = strings.TrimSpace(c.QueryParam("topic"))
		if msg := checkTopic(f.Topic); msg != "" {
			return badRequest(c, "topic", msg)
		}
		f.Key = strings.TrimSpace(c.QueryParam("key"))
		if len(f.Key) > maxTopicLen {
			return badRequest(c, "key", fmt.Sprintf("key longer than %d bytes", maxTopicLen))
		}
		if s := c.QueryParam("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > outbox.MaxPage {
				return badRequest(c, "limit", fmt.Sprintf("limit %q: want a whole number from 1 to %d", s, outbox.MaxPage))
			}
			f.Limit = n
		}
		if s := c.QueryParam("before"); s != "" {
			b, ok := outbox.ParseCursor(s)
			if !ok {
				return badRequest(c, "before", outboxCursorMessage(s))
			}
			f.Before = b
		}
		page, err := ob.List(c.Request().Context(), f)
		if errors.Is(err, outbox.ErrInvalidFilter) {
			return badRequest(c, "query", err.Error())
		}
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, page)
	}
}

// getOutbox: GET /api/outbox/:id — a message with its attempts.
func getOutbox(ob outboxGetter) echo.HandlerFunc {
	return func(c echo.Context) error {
		rec, err := ob.Get(c.Request().Context(), c.Param("id"))
		if err != nil {
			return outboxError(c, err)
		}
		return c.JSON(http.StatusOK, rec)
	}
}

// retryOutbox: POST /api/outbox/:id/retry — a dead message gets a fresh
// budget of attempts, a pending one is due at once; 409 for the others.
func retryOutbox(ob outboxRetrier) echo.HandlerFunc {
	return func(c echo.Context) error {
		rec, err := ob.Retry(c.Request().Context(), c.Param("id"))
		if err != nil {
			return outboxError(c, err)
		}
		return c.JSON(http.StatusOK, rec)
	}
}

// retryDeadOutbox: POST /api/outbox/retry-dead — every dead message, or
// those of one topic given as ?topic= or a JSON body {"topic": "…"}.
func retryDeadOutbox(ob outboxDeadRetrier) echo.HandlerFunc {
	return func(c echo.Context) error {
		topic := strings.TrimSpace(c.QueryParam("topic"))
		var body struct {
			Topic string `json:"topic"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, maxBody))
		dec.DisallowUnknownFields()
		switch err := dec.Decode(&body); {
		case errors.Is(err, io.EOF): // no body: the query decides
		case tooLarge(err):
			return jsonError(c, http.StatusRequestEntityTooLarge, errBodyTooLarge.Error())
		case err != nil:
			return badRequest(c, "body", "body: want a JSON object like {\"topic\": \"order.placed\"} or none: "+err.Error())
		case trailing(dec):
			return badRequest(c, "body", "body: want one JSON object like {\"topic\": \"order.placed\"}, and nothing after it")
		case topic != "" && body.Topic != "" && topic != body.Topic:
			return badRequest(c, "topic", "topic given twice, differently, in the query and the body")
		case body.Topic != "":
			topic = strings.TrimSpace(body.Topic)
		}
		if msg := checkTopic(topic); msg != "" {
			return badRequest(c, "topic", msg)
		}
		n, err := ob.RetryDead(c.Request().Context(), topic)
		if errors.Is(err, outbox.ErrInvalidFilter) {
			return badRequest(c, "topic", err.Error())
		}
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"retried": n, "topic": topic})
	}
}

// deleteOutbox: DELETE /api/outbox/:id — only a dead message (409 for the
// others, so nothing undelivered vanishes); 204 when gone.
func deleteOutbox(ob outboxDeleter) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := ob.Delete(c.Request().Context(), c.Param("id")); err != nil {
			return outboxError(c, err)
		}
		return c.NoContent(http.StatusNoContent)
	}
}

// outboxStats: GET /api/outbox/stats — the relay's last snapshot (counts by
// status, oldest pending age, dispatch rate, latency percentiles).
func outboxStats(ob outboxStatser) echo.HandlerFunc {
	return func(c echo.Context) error {
		s, err := ob.Stats(c.Request().Context())
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, s)
	}
}

// trailing reports whether dec, having decoded one value, has anything but
// white space after it.
func trailing(dec *json.Decoder) bool {
	_, err := dec.Token()
	return !errors.Is(err, io.EOF)
}

// statusMessage and outboxCursorMessage are the words of a bad filter, the
// same on the API and on the page.
func statusMessage(s string) string {
	return fmt.Sprintf("status %q: want pending, inflight, dispatched or dead", s)
}

func outboxCursorMessage(s string) string {
	return fmt.Sprintf("before %q: want the next cursor of a previous page", s)
}

// checkTopic returns why topic (a filter; "" for any) can name no topic, or
// "" when it can.
func checkTopic(topic string) string {
	switch {
	case topic == "":
		return ""
	case len(topic) > maxTopicLen:
		return fmt.Sprintf("topic longer than %d bytes", maxTopicLen)
	case !outbox.ValidTopic(topic):
		return fmt.Sprintf("topic %q: want dot-separated letters, digits, '_' or '-', such as order.placed", topic)
	}
	return ""
}

// outboxError maps the relay's errors on one message to statuses; anything
// else is the server's fault and goes to the error handler (500).
func outboxError(c echo.Context, err error) error {
	switch {
	case errors.Is(err, outbox.ErrNotFound):
		return jsonError(c, http.StatusNotFound, "no outbox message with id "+strconv.Quote(c.Param("id")))
	case errors.Is(err, outbox.ErrNotDead):
		return jsonError(c, http.StatusConflict, "only a dead message can be deleted: "+err.Error())
	case errors.Is(err, outbox.ErrNotRetryable):
		return jsonError(c, http.StatusConflict, "only a dead or pending message can be retried: "+err.Error())
	}
	return err
}
