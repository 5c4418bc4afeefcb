package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/server"
	"github.com/canalhq/canal/web/auth"
	"github.com/libtnb/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Canal inside a service's own net/http server: its own routes, its own
// database, its own recurring job and work kind, and the dashboard (pages,
// WebSockets, JSON API) mounted under /canal/ behind its own login.
func ExampleNewDashboard() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The service's database (SQLite here; a postgres:// one works the same).
	dir, err := os.MkdirTemp("", "shop-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := gorm.Open(sqlite.Open(filepath.Join(dir, "shop.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"),
		&gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	if err := jobs.Migrate(ctx, db); err != nil {
		log.Fatal(err)
	}
	if err := outbox.Migrate(ctx, db); err != nil {
		log.Fatal(err)
	}

	// The service's own work: a recurring job and a kind of work item.
	store, err := jobs.NewStore(db)
	if err != nil {
		log.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler) // the service's own logger
	proc := jobs.NewProcessor(jobs.Config{Store: store, Logger: quiet})
	if err := proc.Register("nightly-invoices", time.Hour, false, func(ctx context.Context) error { return nil }); err != nil {
		log.Fatal(err)
	}
	if err := proc.RegisterKind("send-receipt", func(ctx context.Context, it jobs.WorkItem) error { return nil }, jobs.KindOptions{}); err != nil {
		log.Fatal(err)
	}
	relay, err := outbox.New(db, outbox.Config{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	relay.RegisterDefault(outbox.PublisherFunc(func(ctx context.Context, d outbox.Delivery) error { return nil }))

	// Who may use the dashboard: the service's own authentication. Here a
	// header its proxy sets; a session cookie or OIDC works the same way.
	who := auth.AuthenticatorFunc(func(r *http.Request) (auth.Principal, error) {
		switch r.Header.Get("X-Shop-User") {
		case "":
			return auth.Principal{}, auth.ErrNoCredentials
		case "ops":
			return auth.Principal{Name: "ops", Role: auth.Operator, Via: "shop"}, nil
		default:
			return auth.Principal{Name: r.Header.Get("X-Shop-User"), Role: auth.Viewer, Via: "shop"}, nil
		}
	})
	dash, err := server.NewDashboard(ctx, db, server.DashboardConfig{
		Prefix: "/canal/", Jobs: proc, Outbox: relay, Authenticator: who, Logger: quiet,
	})
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello from the shop") })
	mux.Handle("/canal/", dash.Handler())

	// The service owns every goroutine and stops them all.
	var wg sync.WaitGroup
	wg.Go(func() { _ = proc.Run(ctx) })
	wg.Go(func() { _ = relay.Run(ctx) })
	wg.Go(func() { _ = dash.Run(ctx) })
	srv := httptest.NewServer(mux) // http.ListenAndServe(":8080", mux) in the service
	defer func() { srv.Close(); cancel(); wg.Wait() }()

	get := func(path, user string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if user != "" {
			req.Header.Set("X-Shop-User", user)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		return res
	}
	res := get("/hello", "")
	res.Body.Close()
	fmt.Println("/hello:", res.StatusCode)
	res = get("/canal/", "ops")
	res.Body.Close()
	fmt.Println("/canal/ as ops:", res.StatusCode)
	res = get("/canal/api/jobs", "")
	res.Body.Close()
	fmt.Println("/canal/api/jobs anonymous:", res.StatusCode)
	res = get("/canal/api/jobs", "ann")
	var list []jobs.Status
	_ = json.NewDecoder(res.Body).Decode(&list)
	res.Body.Close()
	fmt.Println("/canal/api/jobs as a viewer:", res.StatusCode, list[0].Name)
	// Output:
	// /hello: 200
	// /canal/ as ops: 200
	// /canal/api/jobs anonymous: 401
	// /canal/api/jobs as a viewer: 200 nightly-invoices
}
