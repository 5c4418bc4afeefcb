package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/canalhq/canal/internal/idempotency"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/templates"
	"github.com/canalhq/canal/web/auth"
	"github.com/labstack/echo/v4"
	"gorm.io/gorm"
)

// WorkQueue is what the web layer asks of the work pool; *jobs.Processor
// is one. Each handler takes only the part it uses.
type WorkQueue interface {
	workEnqueuer
	workGetter
	workAttempter
	healthReporter
}

type workEnqueuer interface {
	Enqueue(ctx context.Context, nw jobs.NewWork) (jobs.WorkItem, error)
}

type workGetter interface {
	Work(ctx context.Context, id string) (jobs.WorkItem, error)
}

type workAttempter interface {
	WorkAttempts(ctx context.Context, id string) ([]jobs.WorkAttempt, error)
}

type healthReporter interface {
	Health() jobs.Health
}

// maxBody bounds a JSON request body; a larger one is answered 413.
const maxBody = 1 << 20

var errBodyTooLarge = fmt.Errorf("request body is larger than %d bytes", maxBody)

// workTxEnqueuer stores an item in the caller's transaction; *jobs.Processor
// is one.
type workTxEnqueuer interface {
	EnqueueTx(ctx context.Context, tx *gorm.DB, nw jobs.NewWork) (jobs.WorkItem, error)
}

// postWork accepts {"kind":…, "priority":…, "payload":{…}, "unique_key":…};
// a unique key held by a waiting or running item is a 409 naming it. The item is
// stored before the 202; if the queue stays full for longer than wait (or
// the request's own deadline), the answer is 503 with Retry-After and the
// item was not accepted. With an Idempotency-Key (idem and txq set) the item
// and the key's record are stored in one transaction, and a retry with the
// key gets the first 202 again instead of a second item.
func postWork(q workEnqueuer, txq workTxEnqueuer, idem *idempotentWrite, wait time.Duration) echo.HandlerFunc {
	if txq == nil {
		idem = nil
	}
	return func(c echo.Context) error {
		key, raw, handled, err := idem.keyed(c)
		if handled {
			return err
		}
		var body struct {
			Kind     string          `json:"kind"`
			Priority *string         `json:"priority"`
			Payload  json.RawMessage `json:"payload"`
			// UniqueKey: no second item while one with this key waits or
			// runs (jobs.UniqueOpts with its default states).
			UniqueKey *string `json:"unique_key"`
		}
		if field, err := decodeBody(c, &body); err != nil {
			return bodyError(c, field, err)
		}
		if strings.TrimSpace(body.Kind) == "" {
			return badRequest(c, "kind", "kind is required")
		}
		nw := jobs.NewWork{Kind: body.Kind, Priority: jobs.Normal, Payload: body.Payload, EnqueuedBy: enqueuedBy(c)}
		if body.UniqueKey != nil {
			nw.Unique = &jobs.UniqueOpts{Key: *body.UniqueKey}
		}
		if body.Priority != nil {
			p, err := jobs.ParsePriority(*body.Priority)
			if err != nil {
				return badRequest(c, "priority", err.Error())
			}
			nw.Priority = p
		}
		if p := bytes.TrimSpace(body.Payload); len(p) > 0 && p[0] != '{' && !bytes.Equal(p, []byte("null")) {
			return badRequest(c, "payload", "payload must be a JSON object")
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), wait)
		defer cancel()
		if key != "" {
			return idem.do(c, key, raw, func(tx *gorm.DB) (idempotency.Response, error) {
				it, err := txq.EnqueueTx(ctx, tx, nw)
				if err != nil {
					return idempotency.Response{}, err
				}
				return jsonResponse(http.StatusAccepted, it, templates.Path(c.Request().Context(), "/api/work/"+it.ID))
			}, jobsError)
		}
		it, err := q.Enqueue(ctx, nw)
		if err != nil {
			return jobsError(c, err)
		}
		c.Response().Header().Set("Location", templates.Path(c.Request().Context(), "/api/work/"+it.ID))
		return c.JSON(http.StatusAccepted, it)
	}
}

// getWork answers an item's state and attempts.
func getWork(q workGetter) echo.HandlerFunc {
	return func(c echo.Context) error {
		it, err := q.Work(c.Request().Context(), c.Param("id"))
		if err != nil {
			return jobsError(c, err)
		}
		return c.JSON(http.StatusOK, it)
	}
}

// workCounter counts the stored items per state, as /api/work does.
type workCounter interface {
	CountWork(ctx context.Context, kind string) (map[jobs.WorkState]jobs.Count, error)
}

