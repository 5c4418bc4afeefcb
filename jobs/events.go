package jobs

import (
	"sync/atomic"
	"time"
)

// EventType names a state change.
type EventType string

// Event types published by the processor.
const (
	// Job events carry the job's status after the change (Job).
	EventJobUpdated   EventType = "job.updated" // registered, restored or interval changed
	EventJobStarted   EventType = "job.started"
	EventJobStopped   EventType = "job.stopped"
	EventRunSucceeded EventType = "job.run.succeeded" // one execution finished without error
	EventRunFailed    EventType = "job.run.failed"    // Job.LastError says why

	// EventSnapshot carries every job's status (Jobs) and the queue (Queue);
	// published when the processor starts so a cold dashboard knows all.
	EventSnapshot EventType = "snapshot"

	// Work item events carry the item (Work) as stored after the change.
	EventWorkQueued   EventType = "work.queued"   // accepted and stored
	EventWorkStarted  EventType = "work.started"  // claimed by a worker
	EventWorkRetried  EventType = "work.retried"  // attempt failed; retry scheduled at Work.RunAt
	EventWorkDeferred EventType = "work.deferred" // rate limit or open breaker; runs later, no attempt used
	EventWorkDone     EventType = "work.done"
	EventWorkFailed   EventType = "work.failed"   // out of attempts
	EventWorkDropped  EventType = "work.dropped"  // evicted by DropOldest before it ran
	EventWorkRequeued EventType = "work.requeued" // retried by hand: pending again, fresh attempts
	EventWorkDeleted  EventType = "work.deleted"  // deleted by hand; Work is the item as it was

	// EventQueue carries the queue's depths and counters (Queue); coalesced,
	// at most a few per second, and only when something changed.
	EventQueue EventType = "queue.depths"

	// EventPipeline carries a pipeline's per-stage counts (Pipeline);
	// coalesced like EventQueue.
	EventPipeline EventType = "pipeline.stages"
)

// Event is one state change. It is plain data, so a hub in another process can
// receive it as JSON. Which pointer is set depends on Type.
type Event struct {
	Type EventType `json:"type"`
	At   time.Time `json:"at"`
	Job  *Status   `json:"job,omitempty"`
	// Jobs is every job's status, in registration order (EventSnapshot).
	Jobs []Status `json:"jobs,omitempty"`
	// Work is the item concerned (work.* events).
	Work *WorkItem `json:"work,omitempty"`
	// Queue is the work queue's state (EventQueue, EventSnapshot).
	Queue *QueueStats `json:"queue,omitempty"`
	// Pipeline is a pipeline's per-stage state (EventPipeline).
	Pipeline *PipelineStats `json:"pipeline,omitempty"`
	// Dropped is how many events were dropped before this one because the
	// reader fell behind; a reader that sees it grow should resync.
	Dropped uint64 `json:"dropped,omitempty"`
	// Origin is the id of the process that published the event when it
	// came from another process (internal/clusterevents); empty for this
	// process's own.
	Origin string `json:"origin,omitempty"`
}

// QueueStats is the work queue at one moment.
type QueueStats struct {
	// Depths is the number of queued items per priority name ("critical",
	// "high", "normal", "low"); Capacity is each priority channel's bound.
	Depths   map[string]int `json:"depths"`
	Capacity int            `json:"capacity"`
	Policy   string         `json:"policy"`
	// Workers is the pool size; Busy how many are running an item.
	Workers int `json:"workers"`
	Busy    int `json:"busy"`
	// Scheduled items wait for a retry backoff, a rate limit or a breaker.
	Scheduled int `json:"scheduled"`
	// Counts are the stored items in each state, of every process, each
	// bounded by CountLimit: the figures of /api/work and the work page.
	// Only Processor.Queue reads them (the periodic event leaves them out).
	Counts map[WorkState]Count `json:"counts,omitempty"`
	// Process is this process's counters since it started, for
	// Prometheus (which adds the processes up); Counts are the stored ones.
	Process WorkCounters `json:"process"`
	// Breakers is each work kind's circuit breaker state: "closed",
	// "open" or "half-open" (kinds without a breaker are absent).
	Breakers map[string]string `json:"breakers,omitempty"`
	// Control is the control channel's counters.
	Control ChanStats `json:"control"`
	// ControlWait is how long commands waited in the control channel
	// before the processor took them.
	ControlWait WaitStats `json:"controlWait"`
	// EventsDropped counts events lost because the reader fell behind.
	EventsDropped uint64 `json:"eventsDropped"`
}

// WorkCounters count what one process did with work items since it started.
type WorkCounters struct {
	Accepted uint64 `json:"accepted"`
	Rejected uint64 `json:"rejected"` // refused at the door: full or closed (never stored as accepted)
	Evicted  uint64 `json:"evicted"`  // dropped by DropOldest, recorded as state "dropped"
	Done     uint64 `json:"done"`
	Failed   uint64 `json:"failed"`
	Retried  uint64 `json:"retried"`
}

// PipelineStats is a pipeline's stages at one moment.
type PipelineStats struct {
	Name   string       `json:"name"`
	Stages []StageStats `json:"stages"`
}

// StageStats is one pipeline stage: items that entered, left, failed, and
// how many wait in its input channel.
type StageStats struct {
	Name   string `json:"name"`
	In     uint64 `json:"in"`
	Out    uint64 `json:"out"`
	Failed uint64 `json:"failed"`
	Depth  int    `json:"depth"`
	Cap    int    `json:"cap"`
}

// emitter publishes events without ever blocking the publisher: when the
// channel is full the event is dropped and counted. Many goroutines publish;
// one (the hub) reads.
type emitter struct {
	ch      chan Event
	dropped atomic.Uint64
	now     func() time.Time
}

func newEmitter(capacity int, now func() time.Time) *emitter {
	return &emitter{ch: make(chan Event, capacity), now: now}
}

func (e *emitter) publish(ev Event) {
	if ev.At.IsZero() {
		ev.At = e.now()
	}
	ev.Dropped = e.dropped.Load()
	select {
	case e.ch <- ev:
	default:
		e.dropped.Add(1)
	}
}
