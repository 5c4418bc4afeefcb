package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/a-h/templ"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/templates"
	"github.com/labstack/echo/v4"
	"golang.org/x/sync/singleflight"
)

// Narrow fragment endpoints: each serves one live region of a page (a list,
// a message, a job's runs, a work item) and runs only that region's query,
// never the whole page. static/canal.js reads a region from its
// data-live-src when the hub says what it shows changed.
//
// Viewers of the same region share one answer per state of the hub: the
// first request after a change runs the query, the others (concurrent, or
// later at the same hub sequence number) get the same bytes. So 1 and 100
// open pages cost the database the same.

// fragmentCacheSize bounds the regions remembered (distinct URLs).
const fragmentCacheSize = 512

type fragment struct {
	seq    uint64
	status int
	body   []byte
}

// fragments is the shared answer cache of the fragment endpoints.
type fragments struct {
	hub     *Hub
	flights singleflight.Group
	mu      sync.Mutex
	last    map[string]fragment
}

func newFragments(h *Hub) *fragments {
	return &fragments{hub: h, last: map[string]fragment{}}
}

// serve answers the fragment at the request's URL: the one already made at
// the hub's current sequence number, or make's, made once for everyone
// asking now. make returns the status and the component to render.
func (fs *fragments) serve(c echo.Context, make func(ctx context.Context) (int, templ.Component, error)) error {
	ctx := c.Request().Context()
	seq, err := fs.hub.Seq(ctx)
	if err != nil {
		return jsonError(c, http.StatusServiceUnavailable, err.Error())
	}
	key := c.Request().URL.RequestURI()
	fs.mu.Lock()
	f, ok := fs.last[key]
	fs.mu.Unlock()
	if !ok || f.seq != seq {
		v, err, _ := fs.flights.Do(key+"\x00"+strconv.FormatUint(seq, 10), func() (any, error) {
			// Not the caller's context: others wait on this answer.
			rctx := context.WithoutCancel(ctx)
			status, comp, err := make(rctx)
			if err != nil {
				return nil, err
			}
			var buf bytes.Buffer
			if err := comp.Render(rctx, &buf); err != nil {
				return nil, err
			}
			f := fragment{seq: seq, status: status, body: buf.Bytes()}
			fs.mu.Lock()
			if len(fs.last) >= fragmentCacheSize {
				clear(fs.last)
			}
			fs.last[key] = f
			fs.mu.Unlock()
			return f, nil
		})
		if err != nil {
			return err
		}
		f = v.(fragment)
	}
	return c.HTMLBlob(f.status, f.body)
}

// outboxListFragment: GET /fragments/outbox?status=&topic=&key=&before=.
func outboxListFragment(fs *fragments, ob outboxLister, routes []templates.Route) echo.HandlerFunc {
	return func(c echo.Context) error {
		f, lf, field, bad := outboxFilter(c)
		if bad != "" {
			return badRequest(c, field, bad)
		}
		return fs.serve(c, func(ctx context.Context) (int, templ.Component, error) {
			page, err := ob.List(ctx, lf)
			if err != nil {
				return 0, nil, err
			}
			return http.StatusOK, templates.OutboxTable(f, page, routes), nil
		})
	}
}

// outboxMessageFragment: GET /fragments/outbox/:id (404 once it is gone).
func outboxMessageFragment(fs *fragments, ob outboxGetter) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Param("id")
		return fs.serve(c, func(ctx context.Context) (int, templ.Component, error) {
			rec, err := ob.Get(ctx, id)
			if errors.Is(err, outbox.ErrNotFound) {
				return http.StatusNotFound, templates.Result(false, "message "+id+" no longer exists"), nil
			}
			if err != nil {
				return 0, nil, err
			}
			return http.StatusOK, templates.OutboxMessageBody(rec), nil
		})
	}
}

// workListFragment: GET /fragments/work?state=&kind=&before=.
func workListFragment(fs *fragments, wl workLister) echo.HandlerFunc {
	return func(c echo.Context) error {
		f := templates.WorkFilter{State: jobs.WorkState(c.QueryParam("state")), Kind: strings.TrimSpace(c.QueryParam("kind")), Before: c.QueryParam("before")}
		if f.State != "" && !jobs.ValidWorkState(f.State) {
			return badRequest(c, "state", "unknown work state "+strconv.Quote(string(f.State)))
		}
		if len(f.Kind) > maxKindLen {
			return badRequest(c, "kind", kindMessage)
		}
		before, err := jobs.ParseWorkCursor(f.Before)
		if err != nil {
			return badRequest(c, "before", err.Error())
		}
		return fs.serve(c, func(ctx context.Context) (int, templ.Component, error) {
			page, err := wl.ListWork(ctx, jobs.WorkFilter{State: f.State, Kind: f.Kind}, before, 0)
			if err != nil {
				return 0, nil, err
			}
			counts, err := wl.CountWork(ctx, f.Kind)
			if err != nil {
				return 0, nil, err
			}
			return http.StatusOK, templates.WorkList(counts, f, page), nil
		})
	}
}

// workItemFragment: GET /fragments/work/:id (404 once it is gone).
func workItemFragment(fs *fragments, wg workDetail, actions bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Param("id")
		return fs.serve(c, func(ctx context.Context) (int, templ.Component, error) {
			it, atts, err := workWithAttempts(ctx, wg, id)
			if errors.Is(err, jobs.ErrUnknownWork) {
				return http.StatusNotFound, templates.Result(false, "work item "+id+" no longer exists"), nil
			}
			if err != nil {
				return 0, nil, err
			}
			return http.StatusOK, templates.WorkItemBody(it, atts, actions), nil
		})
	}
}

// jobRunsFragment: GET /fragments/jobs/:name/runs, the newest page.
func jobRunsFragment(fs *fragments, rl runLister) echo.HandlerFunc {
	return func(c echo.Context) error {
		name := c.Param("name")
		return fs.serve(c, func(ctx context.Context) (int, templ.Component, error) {
			page, err := rl.Runs(ctx, name, 0, 0)
			if errors.Is(err, jobs.ErrUnknownJob) {
				return http.StatusNotFound, templates.Result(false, "no job "+name), nil
			}
			if err != nil {
				return 0, nil, err
			}
			return http.StatusOK, templates.JobRuns(name, page, 0), nil
		})
	}
}

// outboxFilter reads the outbox list's query, for its page and its
// fragment alike; bad says what is wrong with it.
func outboxFilter(c echo.Context) (f templates.OutboxFilter, lf outbox.ListFilter, field, bad string) {
	f = templates.OutboxFilter{
		Status: c.QueryParam("status"),
		Topic:  strings.TrimSpace(c.QueryParam("topic")),
		Key:    strings.TrimSpace(c.QueryParam("key")),
		Before: c.QueryParam("before"),
	}
	lf = outbox.ListFilter{Topic: f.Topic, Key: f.Key}
	if msg := checkTopic(f.Topic); msg != "" {
		return f, lf, "topic", msg
	}
	if len(f.Key) > maxTopicLen {
		return f, lf, "key", fmt.Sprintf("key longer than %d bytes", maxTopicLen)
	}
	if f.Status != "" {
		st, ok := outbox.ParseStatus(f.Status)
		if !ok {
			return f, lf, "status", statusMessage(f.Status)
		}
		lf.Status = st
	}
	if f.Before != "" {
		before, ok := outbox.ParseCursor(f.Before)
		if !ok {
			return f, lf, "before", outboxCursorMessage(f.Before)
		}
		lf.Before = before
	}
	return f, lf, "", ""
}
