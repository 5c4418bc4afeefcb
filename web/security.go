package web

import (
	"io/fs"
	"net"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// LoopbackHosts are the Host names allowed when no others are configured.
var LoopbackHosts = []string{"localhost", "127.0.0.1", "::1"}

// hostGuard refuses requests whose Host header allowed refuses (see
// hostPolicy). A DNS-rebinding page reaches Canal
// with its own name in Host, so this is what stops it, on every route and on
// the WebSockets; only the health checks, which load balancers probe by
// address, are left out.
func hostGuard(allowed func(host string) bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			switch c.Request().URL.Path {
			case "/healthz", "/readyz":
				return next(c)
			}
			if !allowed(c.Request().Host) {
				return deny(c, http.StatusForbidden, "host "+quoteHost(c.Request().Host)+" is not allowed: add it to -allowed-hosts")
			}
			return next(c)
		}
	}
}

// hostPolicy reports whether a request's Host header names this dashboard:
// a loopback name or one of hosts ("*" allows any).
func hostPolicy(hosts []string) func(host string) bool {
	allowed := map[string]bool{}
	for _, h := range append(append([]string{}, LoopbackHosts...), hosts...) {
		h = strings.ToLower(strings.TrimSpace(h))
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host // a port in the list would never match: names are compared
		}
		if h == "*" {
			return func(string) bool { return true }
		}
		allowed[strings.Trim(h, "[]")] = true
	}
	return func(host string) bool {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		return allowed[strings.ToLower(strings.Trim(host, "[]"))]
	}
}

// quoteHost shows at most 100 bytes of a hostile Host header.
func quoteHost(h string) string {
	if len(h) > 100 {
		h = h[:100] + "…"
	}
	return "\"" + strings.ToValidUTF8(h, "?") + "\""
}

// contentSecurityPolicy allows only Canal's own embedded scripts and styles.
// htmx 2 needs no eval unless hx-on or js: are used (Canal uses neither, and
// the layout sets allowEval false), and it injects no <style> once
// includeIndicatorStyles is false; the pages' few style attributes (bar
// widths, number sizes) are allowed, <style> elements are not.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src-elem 'self'; style-src-attr 'unsafe-inline'; " +
	"img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// securityHeaders sets the headers every answer carries.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		return next(c)
	}
}

// staticFiles serves the embedded assets without directory listings: a
// directory (or a path ending in /) is a 404.
func staticFiles(fsys fs.FS) echo.HandlerFunc {
	files := http.StripPrefix("/static/", http.FileServerFS(fsys))
	return func(c echo.Context) error {
		name := strings.TrimPrefix(c.Request().URL.Path, "/static/")
		if st, err := fs.Stat(fsys, name); name == "" || strings.HasSuffix(name, "/") || err != nil || st.IsDir() {
			return jsonError(c, http.StatusNotFound, "no such file")
		}
		files.ServeHTTP(c.Response(), c.Request())
		return nil
	}
}
