// Package queue is Canal's one delivery engine: the database table is the
// queue, and work items (jobs) and outbox messages (outbox) are two uses of it.
// It imports neither: both translate to its Item.
//
// # The model
//
// Every item is a row of canal_queue_items. Its bigint ID is assigned at
// insert and gives commit order within a key; its PublicID is the id users
// see (a UUIDv7 for messages, the work item's id for work). Queue names the
// use ("outbox" or "work"); Kind is the topic or the work kind.
//
// States (see State): an item is inserted Pending, or Held when it has a
// Key and an earlier item of that key is still open. A Client's fetcher
// claims Pending items whose RunAt is due in one statement per batch (they
// become Running, leased to the process until LeaseUntil, Attempt counted),
// hands them through a bounded channel to its workers, and a completer
// writes the outcomes in batches: Done, Pending again later (a retry, by
// the shared RetryPolicy), or Dead. Finishing the head of a key promotes
// the next Held item of that key in the same transaction, so a claim never
// looks past a key's head and its cost does not grow with a key's depth.
//
// A Dead item keeps blocking its key when the Client's DeadBlocksKey says
// so (the outbox's BlockKey policy) until it is retried or deleted by
// hand; otherwise it is set aside and the key goes on.
//
// A NewItem with a UniqueKey is refused with a *DuplicateError (ErrDuplicate)
// while another item of the queue holds that key in one of its
// UniqueStates (by default the open ones); a partial unique index covers
// exactly those rows, so an item that leaves them frees the key.
//
// # Leases, heartbeats, rescue
//
// Each Client runs under a Process (host, pid, random) with a heartbeat row
// in canal_queue_processes. The heartbeat renews the leases of the items
// the Client is running (but not of an attempt past its Timeout, so a hung
// handler is cut), each once it is within half a lease (at least three
// beats) of its end, so a batch claimed a moment ago is not rewritten at
// every beat; the rescuer of any process moves an item whose lease
// expired to Rescued. A Rescued item is a suspect: its attempt was cut
// short (a process died, possibly because of it). Clients send suspects
// one at a time while nothing else of theirs runs, and only a cut while
// alone counts as a failure: an item that kills its process on every try
// goes Dead after MaxAttempts such lives, and the items out beside it at
// the first crash lose nothing. No process ever touches another live
// process's running items: only expired leases are rescued.
//
// # Outages
//
// Every loop reports its calls to the Process's outage.Monitor (one per
// process, so an outage is logged once) and waits a capped back-off after
// a failure. The completer keeps a batch until it is written; the
// heartbeat renews the leases of attempts that ended meanwhile; and no
// lease is rescued until the database has been back for a lease's length,
// so that after an outage every live process renews its leases before any
// of them is taken for dead.
//
// # Seams
//
// Driver is the narrow interface to one database; internal/queue/sqlite
// and internal/queue/postgres implement it, each owning its SQL and its
// numbered, embedded migrations (table canal_queue_schema). dialect.For
// picks one for a *gorm.DB, the only place that looks at the dialect.
// queuetest is the conformance suite every driver passes.
//
// Insertion happens in the caller's own gorm transaction (Insert), so the
// item commits with the caller's business write. Everything else the
// engine does runs below gorm on the driver's own prepared statements.
//
// # Using it
//
//	drv, _ := dialect.For(db)   // once; drv.Migrate(ctx) at start (or `canal migrate`)
//	proc := queue.NewProcess(drv, queue.ProcessConfig{})
//	c, _ := queue.NewClient(drv, proc, queue.Config{
//		Queue: "work", Workers: 8, Weights: []int{8, 4, 2, 1}, Handler: h, OnEvent: f,
//	})
//	// in the caller's own transaction, with its business write:
//	ids, err := queue.Insert(ctx, drv, tx, "work", time.Now(), queue.NewItem{PublicID: id, Kind: "email", Payload: p})
//	// services, started in this order and stopped in reverse:
//	proc.Start(ctx); c.Start(ctx); ...; c.Stop(ctx); proc.Stop(ctx)
//
// A Handler returns nil (done), an error (a failed attempt, retried by the
// RetryPolicy until MaxAttempts, then dead), Snooze(d) (try again after d,
// no failure counted, the attempt given back: a rate limit or an open
// circuit breaker) or Permanent(err) (dead now). OnEvent hears every
// outcome once written; Emitter is the shared non-blocking event channel a
// use builds its own events on. The admin side is the Driver itself:
// Get, Attempts, List, CountUpTo, CountByFinish and LatestFinished (over a
// Filter), Count, OldestOpen,
// Retry, RetryDead, Delete, Drop, DropOldest (a full-queue policy, in the
// caller's transaction), Import (items as they stand, in any state),
// Cleanup, all per queue; NewItem.State = StateDropped records an item
// refused at intake.
//
// # Later additions the design leaves room for
//
// Pause and resume of a queue, kind or priority: a paused-set table the
// claim joins against (the claim is one statement per driver). Cancelling
// a running item: a cancel flag the heartbeat reads with the leases it
// renews, cancelling the handler's context. Search by payload and bulk
// actions over a filter: Reader queries over the same table.
package queue
