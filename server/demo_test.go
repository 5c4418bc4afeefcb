package server

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
)

// The demo fills a cold dashboard: its jobs and kinds exist, work flows to
// done and the pipeline's stages move.
func TestDemoMakesTheDashboardAlive(t *testing.T) {
	db := testenv.SQLite(t)
	if err := jobs.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	s, err := jobs.NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	p := jobs.NewProcessor(jobs.Config{Store: s})
	if err := registerDemo(p); err != nil {
		t.Fatal(err)
	}
	if got := p.Kinds(); !slices.Equal(got, []string{"email", "image.resize"}) {
		t.Fatalf("kinds %v", got)
	}

	var (
		mu   sync.Mutex
		seen = map[jobs.EventType]int{}
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = p.Run(ctx) })
	wg.Go(func() {
		for {
			select {
			case e := <-p.Events():
				mu.Lock()
				seen[e.Type]++
				mu.Unlock()
			case <-ctx.Done():
				return
			}
		}
	})
	demoCtx, stopDemo := context.WithCancel(ctx)
	demoDone := make(chan struct{})
	go func() { defer close(demoDone); runDemo(demoCtx, p, slog.New(slog.DiscardHandler)) }()

	list, err := p.List(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "report" || list[0].Interval != 5*time.Second || !list[0].Running {
		t.Fatalf("demo jobs %+v, %v", list, err)
	}
	testenv.Eventually(t, 30*time.Second, "demo work done and pipeline moving", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[jobs.EventWorkQueued] > 0 && seen[jobs.EventWorkDone] > 0 && seen[jobs.EventPipeline] > 0 && seen[jobs.EventQueue] > 0
	})
	stopDemo()
	<-demoDone // the demo stops everything it started
	cancel()
	wg.Wait()
}
