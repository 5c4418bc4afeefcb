package web

import (
	"context"
	"net/http"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/templates"
	"github.com/labstack/echo/v4"
)

// readProcesses reads the process list now (nil lister: none).
func readProcesses(ctx context.Context, l ProcessLister) templates.Processes {
	p := templates.Processes{At: time.Now().UTC()}
	if l == nil {
		return p
	}
	list, err := l.List(ctx)
	if err != nil {
		p.Error = "could not read the processes: " + err.Error()
		return p
	}
	p.List = list
	return p
}

// listProcesses: GET /api/processes, every process sharing the database
// with its heartbeat, lost or not. A failed read is 503 with the reason.
func listProcesses(l ProcessLister) echo.HandlerFunc {
	return func(c echo.Context) error {
		p := readProcesses(c.Request().Context(), l)
		if p.Error != "" {
			return jsonError(c, http.StatusServiceUnavailable, p.Error)
		}
		if p.List == nil {
			p.List = []queue.ProcessInfo{}
		}
		return c.JSON(http.StatusOK, map[string]any{
			"processes": p.List, "at": p.At, "lostAfterHeartbeats": queue.LostAfter,
		})
	}
}

// processesPage: GET /processes, the same as a live page (the hub re-sends
// the table as it re-reads the list).
func processesPage(l ProcessLister) echo.HandlerFunc {
	return func(c echo.Context) error {
		return render(c, http.StatusOK, templates.ProcessesPage(readProcesses(c.Request().Context(), l)))
	}
}

// processView copies the hub's last reading out.
func (h *Hub) processView(st *hubState) templates.Processes {
	return templates.Processes{List: append([]queue.ProcessInfo(nil), st.procs.list...), At: st.procs.at, Error: st.procs.err}
}
