package jobs

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Record is what flows through a Pipeline: raw Data in, Enriched added on
// the way.
type Record struct {
	ID       string         `json:"id"`
	Data     map[string]any `json:"data"`
	Enriched map[string]any `json:"enriched,omitempty"`
}

// StageFunc transforms a record in one stage; an error drops the record
// there and counts it as failed.
type StageFunc func(ctx context.Context, r Record) (Record, error)

// PipelineConfig configures a Pipeline. Validate and Enrich are required.
type PipelineConfig struct {
	Name string // default "pipeline"
	// Capacity bounds each stage's input channel (default 64); Submit and
	// each stage wait for room, so a slow stage slows everything before it
	// (backpressure) instead of piling up records.
	Capacity int
	Validate StageFunc
	Enrich   StageFunc
	// Sink receives enriched records (default: discard).
	Sink func(ctx context.Context, r Record) error
	// Publish receives an EventPipeline whenever the stages' counts changed,
	// at most once per StatsEvery (default 250ms). Use Processor.Publish.
	Publish    func(Event)
	StatsEvery time.Duration
}

// Pipeline is the tutorial's multi-stage pipeline: raw → validated →
// enriched, each stage one goroutine reading a bounded channel and writing
// the next. Close completes it: intake stops, each stage drains its input,
// then completes the next stage's channel.
type Pipeline struct {
	cfg    PipelineConfig
	chans  [3]*Bounded[Record] // raw, validated, enriched
	counts [3]stageCounts
}

type stageCounts struct{ in, out, failed atomic.Uint64 }

var stageNames = [3]string{"raw", "validated", "enriched"}

// NewPipeline returns a pipeline; its owner calls Run.
func NewPipeline(cfg PipelineConfig) (*Pipeline, error) {
	if cfg.Validate == nil || cfg.Enrich == nil {
		return nil, fmt.Errorf("pipeline %q: Validate and Enrich are required", cfg.Name)
	}
	if cfg.Name == "" {
		cfg.Name = "pipeline"
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = 64
	}
	if cfg.Sink == nil {
		cfg.Sink = func(context.Context, Record) error { return nil }
	}
	if cfg.StatsEvery <= 0 {
		cfg.StatsEvery = 250 * time.Millisecond
	}
	pl := &Pipeline{cfg: cfg}
	for i := range pl.chans {
		pl.chans[i] = NewBounded[Record](cfg.Capacity, Wait, nil)
	}
	return pl, nil
}

// Submit puts a raw record in, waiting for room until ctx ends (ErrFull)
// or the pipeline is closed (ErrClosed).
func (pl *Pipeline) Submit(ctx context.Context, r Record) error {
	if err := pl.chans[0].Send(ctx, r); err != nil {
		return fmt.Errorf("pipeline %s: submit: %w", pl.cfg.Name, err)
	}
	pl.counts[0].in.Add(1)
	return nil
}

// Close stops intake; Run returns once every stage has drained.
func (pl *Pipeline) Close() { pl.chans[0].Close() }

// Run runs the stages until they have drained after Close, or ctx ends.
func (pl *Pipeline) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { pl.stage(ctx, 0, pl.cfg.Validate) })
	wg.Go(func() { pl.stage(ctx, 1, pl.cfg.Enrich) })
	wg.Go(func() {
		pl.stage(ctx, 2, func(ctx context.Context, r Record) (Record, error) { return r, pl.cfg.Sink(ctx, r) })
	})
	rctx, stopReport := context.WithCancel(ctx)
	var reporter sync.WaitGroup
	reporter.Go(func() { pl.report(rctx) })
	wg.Wait()
	stopReport()
	reporter.Wait()
	if pl.cfg.Publish != nil {
		s := pl.Stats()
		pl.cfg.Publish(Event{Type: EventPipeline, Pipeline: &s})
	}
	return ctx.Err()
}

// stage reads chans[i], applies fn and writes chans[i+1] (the last stage
// has no next channel). Closing its input completes it: it drains, then
// closes its output so the next stage completes in turn.
func (pl *Pipeline) stage(ctx context.Context, i int, fn StageFunc) {
	in := pl.chans[i]
	var out *Bounded[Record]
	if i+1 < len(pl.chans) {
		out = pl.chans[i+1]
		defer out.Close()
	}
	do := func(r Record) {
		r, err := fn(ctx, r)
		if err != nil {
			pl.counts[i].failed.Add(1)
			return
		}
		if out != nil {
			if err := out.Send(ctx, r); err != nil {
				pl.counts[i].failed.Add(1)
				return
			}
			pl.counts[i+1].in.Add(1)
		}
		pl.counts[i].out.Add(1)
	}
	for {
		select {
		case r := <-in.C():
			do(r)
		case <-in.Closed():
			for {
				r, ok := in.TryRecv()
				if !ok {
					return
				}
				do(r)
			}
		case <-ctx.Done():
			return
		}
	}
}

func (pl *Pipeline) report(ctx context.Context) {
	if pl.cfg.Publish == nil {
		return
	}
	t := time.NewTicker(pl.cfg.StatsEvery)
	defer t.Stop()
	var last PipelineStats
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := pl.Stats()
		if samePipeline(last, s) {
			continue
		}
		last = s
		pl.cfg.Publish(Event{Type: EventPipeline, Pipeline: &s})
	}
}

func samePipeline(a, b PipelineStats) bool {
	if len(a.Stages) != len(b.Stages) {
		return false
	}
	for i := range a.Stages {
		if a.Stages[i] != b.Stages[i] {
			return false
		}
	}
	return true
}

// Stats reports each stage: records in, out, failed, and waiting.
func (pl *Pipeline) Stats() PipelineStats {
	s := PipelineStats{Name: pl.cfg.Name, Stages: make([]StageStats, len(pl.chans))}
	for i, c := range pl.chans {
		s.Stages[i] = StageStats{
			Name: stageNames[i], In: pl.counts[i].in.Load(), Out: pl.counts[i].out.Load(),
			Failed: pl.counts[i].failed.Load(), Depth: c.Len(), Cap: c.Stats().Cap,
		}
	}
	return s
}