// queueHealth answers the queues' depths, counts and health (the
// tutorial's channel health check): 200 while the processor runs, even
// degraded, and 503 when it is down. The counts by state are the stored
// ones of every process (wc, when given), the figures /api/work and the
// work page show; this process's own counters are under "process".
func queueHealth(q healthReporter, wc workCounter, hub *Hub) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := q.Health()
		if hub != nil {
			// Workers, busy ones and breakers of every live process, as
			// the dashboard shows them (this process's alone without
			// others); the process's own counters stay under "process".
			if v, err := hub.View(c.Request().Context()); err == nil && v.Queue != nil {
				h.Queue.Workers, h.Queue.Busy, h.Queue.Breakers = v.Queue.Workers, v.Queue.Busy, v.Queue.Breakers
			}
		}
		status := http.StatusOK
		if h.Status == jobs.HealthDown {
			status = http.StatusServiceUnavailable
			c.Response().Header().Set("Retry-After", retryAfter)
		}
		if wc != nil {
			counts, err := wc.CountWork(c.Request().Context(), "")
			if err != nil {
				return jobsError(c, err)
			}
			h.Queue.Counts = counts
		}
		return c.JSON(status, h)
	}
}

// decodeBody reads one JSON object into v, refusing unknown fields, trailing
// data and bodies over maxBody (errBodyTooLarge). On error it names the
// field at fault ("" for the body).
func decodeBody(c echo.Context, v any) (field string, err error) {
	dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			return "", errBodyTooLarge
		case errors.Is(err, io.EOF):
			return "", errors.New("request body is empty: send a JSON object")
		case errors.As(err, &typeErr) && typeErr.Field == "":
			return "", fmt.Errorf("request body must be a JSON object, not a JSON %s", typeErr.Value)
		case errors.As(err, &typeErr):
			return typeErr.Field, fmt.Errorf("%s: wrong type (got JSON %s)", typeErr.Field, typeErr.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return name, fmt.Errorf("unknown field %q", name)
		default:
			return "", fmt.Errorf("request body is not valid JSON: %v", err)
		}
	}
	if dec.More() {
		return "", errors.New("request body has data after the JSON object")
	}
	return "", nil
}

// tooLarge reports whether a decoder stopped at the body limit.
func tooLarge(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

// bodyError answers a body decodeBody refused: 413 when it is too large,
// else 400 naming the field at fault.
func bodyError(c echo.Context, field string, err error) error {
	if errors.Is(err, errBodyTooLarge) {
		return jsonError(c, http.StatusRequestEntityTooLarge, err.Error())
	}
	return badRequest(c, field, err.Error())
}

// workLister reads stored work items and their bounded counts.
type workLister interface {
	ListWork(ctx context.Context, f jobs.WorkFilter, before jobs.WorkCursor, limit int) (jobs.WorkPage, error)
	CountWork(ctx context.Context, kind string) (map[jobs.WorkState]jobs.Count, error)
}

// workList is GET /api/work's answer: a page of items and, for the same
// kind, how many items are in each state (bounded by jobs.CountLimit).
type workList struct {
	jobs.WorkPage
	Counts map[jobs.WorkState]jobs.Count `json:"counts"`
}

const (
	workStateMessage  = "state must be one of pending, running, retrying, done, failed, dropped"
	workCursorMessage = "before must be the next value of a previous page"
)

// listWork answers stored work items, newest first:
// ?state=&kind=&before=<next of the previous page>&limit=1..jobs.MaxPage.
func listWork(wl workLister) echo.HandlerFunc {
	return func(c echo.Context) error {
		f := jobs.WorkFilter{State: jobs.WorkState(c.QueryParam("state")), Kind: strings.TrimSpace(c.QueryParam("kind"))}
		if f.State != "" && !jobs.ValidWorkState(f.State) {
			return badRequest(c, "state", workStateMessage)
		}
		if !utf8.ValidString(f.Kind) || len(f.Kind) > 200 {
			return badRequest(c, "kind", "kind must be UTF-8 text of at most 200 bytes")
		}
		before, err := jobs.ParseWorkCursor(c.QueryParam("before"))
		if err != nil {
			return badRequest(c, "before", workCursorMessage)
		}
		limit, ok := pageLimit(c.QueryParam("limit"))
		if !ok {
			return badRequest(c, "limit", limitMessage)
		}
		ctx := c.Request().Context()
		page, err := wl.ListWork(ctx, f, before, limit)
		if err != nil {
			return jobsError(c, err)
		}
		counts, err := wl.CountWork(ctx, f.Kind)
		if err != nil {
			return jobsError(c, err)
		}
		return c.JSON(http.StatusOK, workList{WorkPage: page, Counts: counts})
	}
}

// enqueuedBy names who posted a work item: the caller as authenticated (or
// their role) and the request's id, which the access log and audit carry.
func enqueuedBy(c echo.Context) string {
	p := auth.From(c.Request().Context())
	who := p.Name
	if who == "" {
		who = p.Role.String()
	}
	by := "POST /api/work by " + who
	if id := c.Response().Header().Get(echo.HeaderXRequestID); id != "" {
		by += " (request " + id + ")"
	}
	return by
}
