package web

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"regexp"
	"time"

	"github.com/canalhq/canal/web/auth"
	"github.com/labstack/echo/v4"
)

// requestIDRE is what an incoming X-Request-Id may be to be kept (a proxy's
// id ties its logs to ours); anything else is replaced.
var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// accessLog gives every request an id (X-Request-Id, in the answer too)
// and writes one line per request when it ends: never the query string,
// which may carry a wall screen's login token, nor any header.
func accessLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			id := c.Request().Header.Get(echo.HeaderXRequestID)
			if !requestIDRE.MatchString(id) {
				b := make([]byte, 8)
				_, _ = rand.Read(b)
				id = hex.EncodeToString(b)
			}
			c.Response().Header().Set(echo.HeaderXRequestID, id)
			err := next(c)
			if err != nil {
				c.Error(err) // answered now, so the line below has its status
			}
			r := c.Request()
			level := slog.LevelInfo
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
				level = slog.LevelDebug // probed every few seconds
			}
			p := auth.From(r.Context())
			log.LogAttrs(r.Context(), level, "request",
				slog.String("request_id", id),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.String("route", c.Path()),
				slog.Int("status", c.Response().Status),
				slog.Int64("bytes", c.Response().Size),
				slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
				slog.String("remote", clientAddr(c)),
				slog.String("who", p.Name),
			)
			return nil
		}
	}
}
