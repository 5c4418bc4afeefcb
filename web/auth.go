package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/canalhq/canal/templates"
	"github.com/canalhq/canal/web/auth"
	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

// Access is who may reach the dashboard and what they may do.
type Access struct {
	// Authenticator says who a request is (*auth.Tokens, or a team's
	// SSO). Nil means open: every request that passes the Host check is
	// an operator named "local", Canal's default on loopback with no
	// tokens configured.
	Authenticator auth.Authenticator
	// Login serves /login, where a typed token becomes a session cookie;
	// *auth.Tokens is one. Nil leaves the login page out.
	Login Login
	// Hosts are the Host names allowed besides the loopback names; "*"
	// allows any.
	Hosts []string
	// FailedLogins is how many failed logins a client address may make
	// per minute (default 10).
	FailedLogins int
	// TrustedProxies are the addresses of the reverse proxies in front of
	// Canal: a request from one of them is its client's, read from
	// X-Forwarded-For (the nearest entry that is not a trusted proxy), for
	// the login limit, the audit log and the request log. None (the
	// default): every request is its connection's address, and the header
	// is ignored, since any client can send it.
	TrustedProxies []*net.IPNet
}

// ipExtractor reads a request's client address as Access says.
func (a Access) ipExtractor() echo.IPExtractor {
	if len(a.TrustedProxies) == 0 {
		return echo.ExtractIPDirect()
	}
	// Echo trusts loopback and private addresses unless told not to: only
	// the configured proxies are.
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range a.TrustedProxies {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// Login checks a secret typed on the login page and makes sessions.
type Login interface {
	Check(secret string) (auth.Principal, bool)
	NewSession(p auth.Principal, long bool) (value string, ttl time.Duration)
}

// csrfCookie holds the double-submit token: a browser write must send the
// same value in the X-CSRF-Token header (htmx, set by canal.js from the
// page's meta tag) or the csrf form field (forms without JavaScript).
const (
	csrfCookie = "canal_csrf"
	csrfHeader = "X-CSRF-Token"
	csrfField  = "csrf"
)

// identify puts the request's principal and CSRF token in its context. A
// wrong Bearer token is refused at once (401) and counts as a failed login
// of its address (429 once they are spent, right tokens too, or a guesser
// would learn from the answer); a missing or stale session leaves the
// request anonymous, for the route to decide.
func (a Access) identify(lim *loginLimiter) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.URL.Path == "/healthz" { // probes carry no credentials
				return next(c)
			}
			p := auth.Principal{Name: "local", Role: auth.Operator, Via: "open"}
			if a.Authenticator != nil {
				addr := clientAddr(c)
				if r.Header.Get("Authorization") != "" && lim.blocked(addr) {
					return deny(c, http.StatusTooManyRequests, "too many failed logins from this address: wait a minute")
				}
				var err error
				p, err = a.Authenticator.Authenticate(r)
				switch {
				case errors.Is(err, auth.ErrNoCredentials):
					p = auth.Principal{Name: "anonymous"}
				case err != nil:
					lim.failed(addr)
					c.Response().Header().Set("WWW-Authenticate", `Bearer realm="canal"`)
					return deny(c, http.StatusUnauthorized, "authentication failed: "+err.Error())
				}
			}
			ctx := auth.WithPrincipal(r.Context(), p)
			// /readyz is identified (an operator sees the details of a
			// failure) but sets no CSRF cookie on probes.
			if isPage(c) && r.URL.Path != "/readyz" {
				ctx = auth.WithCSRF(ctx, csrfToken(c))
			}
			c.SetRequest(r.WithContext(ctx))
			return next(c)
		}
	}
}

