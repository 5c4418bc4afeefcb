// Package jobs drives background work through Go channels.
//
// A Processor owns every recurring job's state in one goroutine. Callers
// talk to it by sending commands on a bounded control channel; each command
// carries its own reply channel, so the caller gets the job's status or a
// typed error (the Go form of .NET's TaskCompletionSource). The processor
// takes one command, then whatever else is queued without blocking (the
// WaitToReadAsync + TryRead loop).
//
// One-off work items run on the queue engine (internal/queue): the table is
// the queue. The engine's fetcher claims batches of due items, weighted
// 8:4:2:1 by priority so that low never starves, and hands them through a
// bounded channel to the workers; a completer records outcomes in batches.
// Each kind has its handler, a rate limit and a circuit breaker (both snooze
// the item back into the table, no attempt used, no worker held), a timeout
// and a retry policy (exponential backoff with jitter up to MaxAttempts).
// The backlog (items waiting in the table, in every process) is bounded by
// WorkCapacity under the same full-mode policies as a channel.
//
// Bounded is the control channel: a capacity, a full-channel policy (Wait,
// DropNewest, DropOldest) and counters. Close stops intake and lets the
// reader drain (the tutorial's Complete()).
//
// # Nothing accepted is lost
//
// Every work item is a row of the table before Enqueue returns (or commits
// with the caller's transaction, EnqueueTx), so the table, not memory, is
// the record. Each process has a unique id and a heartbeat that renews the
// leases of what it runs; after a kill -9 any live process (or the next
// start) takes the dead one's items back once their leases expired, and no
// process takes another live process's items. A new item refused at a full
// backlog (Wait past the caller's deadline, DropNewest) or after Shutdown
// was never accepted: Enqueue returns ErrFull or ErrClosed and nothing is
// stored. Under DropOldest the oldest waiting item had been accepted, so it
// is recorded as dropped with the reason and a work.dropped event, never
// silently lost; choose DropOldest only for work that may be shed (like the
// tutorial's logs). Wait, the default, never evicts anything.
//
// Recurring jobs' state (running or stopped, interval) is saved before a
// command's change is applied, so a restart keeps what the API answered.
//
// # Several processes
//
// With a Store, the processes sharing the database elect one leader of the
// recurring jobs through a lease row with a term (lease.go, elect.go); only
// the leader runs them, and each run starts only if the lease is still
// the leader's (the fence). A process that does not lead answers Status and
// List from the database and forwards the other commands to the leader
// through the database and NOTIFY (forward.go); the caller gets the
// leader's reply or ErrNoLeader / ErrLeaderTimeout.
//
// # Events
//
// Every state change is an Event on Events(). Publishing never blocks: if
// the reader falls behind, events are dropped and counted (Event.Dropped,
// QueueStats.EventsDropped); queue depths are coalesced into at most one
// EventQueue per Config.StatsEvery. Run starts with an EventSnapshot of
// every job and the queue, so a cold reader knows everything.
package jobs
