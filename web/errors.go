package web

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/canalhq/canal/internal/outage"

	"github.com/labstack/echo/v4"
)

// apiError is the JSON body of every 4xx and 5xx answer: what went wrong and,
// for bad input, which field.
type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// badRequest answers 400 naming the field at fault.
func badRequest(c echo.Context, field, msg string) error {
	return c.JSON(http.StatusBadRequest, apiError{Error: msg, Field: field})
}

// jsonError answers status with a message.
func jsonError(c echo.Context, status int, msg string) error {
	return c.JSON(status, apiError{Error: msg})
}

// msgDatabaseUnavailable answers a request that needed the database while
// it is away.
const msgDatabaseUnavailable = "database unavailable: try again in a few seconds"

// errorHandler turns errors that escaped a handler into JSON. Echo's own
// errors (404 for an unknown route, 405, a malformed body) keep their status;
// an error that says the database is away is a 503 (a page for a browser,
// JSON otherwise); anything else is a 500 that is logged, with no
// internals in the body.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		var he *echo.HTTPError
		if errors.As(err, &he) {
			msg := http.StatusText(he.Code)
			if s, ok := he.Message.(string); ok && s != "" {
				msg = s
			}
			if he.Code >= 500 {
				log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
			}
			_ = c.JSON(he.Code, apiError{Error: msg})
			return
		}
		if outage.Unavailable(err) {
			// Not the server's fault nor the caller's: the database is
			// away (the log says so once, see internal/outage).
			c.Response().Header().Set("Retry-After", retryAfter)
			_ = deny(c, http.StatusServiceUnavailable, msgDatabaseUnavailable)
			return
		}
		log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
		_ = c.JSON(http.StatusInternalServerError, apiError{Error: "internal error"})
	}
}

// wellFormedQuery answers 400 for a query string Go cannot parse ("%%%"):
// the parser would drop the bad pair, and the request would be served as
// if the filter had not been asked for. So it does for a name or value
// that is not UTF-8 text or holds a NUL: no filter means such bytes, and
// PostgreSQL refuses them in a query's text (SQLSTATE 22021), which
// would be a 500.
func wellFormedQuery(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		q, err := url.ParseQuery(c.Request().URL.RawQuery)
		if err != nil {
			return badQuery(c, "query", "malformed query string: "+err.Error())
		}
		for name, values := range q {
			if !plainText(name) {
				return badQuery(c, "query", "query parameter names must be UTF-8 text without NUL")
			}
			for _, v := range values {
				if !plainText(v) {
					return badQuery(c, name, name+": want UTF-8 text without NUL")
				}
			}
		}
		return next(c)
	}
}

// maxKindLen bounds a kind filter, as the work API does.
const (
	maxKindLen  = 200
	kindMessage = "kind must be UTF-8 text of at most 200 bytes"
)

// plainText reports whether s is UTF-8 without NUL, text any database
// takes.
func plainText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// badQuery answers a bad query in the form its caller reads: an error
// page for a page, JSON for the API.
func badQuery(c echo.Context, field, msg string) error {
	if isPage(c) {
		return badPage(c, field, msg)
	}
	return badRequest(c, field, msg)
}
