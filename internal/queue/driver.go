package queue

import (
	"context"
	"time"

	"gorm.io/gorm"
)

// Driver is the engine's one seam to a database: internal/queue/sqlite and
// internal/queue/postgres implement it, each with its own SQL. Times are Unix
// microseconds. Every method but Insert runs on the driver's own connection
// pool, below gorm, with statements prepared once.
type Driver interface {
	// Dialect is "sqlite" or "postgres".
	Dialect() string
	// Migrate applies the driver's numbered, embedded migrations that are
	// not yet recorded in canal_queue_schema; safe to call from several
	// processes at once.
	Migrate(ctx context.Context) error

	// Insert writes items of queue in tx, the caller's own transaction, and
	// returns their IDs. A keyed item is Held when its key has an open item
	// (pending, held, running, rescued, or dead and blocking); inserts of one
	// key are serialised until tx ends, so ID order is commit order per key.
	Insert(ctx context.Context, tx *gorm.DB, queue string, nowUS int64, items []NewItem) ([]int64, error)

	// Claim leases up to req.Limit due pending items of req.Queue to
	// req.Owner in one statement, sharing the batch between priorities by
	// req.Weights, and counts their attempt.
	Claim(ctx context.Context, req ClaimRequest) ([]Item, error)
	// ClaimRescued leases the oldest rescued item of req.Queue, if any, as
	// a solo attempt: if its lease expires too, that cut counts.
	ClaimRescued(ctx context.Context, req ClaimRequest) ([]Item, error)
	// HasRescued reports whether queue has a rescued item.
	HasRescued(ctx context.Context, queue string) (bool, error)
	// Complete records outcomes in one transaction with one set-based
	// statement each for the items, their attempts and the promotion of
	// the next held item of every key whose head finished. ok[i] is false
	// when outcome i's claim was lost (another attempt owns the item).
	Complete(ctx context.Context, outs []Outcome) (ok []bool, err error)

	// Heartbeat upserts p's row and extends to leaseUS the leases p's owner
	// holds on ids.
	Heartbeat(ctx context.Context, p ProcessRow, ids []int64, leaseUS int64) error
	// Forget deletes process id's row (at a clean stop).
	Forget(ctx context.Context, id string) error
	// Rescue moves up to limit running items whose lease ended before nowUS
	// to rescued (counting a failure for a solo attempt) and returns how many.
	Rescue(ctx context.Context, nowUS int64, limit int) (int64, error)
	// Listen calls wake(queue) whenever items of queue may have become
	// claimable in any process, until ctx ends. A driver with no
	// cross-process signal returns at once (the in-process wake and the
	// poll remain).
	Listen(ctx context.Context, wake func(queue string)) error

	// Retry makes a dead, dropped, pending (backoff) or rescued item due at once
	// with a fresh budget of failures.
	Retry(ctx context.Context, queue, publicID string, nowUS int64) (Item, error)
	// RetryDead retries every dead item of queue (of kind, if not "").
	RetryDead(ctx context.Context, queue, kind string, nowUS int64) (int64, error)
	// Delete removes an item in one of states, with its attempts.
	Delete(ctx context.Context, queue, publicID string, states []State) (Item, error)
	// Drop marks a pending or held item dropped (or cancelled) with reason.
	Drop(ctx context.Context, queue, publicID string, to State, reason string, nowUS int64) (Item, error)
	// DropOldest marks the oldest pending item of queue that has no key
	// dropped with reason and returns it, ErrNotFound if there is none (a
	// keyed item heads its key's order, which shedding must not break).
	// It runs in tx when not nil: a full-queue policy sheds in the
	// caller's transaction, where on SQLite a second connection would wait
	// for that transaction's write lock.
	DropOldest(ctx context.Context, tx *gorm.DB, queue, reason string, nowUS int64) (Item, error)
	// Import writes items of queue as they stand, in any state, with their
	// counts and times, in one transaction (fixtures, or items carried over
	// from elsewhere); ID is assigned. Insert is for new items.
	Import(ctx context.Context, queue string, items []Item) error

	// Close closes the statements the driver prepared on its pool; its
	// owner calls it when it stops. A later call prepares afresh.
	Close() error

	Reader
}

