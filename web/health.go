package web

import (
	"context"
	"net/http"
	"sync"
	"time"

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
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// readyTimeout bounds each check: a database that takes longer to answer
// is not ready.
const readyTimeout = time.Second

// readyz is readiness: 200 when every check passes within readyTimeout,
// else 503 with each failing check's reason.
func readyz(ready func() bool, checks []ReadyCheck) echo.HandlerFunc {
	return func(c echo.Context) error {
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
					mu.Lock()
					reasons[ck.Name] = err.Error()
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
