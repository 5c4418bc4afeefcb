package web_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/testenv"
	"github.com/canalhq/canal/web"
	"github.com/coder/websocket"
	"gorm.io/gorm"
)

// countedOutbox serves the dashboard over a real relay on SQLite and counts
// every statement the database runs.
func countedOutbox(t testing.TB) (*httptest.Server, func(), *atomic.Int64) {
	t.Helper()
	ctx := context.Background()
	db := testenv.SQLite(t)
	if err := outbox.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	var queries atomic.Int64
	count := func(*gorm.DB) { queries.Add(1) }
	cb := db.Callback()
	for _, err := range []error{
		cb.Query().After("gorm:query").Register("canal:count", count),
		cb.Row().After("gorm:row").Register("canal:count", count),
		cb.Raw().After("gorm:raw").Register("canal:count", count),
		cb.Update().After("gorm:update").Register("canal:count", count),
		cb.Create().After("gorm:create").Register("canal:count", count),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.DiscardHandler)
	r, err := outbox.New(db, outbox.Config{PollInterval: 50 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r.RegisterDefault(outbox.PublisherFunc(func(context.Context, outbox.Delivery) error { return nil }))
	h := web.NewHub(web.HubConfig{OutboxEvents: r.Events(), OutboxHistory: r, Logger: log})
	runCtx, cancel := context.WithCancel(ctx)
	relayDone, hubDone := make(chan error, 1), make(chan struct{})
	go func() { relayDone <- r.Run(runCtx) }()
	go func() { h.Run(runCtx); close(hubDone) }()
	srv := httptest.NewServer(web.New(web.Deps{Hub: h, Outbox: r, Logger: log}))
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-hubDone
		<-relayDone
	})
	add := func() {
		err := r.Transaction(ctx, func(tx *gorm.DB) error {
			_, err := outbox.Add(ctx, tx, outbox.Message{Topic: "order.placed", Payload: map[string]int{"n": 1}})
			return err
		})
		if err != nil {
			t.Error(err)
		}
	}
	return srv, add, &queries
}

// TestViewersOfARegionShareOneQuery: a hundred viewers reading the same
// live region at the same state of the hub run its query once.
func TestViewersOfARegionShareOneQuery(t *testing.T) {
	srv, add, queries := countedOutbox(t)
	add()
	get := func() string {
		resp, err := http.Get(srv.URL + "/fragments/outbox?status=pending")
		if err != nil {
			t.Error(err)
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// Twice each: the relay may move the hub on between two rounds.
	var fewest int64 = 1 << 62
	for range 3 {
		before := queries.Load()
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() {
				if body := get(); !strings.Contains(body, `id="outbox-live"`) {
					t.Errorf("fragment answered %q", body)
				}
			})
		}
		wg.Wait()
		fewest = min(fewest, queries.Load()-before)
	}
	// The relay's own polling runs meanwhile; a hundred list queries
	// would show far above it.
	if fewest > 20 {
		t.Errorf("100 viewers of one region ran %d statements, want about one list query", fewest)
	}
}

// BenchmarkViewersCostTheDatabase opens 1 and then 100 dashboards on the
// outbox list while messages flow; each reads its live region when a frame
// says it changed, as static/canal.js does. The database's statements per
// second are reported for each: the same, since viewers share one answer.
func BenchmarkViewersCostTheDatabase(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(map[int]string{1: "dashboards=1", 100: "dashboards=100"}[n], func(b *testing.B) {
			srv, add, queries := countedOutbox(b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var reads atomic.Int64
			var wg sync.WaitGroup
			for range n {
				c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
				if err != nil {
					b.Fatal(err)
				}
				wg.Go(func() {
					defer c.CloseNow()
					for {
						_, frame, err := c.Read(ctx)
						if err != nil {
							return
						}
						if strings.Contains(string(frame), `data-live="outbox"`) {
							resp, err := http.Get(srv.URL + "/fragments/outbox")
							if err == nil {
								_, _ = io.Copy(io.Discard, resp.Body)
								resp.Body.Close()
								reads.Add(1)
							}
						}
					}
				})
			}
			start, q0 := time.Now(), queries.Load()
			for b.Loop() {
				add()
				time.Sleep(20 * time.Millisecond)
			}
			elapsed := time.Since(start).Seconds()
			b.ReportMetric(float64(queries.Load()-q0)/elapsed, "db-statements/s")
			b.ReportMetric(float64(reads.Load())/elapsed, "region-reads/s")
			cancel()
			wg.Wait()
		})
	}
}
