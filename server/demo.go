package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/canalhq/canal/jobs"
	"golang.org/x/time/rate"
)

// registerDemo adds the demo's recurring jobs and work kinds before the
// processor runs: work with realistic durations and an occasional failure,
// so retries, the breaker and the rate limits all show on the dashboard.
func registerDemo(p *jobs.Processor) error {
	err := errors.Join(
		p.Register("report", 5*time.Second, true, flaky(50*time.Millisecond, 300*time.Millisecond, 10, "upstream timed out")),
		p.Register("cleanup", 15*time.Second, true, flaky(20*time.Millisecond, 120*time.Millisecond, 0, "")),
		p.RegisterKind("email", flakyWork(100*time.Millisecond, 400*time.Millisecond, 8, "smtp: 421 try again later"), jobs.KindOptions{
			Rate: 20, Burst: 5, MaxAttempts: 4, BackoffBase: 500 * time.Millisecond, BackoffMax: 5 * time.Second,
			Timeout: 10 * time.Second, BreakerFailures: 5, BreakerOpenFor: 10 * time.Second,
		}),
		p.RegisterKind("image.resize", flakyWork(300*time.Millisecond, 1200*time.Millisecond, 5, "corrupt image header"), jobs.KindOptions{
			Rate: rate.Limit(5), Burst: 2, MaxAttempts: 3, BackoffBase: time.Second, BackoffMax: 10 * time.Second,
			Timeout: 30 * time.Second,
		}),
	)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// flaky is a job that takes between lo and hi and fails pct% of the time.
func flaky(lo, hi time.Duration, pct int, msg string) jobs.Handler {
	return func(ctx context.Context) error {
		if err := sleep(ctx, lo+rand.N(hi-lo)); err != nil {
			return err
		}
		if pct > 0 && rand.IntN(100) < pct {
			return errors.New(msg)
		}
		return nil
	}
}

func flakyWork(lo, hi time.Duration, pct int, msg string) jobs.WorkHandler {
	job := flaky(lo, hi, pct, msg)
	return func(ctx context.Context, _ jobs.WorkItem) error { return job(ctx) }
}

// runDemo feeds the processor a steady trickle of work with mixed
// priorities and runs the raw → validated → enriched pipeline, until ctx
// ends. It returns once everything it started has stopped.
func runDemo(ctx context.Context, p *jobs.Processor, log *slog.Logger) {
	pl, err := jobs.NewPipeline(jobs.PipelineConfig{
		Name:     "signups",
		Capacity: 32,
		Validate: func(_ context.Context, r jobs.Record) (jobs.Record, error) {
			if r.Data["email"] == "" {
				return r, errors.New("missing email")
			}
			return r, nil
		},
		Enrich: func(ctx context.Context, r jobs.Record) (jobs.Record, error) {
			// A lookup in another service.
			if err := sleep(ctx, time.Duration(20+rand.IntN(60))*time.Millisecond); err != nil {
				return r, err
			}
			r.Enriched = map[string]any{"country": []string{"ES", "MX", "AR", "CO"}[rand.IntN(4)]}
			return r, nil
		},
		Publish: p.Publish,
	})
	if err != nil {
		log.Error("demo pipeline", "err", err)
		return
	}
	// The pipeline drains after its feeder stops, within a bound.
	plCtx, stopPipeline := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPipeline()
	var wg sync.WaitGroup
	wg.Go(func() { _ = pl.Run(plCtx) })
	wg.Go(func() {
		for i := 0; ; i++ {
			if sleep(ctx, time.Duration(100+rand.IntN(300))*time.Millisecond) != nil {
				return
			}
			email := fmt.Sprintf("user%d@example.com", i)
			if rand.IntN(10) == 0 {
				email = ""
			}
			rec := jobs.Record{ID: fmt.Sprint(i), Data: map[string]any{"email": email}}
			if err := pl.Submit(ctx, rec); err != nil && ctx.Err() == nil {
				log.Debug("demo pipeline submit", "err", err)
			}
		}
	})
	wg.Go(func() { feedWork(ctx, p, log) })

	<-ctx.Done()
	pl.Close()
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
		stopPipeline()
		<-drained
	}
}

// feedWork enqueues a demo item every few hundred milliseconds.
func feedWork(ctx context.Context, p *jobs.Processor, log *slog.Logger) {
	kinds := []struct {
		kind    string
		payload func(i int) string
	}{
		{"email", func(i int) string { return fmt.Sprintf(`{"to":"user%d@example.com","template":"welcome"}`, i) }},
		{"image.resize", func(i int) string { return fmt.Sprintf(`{"image":"uploads/%d.jpg","width":640}`, i) }},
	}
	// Mostly normal, some high and low, now and then critical.
	prios := []jobs.Priority{jobs.Normal, jobs.Normal, jobs.Normal, jobs.High, jobs.High, jobs.Low, jobs.Low, jobs.Critical}
	for i := 0; ; i++ {
		if sleep(ctx, time.Duration(250+rand.IntN(750))*time.Millisecond) != nil {
			return
		}
		k := kinds[rand.IntN(len(kinds))]
		ectx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := p.Enqueue(ectx, jobs.NewWork{Kind: k.kind, Priority: prios[rand.IntN(len(prios))], Payload: []byte(k.payload(i)), EnqueuedBy: "demo traffic"})
		cancel()
		if err != nil && ctx.Err() == nil {
			log.Debug("demo work", "err", err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
