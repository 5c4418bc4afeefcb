package web

import (
	"net/http"
	"strings"

	"github.com/canalhq/canal/templates"
	"github.com/labstack/echo/v4"
)

// Mounted under a prefix (Deps.Prefix, "/canal"), the dashboard sees every
// request with the prefix taken off, so its routes and checks are the same
// as at the root; everything it sends back (pages, fragments, redirects,
// cookies) puts the prefix on again through templates.Path.

// mountAt runs before routing: it takes prefix off the request's path and
// puts it in the request's context, answers the bare prefix with a redirect
// to prefix + "/", and anything outside the prefix with 404.
func mountAt(prefix string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.URL.Path == prefix {
				u := prefix + "/"
				if r.URL.RawQuery != "" {
					u += "?" + r.URL.RawQuery
				}
				return c.Redirect(http.StatusMovedPermanently, u)
			}
			rest, ok := strings.CutPrefix(r.URL.Path, prefix+"/")
			if !ok {
				return echo.ErrNotFound
			}
			r2 := r.Clone(templates.WithPrefix(r.Context(), prefix))
			r2.URL.Path = "/" + rest
			if r.URL.RawPath != "" {
				raw, ok := strings.CutPrefix(r.URL.RawPath, prefix+"/")
				if !ok {
					return echo.ErrNotFound
				}
				r2.URL.RawPath = "/" + raw
			}
			c.SetRequest(r2)
			return next(c)
		}
	}
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