// Reader is the read side: portable SQL, shared by the drivers.
type Reader interface {
	Get(ctx context.Context, queue, publicID string) (Item, error)
	Attempts(ctx context.Context, id int64) ([]Attempt, error)
	List(ctx context.Context, q ListQuery) ([]Item, error)
	// CountByFinish counts the items f matches that finished in each of n
	// buckets of widthUS from fromUS: bucket i is [fromUS + i·widthUS,
	// fromUS + (i+1)·widthUS).
	CountByFinish(ctx context.Context, f Filter, fromUS, widthUS int64, n int) ([]int64, error)
	// LatestFinished reads up to limit items f matches, the latest finished first.
	LatestFinished(ctx context.Context, f Filter, limit int) ([]Item, error)
	// TimeToFinish is finished minus created of up to limit items f
	// matches, the latest finished first (two columns, no payloads).
	TimeToFinish(ctx context.Context, f Filter, limit int) ([]time.Duration, error)
	// CountUpTo counts the items f matches, reading at most limit of them,
	// in tx (the caller's transaction) when not nil.
	CountUpTo(ctx context.Context, tx *gorm.DB, f Filter, limit int64) (int64, error)
	// Count counts queue's items (of kind, if not "") per state, each up to
	// limit, so the cost is bounded on any table.
	Count(ctx context.Context, queue, kind string, limit int64) (map[State]int64, error)
	// OldestOpen is the creation time of the oldest pending, held, running
	// or rescued item of queue, 0 if none.
	OldestOpen(ctx context.Context, queue string) (int64, error)
	// Processes reads up to limit process rows, the latest heartbeat first.
	Processes(ctx context.Context, limit int) ([]ProcessRow, error)
	// Cleanup deletes up to limit done or dropped items of queue finished
	// before beforeUS, with their attempts.
	Cleanup(ctx context.Context, queue string, beforeUS int64, limit int) (int64, error)
}

// ClaimRequest is one claim.
type ClaimRequest struct {
	Queue   string
	Owner   string
	NowUS   int64
	LeaseUS int64 // lease end
	Limit   int
	// Weights[p] is priority p's share of a batch (8,4,2,1 gives
	// 8:4:2:1 when every priority has work; an idle priority's share goes
	// to the others). Nil: priority 0 only.
	Weights []int
}

// Outcome is the result of one attempt, or of a claim given back.
type Outcome struct {
	ID        int64
	Owner     string // the claim's owner and attempt: a lost claim is not written
	Attempt   int
	Queue     string
	Key       string
	State     State // Done, Pending (retry at RunAtUS), Dead, Dropped, Cancelled
	RunAtUS   int64
	Failures  int
	LastError string
	Blocks    bool // Dead: hold back the key
	NowUS     int64
	// GiveBack: no attempt was made (snoozed, or given up unsent): the
	// claim's count is taken back and no attempt row is written.
	GiveBack   bool
	StartedUS  int64
	DurationUS int64
	Error      string // the attempt's error
	// Meta, when not nil, replaces the item's metadata (a JSON object): a
	// handler's progress that the next attempt must see, such as the
	// destinations a fan-out already delivered to.
	Meta []byte
}

// InRow says whether the outcome's attempt is kept in the item's own row
// (started_us, duration_us) rather than as a row of the attempts table: a
// success ends the item, so its row can hold the last attempt, and the
// busiest path (an attempt that succeeds) writes one row instead of two.
// Failures, rescues and anything that runs again keep attempt rows.
func (o Outcome) InRow() bool {
	return o.State == StateDone && !o.GiveBack && o.Error == ""
}

// ProcessRow is a process's heartbeat row.
type ProcessRow struct {
	ID          string
	Host        string
	PID         int
	StartedUS   int64
	HeartbeatUS int64
	Version     string // the program's build ("devel" when unknown)
}

// Filter selects items of one queue; a zero field matches any.
type Filter struct {
	Queue      string
	States     []State
	Kind       string
	Key        string
	Priorities []int
	// Failed: true, failed since the last retry by hand (Failures > 0);
	// false, not (a first try, or retried by hand).
	Failed *bool
	// RunAt bounds, in Unix microseconds: DueBy > 0 keeps RunAt <= DueBy
	// (an item due at once has RunAt 0), DueAfter > 0 keeps RunAt > DueAfter.
	DueBy, DueAfter int64
	// FinishedAt bounds, in Unix microseconds: FinishedFrom > 0 keeps
	// FinishedAt >= FinishedFrom, FinishedBefore > 0 keeps FinishedAt <
	// FinishedBefore.
	FinishedFrom, FinishedBefore int64
}

// ListQuery selects a page of the items Filter matches, newest first (ID
// descending).
type ListQuery struct {
	Filter
	Before int64 // ID cursor; 0: from the newest
	Limit  int
}
