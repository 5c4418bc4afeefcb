package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"golang.org/x/time/rate"
)

// Priority orders work items; lower values run first, but every level gets
// a share of the workers so low never starves.
type Priority int

// Priorities, most urgent first.
const (
	Critical Priority = iota
	High
	Normal
	Low
	numPriorities = 4
)

var priorityNames = [numPriorities]string{"critical", "high", "normal", "low"}

// Priorities lists every priority, most urgent first.
func Priorities() []Priority { return []Priority{Critical, High, Normal, Low} }

func (p Priority) String() string {
	if p.valid() {
		return priorityNames[p]
	}
	return fmt.Sprintf("priority(%d)", int(p))
}

func (p Priority) valid() bool { return p >= Critical && p <= Low }

// ParsePriority reads "critical", "high", "normal" or "low"; "" is normal.
func ParsePriority(s string) (Priority, error) {
	if s == "" {
		return Normal, nil
	}
	for i, n := range priorityNames {
		if n == s {
			return Priority(i), nil
		}
	}
	return 0, fmt.Errorf("%w: %q (want critical, high, normal or low)", ErrInvalidPriority, s)
}

// MarshalText writes the priority's name.
func (p Priority) MarshalText() ([]byte, error) {
	if !p.valid() {
		return nil, fmt.Errorf("%w: %d", ErrInvalidPriority, int(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads a priority's name.
func (p *Priority) UnmarshalText(b []byte) error {
	v, err := ParsePriority(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// WorkState is where a work item is in its life.
type WorkState string

// Work item states. pending and retrying items are waiting to run; running
// ones are claimed by a worker; done, failed and dropped are final.
const (
	WorkPending  WorkState = "pending"
	WorkRunning  WorkState = "running"
	WorkRetrying WorkState = "retrying" // failed, waiting for its backoff
	WorkDone     WorkState = "done"
	WorkFailed   WorkState = "failed"  // out of attempts; LastError says why
	WorkDropped  WorkState = "dropped" // evicted from a DropOldest queue before it ran
)

// WorkItem is one-off work and its progress, as stored.
type WorkItem struct {
	ID       string          `json:"id"`
	Kind     string          `json:"kind"`
	Priority Priority        `json:"priority"`
	Payload  json.RawMessage `json:"payload,omitempty"`
	State    WorkState       `json:"state"`
	// EnqueuedBy is NewWork.EnqueuedBy ("" when the enqueuer said nothing).
	EnqueuedBy string `json:"enqueuedBy,omitempty"`
	// Attempts counts every attempt started, before and after a retry by
	// hand; Failures the failed ones since it was enqueued or last retried
	// by hand: the item fails when Failures reaches MaxAttempts.
	Attempts    int       `json:"attempts"`
	Failures    int       `json:"failures"`
	MaxAttempts int       `json:"maxAttempts"`
	LastError   string    `json:"lastError,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
	// UniqueKey and UniqueStates are NewWork.Unique's, if it had one.
	UniqueKey    string      `json:"uniqueKey,omitempty"`
	UniqueStates []WorkState `json:"uniqueStates,omitempty"`
	// RunAt is when a pending or retrying item may run next.
	RunAt      time.Time  `json:"runAt"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
}

// Round is where the item stands in its current budget of attempts: n is
// the attempt it is at (running or done: the one that ran; waiting or
// failed: the ones that failed), earlier the attempts made before its last
// retry by hand (0 if it was never retried).
func (w WorkItem) Round() (n, earlier int) {
	n = w.Failures
	if w.State == WorkRunning || w.State == WorkDone {
		n++
	}
	n = min(n, w.Attempts)
	return n, w.Attempts - n
}

// NewWork is a request to run one item of work.
type NewWork struct {
	Kind     string
	Priority Priority
	Payload  json.RawMessage // JSON; empty means null
	// EnqueuedBy says who or what enqueued it ("POST /api/work by ops",
	// "demo", a service's own name), shown on the item's page.
	EnqueuedBy string
	// Unique, if set, makes the item unique by its key: while an item with
	// the same key is in one of the states, Enqueue writes nothing and
	// returns a *DuplicateError (ErrDuplicate) naming that item.
	Unique *UniqueOpts
}

// UniqueOpts make work unique by a key, as River's UniqueOpts and asynq's
// Unique do: at most one item per key in States at any time.
type UniqueOpts struct {
	// Key is up to 255 bytes of UTF-8, unique across every kind.
	Key string
	// States are the states the key is unique across. Nil: pending
	// (scheduled too), retrying and running, so the key is free again
	// once the item is done, failed or dropped. Any other set must hold
	// those three (an item moves between them by itself, and such a move
	// must never collide) and may add done, failed and dropped.
	States []WorkState
}

// DefaultUniqueStates are UniqueOpts.States when nil.
func DefaultUniqueStates() []WorkState { return []WorkState{WorkPending, WorkRetrying, WorkRunning} }

// DuplicateError is Enqueue's error when another item holds the unique
// key: errors.Is(err, ErrDuplicate) holds, errors.As gives the holder.
type DuplicateError struct {
	Key string
	ID  string // the item that holds the key
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("unique key %q is held by work item %s", e.Key, e.ID)
}

// Is makes errors.Is(err, ErrDuplicate) hold.
func (e *DuplicateError) Is(target error) bool { return target == ErrDuplicate }

// WorkHandler does one item of work; an error means the attempt failed.
type WorkHandler func(ctx context.Context, item WorkItem) error

// KindOptions tune how items of one kind run. Zero values take defaults.
type KindOptions struct {
	// Rate limits how many items of this kind start per second (0: no
	// limit); Burst is the bucket size (default 1).
	Rate  rate.Limit
	Burst int
	// MaxAttempts bounds tries before the item fails (default 5).
	MaxAttempts int
	// BackoffBase is the first retry's delay, doubled on each retry up to
	// BackoffMax (defaults 500ms and 30s), with jitter.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// Timeout bounds one attempt (default 1m).
	Timeout time.Duration
	// BreakerFailures consecutive failures open the kind's circuit breaker
	// (default 5; negative disables it); it stays open BreakerOpenFor
	// (default 10s), then lets one probe through.
	BreakerFailures int
	BreakerOpenFor  time.Duration
}

func (o *KindOptions) defaults() {
	if o.Burst <= 0 {
		o.Burst = 1
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 500 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 30 * time.Second
	}
	if o.BackoffMax < o.BackoffBase {
		o.BackoffMax = o.BackoffBase
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	if o.BreakerFailures == 0 {
		o.BreakerFailures = 5
	}
	if o.BreakerOpenFor <= 0 {
		o.BreakerOpenFor = 10 * time.Second
	}
}

// backoff is the delay before retry number attempt (1 = first retry):
// base·2^(attempt-1) capped at max, with "equal jitter" (half fixed, half
// random) so that retries of a burst spread out but never come back at once.
func backoff(base, max time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	return half + rand.N(half+1)
}
