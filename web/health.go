package web

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/canalhq/canal/web/auth"
	"github.com/labstack/echo/v4"
)

// healthz is liveness: 200 whenever this process answers HTTP at all,
// starting, stopping or with its database away. A liveness probe that
// fails gets the process restarted, which would cut a graceful drain short
// and would fix no outage of the database, the relay or the queue: those
// are /readyz's, which takes the process out of a load balancer instead.
func healthz(ready func() bool, started time.Time) echo.HandlerFunc {
	return func(c echo.Context) error {
		status := "ok"
		if !ready() {
			status = "starting or stopping"
		}
		return c.JSON(http.StatusOK, map[string]any{
			"status": status,
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
// authenticated caller on an allowed Host name, its general words for
// anyone else; the errors are logged when the set of failing checks
// changes (see readyLog). /readyz answers any Host (probes ask by
// address), and in open mode every caller is an operator: without the
// Host check, a page of another site resolving to this address would
// read the database's address and user.
func readyz(ready func() bool, checks []ReadyCheck, allowedHost func(string) bool, log *slog.Logger) echo.HandlerFunc {
	var transitions readyLog
	return func(c echo.Context) error {
		detailed := auth.From(c.Request().Context()).Role != auth.Anonymous && allowedHost(c.Request().Host)
		reasons := map[string]string{}
		if !ready() {
			reasons["program"] = "starting or shutting down"
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		errs := map[string]string{}
		if !ready() {
			errs["program"] = reasons["program"]
		}
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
					errs[ck.Name] = err.Error()
					mu.Unlock()
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
		transitions.note(log, errs)
		if len(reasons) > 0 {
			c.Response().Header().Set("Retry-After", retryAfter)
			return c.JSON(http.StatusServiceUnavailable, map[string]any{"status": "not ready", "reasons": reasons})
		}
		return c.JSON(http.StatusOK, map[string]any{"status": "ready"})
	}
}

// readyLog logs readiness on its changes only: a probe asks every few
// seconds, and an outage is one line, not one per probe.
type readyLog struct {
	mu   sync.Mutex
	last string // the failing checks' names, sorted; "" when ready
}

func (r *readyLog) note(log *slog.Logger, errs map[string]string) {
	key := strings.Join(slices.Sorted(maps.Keys(errs)), ",")
	r.mu.Lock()
	changed := key != r.last
	r.last = key
	r.mu.Unlock()
	switch {
	case !changed:
	case key == "":
		log.Info("ready again")
	default:
		log.Warn("not ready", "checks", errs)
	}
}
