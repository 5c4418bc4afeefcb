package web

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/canalhq/canal/web/auth"
	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"
)

var errHubStopped = errors.New("hub stopped")

// WSConfig bounds every WebSocket connection.
type WSConfig struct {
	// OriginPatterns are extra allowed Origin hosts (the server's own host
	// is always allowed), in coder/websocket's pattern form.
	OriginPatterns []string
	WriteTimeout   time.Duration // default 5s
	PingEvery      time.Duration // default 20s
	ReadLimit      int64         // default 4 KiB: browsers only send control frames
}

func (c *WSConfig) defaults() {
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.PingEvery <= 0 {
		c.PingEvery = 20 * time.Second
	}
	if c.ReadLimit <= 0 {
		c.ReadLimit = 4 << 10
	}
}

// serveWS upgrades the request and hands the connection to the hub: /ws
// speaks HTML fragments (the wall's with ?view=wall), /ws/events JSON frames.
// The handler goroutine is the connection's only writer.
func serveWS(h *Hub, cfg WSConfig, log *slog.Logger, json bool) echo.HandlerFunc {
	cfg.defaults()
	return func(c echo.Context) error {
		v := viewPage
		if !auth.CanOperate(c.Request().Context()) {
			v = viewPageRO
		}
		switch {
		case json:
			v = viewJSON
		case c.QueryParam("view") == "wall":
			v = viewWall
		case c.QueryParam("view") != "":
			return echo.NewHTTPError(http.StatusBadRequest, "view must be empty or wall")
		}
		// The server's read and write timeouts bound ordinary requests;
		// a socket lives for hours and bounds each write itself.
		rc := http.NewResponseController(c.Response())
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		// Every view says what it shows (none: everything).
		tp, err := parseTopics(c.QueryParam("topics"))
		if err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, err.Error())
		}
		// Accept checks the Origin against the request's own host and the
		// allow-list, and answers 403 itself.
		conn, err := websocket.Accept(c.Response(), c.Request(), &websocket.AcceptOptions{
			OriginPatterns:  cfg.OriginPatterns,
			CompressionMode: websocket.CompressionDisabled, // ~1.2 MB per connection otherwise
		})
		if err != nil {
			log.Debug("websocket accept", "err", err)
			return nil
		}
		defer conn.CloseNow() // a no-op after a clean close
		conn.SetReadLimit(cfg.ReadLimit)
		// Not r.Context(): it is not tied to the connection after Accept.
		ctx := conn.CloseRead(context.Background())

		cl := newClient(v, h.cfg.ClientBuffer)
		cl.topics = tp
		select {
		case h.register <- cl:
		case <-h.done:
			conn.Close(websocket.StatusServiceRestart, "server restarting")
			return nil
		}
		// A peer whose writes time out stopped reading: it is closed
		// (without a close frame, which could not get through either) and
		// counted with the slow clients the hub closes with 1013.
		cl.timedOut = writeLoop(ctx, conn, cl, cfg)
		select {
		case h.unregister <- cl:
		case <-h.done:
		}
		return nil
	}
}

// writeLoop writes the client's frames until the hub drops it or the
// peer goes away; every write and ping has a deadline, so a peer that stops
// reading cannot hold the goroutine. It reports whether it gave up because a
// write or ping timed out while the peer was still connected.
func writeLoop(ctx context.Context, conn *websocket.Conn, cl *client, cfg WSConfig) (timedOut bool) {
	ping := time.NewTicker(cfg.PingEvery)
	defer ping.Stop()
	for {
		// A client the hub dropped is closed at once, not after the
		// frames still queued for it.
		select {
		case <-cl.quit:
			conn.Close(cl.closeCode, cl.reason)
			return false
		default:
		}
		select {
		case <-cl.quit:
			conn.Close(cl.closeCode, cl.reason)
			return false
		case frame := <-cl.send:
			if cl.view != viewJSON {
				frame = joinQueued(frame, cl.send)
			}
			wctx, cancel := context.WithTimeout(ctx, cfg.WriteTimeout)
			err := conn.Write(wctx, websocket.MessageText, frame)
			expired := deadlineHit(wctx)
			cancel()
			if err != nil {
				return expired
			}
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, cfg.WriteTimeout)
			err := conn.Ping(pctx)
			expired := deadlineHit(pctx)
			cancel()
			if err != nil {
				return expired
			}
		case <-ctx.Done():
			conn.CloseNow()
			return false
		}
	}
}

// deadlineHit reports whether ctx ended by its own deadline. The connection's
// context also ends once the timed-out write closes the socket, so checking
// it afterwards would miss the stuck peer; a context's error never changes
// once set, so the first cause wins.
func deadlineHit(ctx context.Context) bool {
	return errors.Is(ctx.Err(), context.DeadlineExceeded)
}

// maxJoined bounds how many queued HTML frames go out as one message.
const maxJoined = 16

// joinQueued appends the HTML frames already queued behind first, so a
// client that fell a little behind catches up in one write: htmx swaps every
// top-level element of a message by id, in order, so the later fragments
// (and the last seq marker) win. first is never modified; the hub shares it.
func joinQueued(first []byte, queue <-chan []byte) []byte {
	var joined []byte
	for range maxJoined - 1 {
		select {
		case f := <-queue:
			if joined == nil {
				joined = append(make([]byte, 0, 2*(len(first)+len(f))), first...)
			}
			joined = append(joined, f...)
		default:
			if joined == nil {
				return first
			}
			return joined
		}
	}
	if joined == nil {
		return first
	}
	return joined
}

// hubStats answers the hub's counters as JSON.
func hubStats(h *Hub) echo.HandlerFunc {
	return func(c echo.Context) error {
		s, err := h.Stats(c.Request().Context())
		if err != nil {
			return jsonError(c, http.StatusServiceUnavailable, err.Error())
		}
		return c.JSON(http.StatusOK, s)
	}
}
