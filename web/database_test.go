package web

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/outage"
	"github.com/labstack/echo/v4"
)

// bannerDown reads the database banner of a frame: ok false if it has none.
func bannerDown(t testing.TB, frame []byte) (down, ok bool) {
	t.Helper()
	sel := doc(t, frame).Find(`[data-testid="db-banner"]`)
	if sel.Length() == 0 {
		return false, false
	}
	_, hidden := sel.Attr("hidden")
	return !hidden && sel.AttrOr("data-down", "") == "true", true
}

// The database banner is in every snapshot (page and wall), and each change
// of the database's state goes out at once to every page and wall screen.
func TestHubPushesTheDatabaseBanner(t *testing.T) {
	mon := outage.New(slog.New(slog.DiscardHandler))
	h, _, _ := testHub(t, HubConfig{Database: mon, FlushEvery: time.Hour})
	for _, v := range []view{viewPage, viewWall} {
		t.Run(v.String(), func(t *testing.T) {
			c := attach(t, h, v, 64)
			if down, ok := bannerDown(t, next(t, c)); !ok || down {
				t.Fatalf("snapshot: banner present %v, shown %v; want present and hidden", ok, down)
			}
			mon.Observe(time.Now(), io.ErrUnexpectedEOF)
			if down, ok := bannerDown(t, next(t, c)); !ok || !down {
				t.Fatalf("after an outage began: banner present %v, shown %v; want shown", ok, down)
			}
			late := attach(t, h, v, 64)
			if down, ok := bannerDown(t, next(t, late)); !ok || !down {
				t.Fatalf("snapshot during the outage: banner present %v, shown %v; want shown", ok, down)
			}
			mon.Observe(time.Now(), nil)
			for _, cl := range []*client{c, late} {
				if down, ok := bannerDown(t, next(t, cl)); !ok || down {
					t.Fatalf("after the recovery: banner present %v, shown %v; want hidden", ok, down)
				}
			}
		})
	}
}

// A request whose database call fails because the database is away is a
// 503 (a page with the banner shown, or JSON), never a 500.
func TestPagesSayTheDatabaseIsAway(t *testing.T) {
	mon := outage.New(slog.New(slog.DiscardHandler))
	mon.Observe(time.Now(), io.ErrUnexpectedEOF)
	e := New(Deps{Database: mon})
	e.GET("/needs-db", func(c echo.Context) error { return fmt.Errorf("list: %w", io.ErrUnexpectedEOF) })
	for _, tt := range []struct {
		path, accept string
		want         int
		body         string
	}{
		{"/needs-db", "text/html", http.StatusServiceUnavailable, "database unavailable"},
		{"/needs-db", "text/html", http.StatusServiceUnavailable, `data-down="true"`}, // the page's banner
		{"/needs-db", "application/json", http.StatusServiceUnavailable, `"error":"database unavailable`},
	} {
		req := httptest.NewRequest(http.MethodGet, tt.path, nil)
		req.Host = "localhost"
		req.Header.Set("Accept", tt.accept)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != tt.want || !strings.Contains(rec.Body.String(), tt.body) {
			t.Errorf("GET %s (%s) = %d, want %d with %q:\n%.400s", tt.path, tt.accept, rec.Code, tt.want, tt.body, rec.Body.String())
		}
	}
}
