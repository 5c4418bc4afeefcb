package web

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// healthz answers 200 once the program is ready and 503 before (or while it
// shuts down), so a test or a load balancer can poll it.
func healthz(ready func() bool, started time.Time) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !ready() {
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "starting"})
		}
		return c.JSON(http.StatusOK, map[string]any{
			"status": "ok",
			"uptime": time.Since(started).Round(time.Second).String(),
		})
	}
}
