package web

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/canalhq/canal/web/auth"
	"github.com/labstack/echo/v4"
)

// healthz is liveness: 200 once the program has started, 503 while it
// starts or stops, and nothing else; the database, the relay and the queue
// are /readyz's, since restarting the process would fix none of them.
func healthz(ready func() bool, started time.Time) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !ready() {
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "starting or stopping"})
		}
		return c.JSON(http.StatusOK, map[string]any{
			"status": "ok",
			"uptime": time.Since(started).Round(time.Second).String(),
		})
	}
}

// ReadyCheck is one thing /readyz asks; Check returns why it is not ready.
// Down says so in general words for anonymous callers (probes), who must
// not learn connection details (user, database, host:port) from the
// error; "" is "<Name> not ready".
type ReadyCheck struct {
	Name  string
	Down  string
	Check func(ctx context.Context) error
}

// readyTimeout bounds each check: a database that takes longer to answer
// is not ready.
const readyTimeout = time.Second

// readyz is readiness: 200 when every check passes within readyTimeout,
// else 503 with each failing check's reason: its error for an
// authenticated caller, its general words for an anonymous one; the error
// is logged either way.
func readyz(ready func() bool, checks []ReadyCheck, log *slog.Logger) echo.HandlerFunc {
	return func(c echo.Context) error {
		detailed := auth.From(c.Request().Context()).Role != auth.Anonymous
		reasons := map[string]string{}
		if !ready() {
			reasons["program"] = "starting or shutting down"
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, ck := range checks {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- ck.Check(ctx) }()
				var err error
				select {
				case err = <-done:
				case <-ctx.Done():
					err = ctx.Err()
				}
				if err != nil {
					log.Warn("not ready", "check", ck.Name, "err", err)
					why := err.Error()
					if !detailed {
						why = cmp.Or(ck.Down, ck.Name+" not ready")
					}
					mu.Lock()
					reasons[ck.Name] = why
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(reasons) > 0 {
			c.Response().Header().Set("Retry-After", retryAfter)
			return c.JSON(http.StatusServiceUnavailable, map[string]any{"status": "not ready", "reasons": reasons})
		}
		return c.JSON(http.StatusOK, map[string]any{"status": "ready"})
	}
}
