package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/canalhq/canal/jobs"
)

func TestPipelineStagesAndComplete(t *testing.T) {
	var (
		mu     sync.Mutex
		sunk   []jobs.Record
		events []jobs.Event
	)
	pl, err := jobs.NewPipeline(jobs.PipelineConfig{
		Name:     "orders",
		Capacity: 2, // smaller than the input: stages must apply backpressure, not lose records
		Validate: func(_ context.Context, r jobs.Record) (jobs.Record, error) {
			if _, ok := r.Data["amount"]; !ok {
				return r, errors.New("no amount")
			}
			return r, nil
		},
		Enrich: func(_ context.Context, r jobs.Record) (jobs.Record, error) {
			r.Enriched = map[string]any{"currency": "EUR"}
			return r, nil
		},
		Sink: func(_ context.Context, r jobs.Record) error {
			mu.Lock()
			defer mu.Unlock()
			sunk = append(sunk, r)
			return nil
		},
		Publish: func(e jobs.Event) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, e)
		},
	})
	must(t, err)
	done := make(chan error, 1)
	go func() { done <- pl.Run(context.Background()) }()
	for i := range 10 {
		data := map[string]any{"amount": i}
		if i%4 == 0 {
			data = map[string]any{}
		}
		must(t, pl.Submit(context.Background(), jobs.Record{ID: fmt.Sprint(i), Data: data}))
	}
	pl.Close() // Complete(): Run returns once every stage has drained
	must(t, <-done)
	if err := pl.Submit(context.Background(), jobs.Record{}); !errors.Is(err, jobs.ErrClosed) {
		t.Fatalf("Submit after Close = %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(sunk) != 7 {
		t.Fatalf("sunk %d records, want 7", len(sunk))
	}
	for _, r := range sunk {
		if r.Enriched["currency"] != "EUR" {
			t.Fatalf("record %s not enriched", r.ID)
		}
	}
	want := []jobs.StageStats{
		{Name: "raw", In: 10, Out: 7, Failed: 3, Cap: 2},
		{Name: "validated", In: 7, Out: 7, Cap: 2},
		{Name: "enriched", In: 7, Out: 7, Cap: 2},
	}
	got := pl.Stats()
	for i, w := range want {
		if got.Stages[i] != w {
			t.Errorf("stage %d = %+v, want %+v", i, got.Stages[i], w)
		}
	}
	if len(events) == 0 || events[len(events)-1].Type != jobs.EventPipeline || events[len(events)-1].Pipeline.Name != "orders" {
		t.Fatalf("want a final pipeline event, got %d events", len(events))
	}
}