// csrfToken returns the browser's CSRF token, setting the cookie on the
// first visit.
func csrfToken(c echo.Context) string {
	if ck, err := c.Cookie(csrfCookie); err == nil && len(ck.Value) >= 32 {
		return ck.Value
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	c.SetCookie(&http.Cookie{
		Name: csrfCookie, Value: tok, Path: cookiePath(c), HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: isTLS(c.Request()),
	})
	// This request's own cookie is not the new one: it has none to match.
	return tok
}

func isTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// require admits principals with at least role; for operators' routes it
// also checks the CSRF token of browser writes. An anonymous browser is sent
// to the login page when there is one.
func (a Access) require(role auth.Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p := auth.From(c.Request().Context())
			switch {
			case p.Role == auth.Anonymous:
				if a.Login != nil && isPage(c) && c.Request().Method == http.MethodGet {
					return redirect(c, "/login?next="+url.QueryEscape(c.Request().URL.RequestURI()))
				}
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="canal"`)
				return deny(c, http.StatusUnauthorized, "log in first: send Authorization: Bearer <token>, or log in at /login")
			case p.Role < role:
				return deny(c, http.StatusForbidden, "forbidden: "+p.Name+" is a "+p.Role.String()+"; this needs the "+role.String()+" role")
			}
			if !unsafeMethod(c.Request().Method) || !needsCSRF(c.Request(), p) {
				return next(c)
			}
			if !csrfMatches(c) {
				return deny(c, http.StatusForbidden, "missing or wrong CSRF token: reload the page and try again")
			}
			return next(c)
		}
	}
}

func unsafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// needsCSRF: a write made with ambient credentials (a session cookie, or
// the open loopback mode) by a browser. A Bearer token is not ambient: a
// page on another site cannot make a browser send it. A program without a
// cookie, Origin or Sec-Fetch-Site is not a browser.
func needsCSRF(r *http.Request, p auth.Principal) bool {
	if p.Via == "bearer" {
		return false
	}
	return p.Via == "session" || r.Header.Get("Cookie") != "" || r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != ""
}

// csrfMatches compares the cookie with the header or form field.
func csrfMatches(c echo.Context) bool {
	ck, err := c.Cookie(csrfCookie)
	if err != nil || ck.Value == "" {
		return false
	}
	sent := c.Request().Header.Get(csrfHeader)
	if sent == "" && strings.HasPrefix(c.Request().Header.Get(echo.HeaderContentType), echo.MIMEApplicationForm) {
		// Bounded: a form post is small.
		c.Request().Body = http.MaxBytesReader(c.Response(), c.Request().Body, maxBody)
		sent = c.FormValue(csrfField)
	}
	return sent != "" && subtle.ConstantTimeCompare([]byte(sent), []byte(ck.Value)) == 1
}

// isPage: an HTML route (not the JSON API, the sockets or the metrics).
func isPage(c echo.Context) bool {
	p := c.Request().URL.Path
	return !strings.HasPrefix(p, "/api/") && !strings.HasPrefix(p, "/ws") && p != "/metrics"
}

// deny answers a refusal in the form the caller reads: the result line of
// a button (htmx), an error page (a form post or a page), or JSON.
func deny(c echo.Context, status int, msg string) error {
	switch {
	case strings.HasPrefix(c.Request().URL.Path, "/ui/") && c.Request().Header.Get("HX-Request") != "":
		return render(c, status, templates.Result(false, msg))
	case isPage(c) && strings.Contains(c.Request().Header.Get("Accept"), "text/html"):
		return render(c, status, templates.Problem(status, msg, "/"))
	}
	return jsonError(c, status, msg)
}

// loginLimiter bounds failed logins per client address. Its map is
// trimmed when it grows past maxLoginClients, so a flood of addresses
// cannot grow it without bound.
type loginLimiter struct {
	mu      sync.Mutex
	perMin  int
	clients map[string]*rate.Limiter
}

const maxLoginClients = 10000

func newLoginLimiter(perMin int) *loginLimiter {
	if perMin <= 0 {
		perMin = 10
	}
	return &loginLimiter{perMin: perMin, clients: map[string]*rate.Limiter{}}
}

// blocked reports whether addr has no failed login left for now.
func (l *loginLimiter) blocked(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.clients[addr]
	return ok && lim.Tokens() < 1
}

// failed spends one of addr's failed logins.
func (l *loginLimiter) failed(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.clients[addr]
	if !ok {
		if len(l.clients) >= maxLoginClients {
			clear(l.clients)
		}
		lim = rate.NewLimiter(rate.Every(time.Minute/time.Duration(l.perMin)), l.perMin)
		l.clients[addr] = lim
	}
	lim.Allow()
}

// clientAddr is the request's client IP: its connection's, or behind a
// trusted proxy the one the proxy names (Access.TrustedProxies, set as
// the router's IPExtractor).
func clientAddr(c echo.Context) string { return c.RealIP() }

// safeNext keeps a post-login redirect on this site: a path, not "//host".
// Browsers drop tabs and newlines from a Location and read "\\" as "/", so
// "/\t/evil.example" would leave: control bytes and backslashes are refused.
func safeNext(next, fallback string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.ContainsRune(next, '\\') {
		return fallback
	}
	for i := 0; i < len(next); i++ {
		if next[i] < 0x20 || next[i] == 0x7f {
			return fallback
		}
	}
	return next
}

// loginPage: GET /login shows the form. With ?token= (a wall screen's
// viewer link) it logs the screen in for a long session and goes on to
// next (the wall by default); operator tokens are refused there, since a
// link ends up in browser history.
func loginPage(a Access, lim *loginLimiter) echo.HandlerFunc {
	return func(c echo.Context) error {
		next := safeNext(c.QueryParam("next"), "/")
		if a.Login == nil {
			return render(c, http.StatusOK, templates.LoginPage(next, "", a.Authenticator == nil))
		}
		tok := c.QueryParam("token")
		if tok == "" {
			return render(c, http.StatusOK, templates.LoginPage(next, "", false))
		}
		addr := clientAddr(c)
		if lim.blocked(addr) {
			return render(c, http.StatusTooManyRequests, templates.LoginPage(next, "Too many failed logins: wait a minute.", false))
		}
		p, ok := a.Login.Check(tok)
		if !ok {
			lim.failed(addr)
			return render(c, http.StatusUnauthorized, templates.LoginPage(next, "That link's token is not valid.", false))
		}
		if p.Role != auth.Viewer {
			return render(c, http.StatusBadRequest, templates.LoginPage(next, "Only a viewer token may be used in a link; type an operator token in the form.", false))
		}
		p.Via = "link"
		c.Set(auditWhoKey, p)
		setSession(c, a.Login, p, true)
		return redirect(c, safeNext(c.QueryParam("next"), "/wall"))
	}
}

// loginSubmit: POST /login with the form's token (and its CSRF field).
func loginSubmit(a Access, lim *loginLimiter) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Request().Body = http.MaxBytesReader(c.Response(), c.Request().Body, 64<<10)
		next := safeNext(c.FormValue("next"), "/")
		if !csrfMatches(c) {
			return render(c, http.StatusForbidden, templates.LoginPage(next, "The form expired: try again.", false))
		}
		addr := clientAddr(c)
		if lim.blocked(addr) {
			return render(c, http.StatusTooManyRequests, templates.LoginPage(next, "Too many failed logins: wait a minute.", false))
		}
		p, ok := a.Login.Check(c.FormValue("token"))
		if !ok {
			lim.failed(addr)
			return render(c, http.StatusUnauthorized, templates.LoginPage(next, "That token is not valid.", false))
		}
		p.Via = "login"
		c.Set(auditWhoKey, p)
		setSession(c, a.Login, p, false)
		return redirect(c, next)
	}
}

func setSession(c echo.Context, l Login, p auth.Principal, long bool) {
	v, ttl := l.NewSession(p, long)
	c.SetCookie(&http.Cookie{
		Name: auth.SessionCookie, Value: v, Path: cookiePath(c), MaxAge: int(ttl.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: isTLS(c.Request()),
	})
}

// logout: POST /logout ends the browser's session.
func logout(c echo.Context) error {
	c.SetCookie(&http.Cookie{
		Name: auth.SessionCookie, Value: "", Path: cookiePath(c), MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: isTLS(c.Request()),
	})
	return redirect(c, "/login")
}
