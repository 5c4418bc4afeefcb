package web

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/canalhq/canal/templates"
	"github.com/labstack/echo/v4"
)

// Mounted under a prefix (Deps.Prefix, "/canal"), the dashboard sees every
// request with the prefix taken off, so its routes and checks are the same
// as at the root; everything it sends back (pages, fragments, redirects,
// cookies) puts the prefix on again through templates.Path.

// mountAt serves h under prefix: the prefix is taken off each request's
// path (a copy of the request, as http.StripPrefix makes) and put in its
// context; the bare prefix is redirected to prefix + "/", and anything
// outside the prefix is not found.
func mountAt(prefix string, h http.Handler, log *slog.Logger) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(log)
	inner := http.StripPrefix(prefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(templates.WithPrefix(r.Context(), prefix)))
	}))
	e.Any(prefix+"/*", echo.WrapHandler(inner))
	e.Any(prefix, func(c echo.Context) error {
		u := prefix + "/"
		if q := c.Request().URL.RawQuery; q != "" {
			u += "?" + q
		}
		return c.Redirect(http.StatusMovedPermanently, u)
	})
	return e
}

// redirect sends the browser to path, a path of the dashboard.
func redirect(c echo.Context, path string) error {
	return c.Redirect(http.StatusSeeOther, templates.Path(c.Request().Context(), path))
}

// cookiePath keeps the dashboard's cookies to its own paths: "/" at the
// root, the prefix when mounted (which the browser sends to /canal and
// /canal/…, not to /canalx or the rest of the service).
func cookiePath(c echo.Context) string {
	if p := templates.Prefix(c.Request().Context()); p != "" {
		return p
	}
	return "/"
}

// appPath is a browser path of this dashboard as a path of its own routes
// (the prefix taken off); false if it is not one of the dashboard's.
func appPath(c echo.Context, browserPath string) (string, bool) {
	p := templates.Prefix(c.Request().Context())
	if p == "" {
		return browserPath, true
	}
	rest, ok := strings.CutPrefix(browserPath, p+"/")
	if !ok {
		return "", false
	}
	return "/" + rest, true
}
