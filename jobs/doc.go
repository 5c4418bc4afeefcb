// Package jobs drives background work through Go channels.
//
// A Processor owns every recurring job's state in one goroutine. Callers
// talk to it by sending commands on a bounded control channel; each command
// carries its own reply channel, so the caller gets the job's status or a
// typed error (the Go form of .NET's TaskCompletionSource). The processor
// takes one command, then whatever else is queued without blocking (the
// WaitToReadAsync + TryRead loop).
//
// One-off work items go through one bounded queue per priority to a pool of
// workers. Each kind has its handler, a rate limit, a retry policy
// (exponential backoff with jitter up to MaxAttempts) and a circuit breaker.
//
// Bounded is the channel both use: a capacity, a full-channel policy (Wait,
// DropNewest, DropOldest) and counters. Close stops intake and lets the
// reader drain (the tutorial's Complete()).
//
// # Nothing accepted is lost
//
// Every work item is written to the Store before Enqueue returns, so the
// store, not memory, is the record: after a restart or a kill -9, pending
// items and items that were running run again (Config.Instance says whose
// they were). A new item the queue refuses (full under Wait past the
// caller's deadline, DropNewest, or closed) was never accepted: Enqueue
// returns ErrFull or ErrClosed and the row is marked dropped. Under
// DropOldest the evicted item had been accepted, so it is recorded as
// dropped in the store with the reason and a work.dropped event, never
// silently lost; choose DropOldest only for work that may be shed (like
// the tutorial's logs). Wait, the default, never evicts anything.
//
// Recurring jobs' state (running or stopped, interval) is saved before a
// command's change is applied, so a restart keeps what the API answered.
//
// # Events
//
// Every state change is an Event on Events(). Publishing never blocks: if
// the reader falls behind, events are dropped and counted (Event.Dropped,
// QueueStats.EventsDropped); queue depths are coalesced into at most one
// EventQueue per Config.StatsEvery. Run starts with an EventSnapshot of
// every job and the queue, so a cold reader knows everything.
package jobs
