package web

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/canalhq/canal/internal/audit"
	"github.com/canalhq/canal/templates"
	"github.com/canalhq/canal/web/auth"
	"github.com/labstack/echo/v4"
)

// auditResultKey is where a handler leaves the text of a failed outcome for
// the audit log (the processor's or relay's error).
const auditResultKey = "canal.audit.result"

// auditWhoKey is where the login handlers leave who logged in, since the
// request itself was anonymous.
const auditWhoKey = "canal.audit.who"

// AuditLog stores and lists who did what; *audit.Log is one.
type AuditLog interface {
	Record(ctx context.Context, e audit.Entry) (audit.Entry, error)
	Tally(ctx context.Context, e audit.Entry) (audit.Entry, error)
	List(ctx context.Context, f audit.Filter) (audit.Page, error)
}

// recorder wraps every command and write: it counts it (commands by type
// and result) and stores it in the audit log, refused ones included, then
// tells the hub so open audit pages show it at once. Reads are not
// wrapped: they change nothing.
type recorder struct {
	log     AuditLog // nil: not stored
	hub     *Hub
	metrics *Metrics
	logger  *slog.Logger
	// summarise: the route is a routine, high-volume write (the API's
	// intake); its requests of one caller and outcome in a minute are one
	// row with a count (audit.Log.Tally). A refused one is still its own.
	summarise bool
}

func (rc recorder) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		status := c.Response().Status
		var he *echo.HTTPError
		if errors.As(err, &he) {
			status = he.Code
		} else if err != nil {
			status = http.StatusInternalServerError
		}
		result, detail := audit.ResultOK, ""
		switch {
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			result = audit.ResultDenied
		case status >= 400:
			result = audit.ResultFailed
		}
		if s, ok := c.Get(auditResultKey).(string); ok && s != "" {
			result, detail = audit.ResultFailed, s
		}
		if err != nil && detail == "" {
			detail = err.Error()
		}
		action := commandName(c.Request().Method, c.Path())
		rc.metrics.command(action, result, time.Since(start))
		if rc.log == nil {
			return err
		}
		p := auth.From(c.Request().Context())
		if who, ok := c.Get(auditWhoKey).(auth.Principal); ok {
			p = who
		}
		e := audit.Entry{
			At: start, Who: p.Name, Role: p.Role.String(), Via: p.Via, From: clientAddr(c),
			Action: action, Target: commandTarget(c), Result: result, Status: status, Detail: detail,
			RequestID: c.Response().Header().Get(echo.HeaderXRequestID),
		}
		if e.Who == "" {
			e.Who = "anonymous"
		}
		// The request's context may end with the answer; the record must
		// not.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), 5*time.Second)
		defer cancel()
		store := rc.log.Record
		if rc.summarise && result != audit.ResultDenied {
			store = rc.log.Tally
		}
		stored, aerr := store(ctx, e)
		if errors.Is(aerr, audit.ErrHeld) {
			return err // written when the database is back; the outage is logged once
		}
		if aerr != nil {
			rc.logger.Error("audit record failed", "action", action, "who", e.Who, "err", aerr)
			return err
		}
		if rc.hub != nil {
			rc.hub.PublishAudit(ctx, stored)
		}
		return err
	}
}

// commandName names a write by its route: "/api/jobs/:name/stop" and
// "/ui/jobs/:name/stop" are both jobs.stop; a route without a verb takes
// its method's ("work.post", "outbox.delete").
func commandName(method, route string) string {
	if route == "/login" {
		if method == http.MethodGet {
			return "login.link"
		}
		return "login"
	}
	var parts []string
	for _, seg := range strings.Split(route, "/") {
		if seg == "" || seg == "api" || seg == "ui" || strings.HasPrefix(seg, ":") {
			continue
		}
		parts = append(parts, seg)
	}
	last := route[strings.LastIndex(route, "/")+1:]
	if len(parts) <= 1 || strings.HasPrefix(last, ":") {
		parts = append(parts, strings.ToLower(method))
	}
	return strings.Join(parts, ".")
}

// commandTarget is what a write acted on: a job, a message, a topic.
func commandTarget(c echo.Context) string {
	for _, name := range []string{"name", "id"} {
		if v := c.Param(name); v != "" {
			return v
		}
	}
	if t := c.QueryParam("topic"); t != "" {
		return "topic " + t
	}
	return ""
}

// auditFilter reads the audit page's and API's query.
func auditFilter(c echo.Context, withLimit bool) (audit.Filter, error) {
	f := audit.Filter{Who: c.QueryParam("who"), Action: c.QueryParam("action"), Result: c.QueryParam("result"), Before: c.QueryParam("before")}
	if withLimit {
		if s := c.QueryParam("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > audit.MaxPage {
				return f, errors.New("limit " + strconv.Quote(s) + ": want a whole number from 1 to " + strconv.Itoa(audit.MaxPage))
			}
			f.Limit = n
		}
	}
	f, _, err := audit.ParseFilter(f)
	return f, err
}

// listAudit: GET /api/audit?who=&action=&result=&before=&limit= — newest
// first.
func listAudit(al AuditLog) echo.HandlerFunc {
	return func(c echo.Context) error {
		f, err := auditFilter(c, true)
		if err != nil {
			return badRequest(c, "query", err.Error())
		}
		page, err := al.List(c.Request().Context(), f)
		if errors.Is(err, audit.ErrInvalidFilter) {
			return badRequest(c, "query", err.Error())
		}
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, page)
	}
}

// auditPage: GET /audit, the same, as a live page.
func auditPage(al AuditLog) echo.HandlerFunc {
	return func(c echo.Context) error {
		f, err := auditFilter(c, false)
		if err != nil {
			return badPage(c, "query", err.Error())
		}
		page, err := al.List(c.Request().Context(), f)
		if errors.Is(err, audit.ErrInvalidFilter) {
			return badPage(c, "query", err.Error())
		}
		if err != nil {
			return err
		}
		return render(c, http.StatusOK, templates.AuditPage(templates.AuditFilter{
			Who: f.Who, Action: f.Action, Result: f.Result, Before: f.Before,
		}, page))
	}
}

// onlyWithToken applies m to the login page only when it is a wall link
// (?token=), not to every look at the form.
func onlyWithToken(m echo.MiddlewareFunc) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		wrapped := m(next)
		return func(c echo.Context) error {
			if c.QueryParam("token") != "" {
				return wrapped(c)
			}
			return next(c)
		}
	}
}
