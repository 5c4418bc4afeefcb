package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/server"
	"github.com/canalhq/canal/testenv"
)

// A mounted dashboard creates the Idempotency-Key table itself, honours
// the header, and runs the expired keys' cleaner while it runs: it stops
// with Run.
func TestDashboardKeepsAndCleansIdempotencyKeys(t *testing.T) {
	ctx := context.Background()
	db := testenv.SQLite(t)
	if err := jobs.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	store, err := jobs.NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	proc := jobs.NewProcessor(jobs.Config{Store: store})
	if err := proc.RegisterKind("receipt", func(context.Context, jobs.WorkItem) error { return nil }, jobs.KindOptions{}); err != nil {
		t.Fatal(err)
	}
	dash, err := server.NewDashboard(ctx, db, server.DashboardConfig{Jobs: proc, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMicro()
	for _, r := range []struct {
		key     string
		expires int64
	}{{"expired", now - 1}, {"fresh", now + time.Hour.Microseconds()}} {
		if err := db.Exec(`INSERT INTO canal_idempotency_keys (scope, idem_key, fingerprint, status, body, location, created_us, expires_us)
			VALUES ('s', ?, 'f', 200, '{}', '', ?, ?)`, r.key, now-1, r.expires).Error; err != nil {
			t.Fatal(err)
		}
	}
	post := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/api/work", strings.NewReader(`{"kind":"receipt"}`))
		req.Host = "127.0.0.1"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "receipt-1")
		rec := httptest.NewRecorder()
		dash.Handler().ServeHTTP(rec, req)
		return rec
	}
	first, again := post(), post()
	if first.Code != http.StatusAccepted || again.Code != http.StatusAccepted || again.Header().Get("Idempotent-Replayed") != "true" ||
		first.Body.String() != again.Body.String() {
		t.Fatalf("first %d %s, again %d %s (replayed %q)", first.Code, first.Body, again.Code, again.Body, again.Header().Get("Idempotent-Replayed"))
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- dash.Run(runCtx) }()
	keys := func() (n int64) {
		_ = db.Raw(`SELECT count(*) FROM canal_idempotency_keys WHERE idem_key IN ('expired', 'fresh', 'receipt-1')`).Scan(&n).Error
		return n
	}
	testenv.Eventually(t, 30*time.Second, "the expired key is cleaned up, the others kept", func() bool { return keys() == 2 })
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
