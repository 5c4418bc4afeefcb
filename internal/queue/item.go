package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors of the engine and its drivers; test with errors.Is.
var (
	ErrNotFound      = errors.New("queue: item not found")
	ErrState         = errors.New("queue: item is not in a state that allows this")
	ErrInvalidItem   = errors.New("queue: invalid item")
	ErrDialect       = errors.New("queue: unsupported database dialect")
	ErrInvalidConfig = errors.New("queue: invalid config")
	ErrStopped       = errors.New("queue: client is not running")
	ErrUnknownState  = errors.New("queue: unknown state")
	// ErrDuplicate: an item holding the new item's unique key is in one of
	// its unique states; the error is a *DuplicateError naming it.
	ErrDuplicate = errors.New("queue: an item with this unique key exists")
)

// DuplicateError is Insert's error when NewItem.UniqueKey is held by
// another item: errors.Is(err, ErrDuplicate) holds, errors.As gives it.
type DuplicateError struct {
	UniqueKey string
	ID        int64  // the existing item's
	PublicID  string // the existing item's
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("queue: unique key %q is held by item %s", e.UniqueKey, e.PublicID)
}

// Is makes errors.Is(err, ErrDuplicate) hold.
func (e *DuplicateError) Is(target error) bool { return target == ErrDuplicate }

// State is where an item is in its life.
type State string

// The states of an item. Pending, Held and Rescued wait; Running is leased
// to a process; Done, Dead, Dropped and Cancelled are final (Dead until
// retried by hand).
const (
	StatePending   State = "pending"   // claimable once RunAt is due
	StateHeld      State = "held"      // keyed, behind an open item of its key
	StateRunning   State = "running"   // leased to Owner until LeaseUntil
	StateRescued   State = "rescued"   // its lease expired mid-attempt: a suspect
	StateDone      State = "done"      //
	StateDead      State = "dead"      // out of attempts, or permanent failure
	StateDropped   State = "dropped"   // shed before it ran (a full-queue policy)
	StateCancelled State = "cancelled" // cancelled by hand
)

// States lists every state.
func States() []State {
	return []State{StatePending, StateHeld, StateRunning, StateRescued, StateDone, StateDead, StateDropped, StateCancelled}
}

// Final reports whether s is an end state.
func (s State) Final() bool {
	switch s {
	case StateDone, StateDead, StateDropped, StateCancelled:
		return true
	}
	return false
}

// Item is one stored item as the engine sees it.
type Item struct {
	ID          int64  // commit order within a key; the claim's order
	PublicID    string // what users see
	Queue       string // the use: "outbox", "work"
	Kind        string // topic or work kind
	Key         string // items of one non-empty key run one at a time in ID order
	Priority    int    // 0 is the most urgent; see Config.Weights
	Payload     json.RawMessage
	Meta        json.RawMessage // headers or other metadata, a JSON object
	State       State
	Attempt     int  // attempts started (counted at claim)
	Failures    int  // failed attempts since the last retry by hand
	MaxAttempts int  // 0: the Client's default
	Blocks      bool // a dead item that holds back its key
	LastError   string
	RunAt       time.Time // earliest next claim; zero: at once
	LeaseUntil  time.Time // running only
	Owner       string    // the claiming process, running only
	CreatedAt   time.Time
	UpdatedAt   time.Time
	StartedAt   time.Time // the current or last attempt's claim
	FinishedAt  time.Time // reached a final state
	// UniqueKey and UniqueStates are NewItem's: while the item is in one
	// of UniqueStates no other item of the queue takes UniqueKey.
	UniqueKey    string
	UniqueStates []State

	newMeta json.RawMessage // set by SetMeta during an attempt
}

// SetMeta replaces the item's metadata (a JSON object) from inside a
// Handler: the outcome of the attempt, whatever it is (done, retry, dead,
// snoozed), saves it with the item, so the next attempt starts from it.
func (it *Item) SetMeta(meta json.RawMessage) {
	it.Meta, it.newMeta = meta, meta
}

// NewItem is what a use inserts.
type NewItem struct {
	PublicID    string // required, unique within the queue
	Kind        string // required
	Key         string
	Priority    int
	Payload     json.RawMessage // valid JSON; nil is stored as null
	Meta        json.RawMessage // a JSON object; nil is {}
	MaxAttempts int             // 0: the Client's default
	RunAt       time.Time       // zero: at once, whatever any clock says
	CreatedAt   time.Time       // zero: now
	// State is the starting state: zero (pending, or held behind its key)
	// or StateDropped, to record an item refused at intake.
	State     State
	LastError string // with StateDropped: why
	// UniqueKey, if not "", is unique within the queue among items in one
	// of UniqueStates (nil: UniqueOpen): Insert returns a *DuplicateError
	// naming the item that holds it, and writes nothing. Once that item
	// leaves those states (done, say) the key is free again.
	UniqueKey    string
	UniqueStates []State
}

// UniqueOpen are the states an item moves between by itself (waiting,
// running, cut short): every UniqueStates includes them, so that no state
// change the engine makes on its own can collide with another item's key.
// A change by hand can (a retry of a dead item whose key a newer item took):
// it is refused (Retry says ErrDuplicate; RetryDead leaves the item dead).
func UniqueOpen() []State {
	return []State{StatePending, StateHeld, StateRunning, StateRescued}
}

// UniqueMask is states as the bit set stored with a unique item: bit i is
// States()[i] (the order the drivers' unique index spells out).
func UniqueMask(states []State) int64 {
	var m int64
	for i, s := range States() {
		if slices.Contains(states, s) {
			m |= 1 << i
		}
	}
	return m
}

// UniqueStatesOf is the inverse of UniqueMask.
func UniqueStatesOf(mask int64) []State {
	var out []State
	for i, s := range States() {
		if mask&(1<<i) != 0 {
			out = append(out, s)
		}
	}
	return out
}

// Attempt is one recorded attempt of an item, written by the completer.
type Attempt struct {
	ItemID   int64
	Number   int
	Started  time.Time
	Duration time.Duration
	Error    string
}

// MaxText bounds the error text stored per attempt.
const MaxText = 2048

// Text makes s storable in a text column of every dialect: valid UTF-8
// without NUL, at most MaxText bytes. An error may quote what a receiver
// answered; stored as is, it would fail the whole completion batch.
func Text(s string) string {
	if len(s) > MaxText {
		s = s[:MaxText]
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// ValidText reports whether s can be stored as is (UTF-8, no NUL).
func ValidText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

func (n NewItem) validate() error {
	switch {
	case n.PublicID == "" || !ValidText(n.PublicID) || len(n.PublicID) > 200:
		return fmt.Errorf("%w: public id must be 1..200 bytes of UTF-8", ErrInvalidItem)
	case n.Kind == "" || !ValidText(n.Kind) || len(n.Kind) > 200:
		return fmt.Errorf("%w: kind must be 1..200 bytes of UTF-8", ErrInvalidItem)
	case !ValidText(n.Key) || len(n.Key) > 200:
		return fmt.Errorf("%w: key must be at most 200 bytes of UTF-8", ErrInvalidItem)
	case n.State != "" && n.State != StatePending && n.State != StateDropped:
		return fmt.Errorf("%w: start state %q", ErrInvalidItem, n.State)
	case n.UniqueKey == "" && n.UniqueStates != nil:
		return fmt.Errorf("%w: unique states without a unique key", ErrInvalidItem)
	case !ValidText(n.UniqueKey) || len(n.UniqueKey) > 255:
		return fmt.Errorf("%w: unique key must be at most 255 bytes of UTF-8", ErrInvalidItem)
	case n.Payload != nil && !json.Valid(n.Payload):
		return fmt.Errorf("%w: payload is not valid JSON", ErrInvalidItem)
	case n.Meta != nil && !json.Valid(n.Meta):
		return fmt.Errorf("%w: meta is not valid JSON", ErrInvalidItem)
	}
	for _, s := range n.UniqueStates {
		if !slices.Contains(States(), s) {
			return fmt.Errorf("%w: unique state %q", ErrInvalidItem, s)
		}
	}
	if n.UniqueStates != nil {
		for _, s := range UniqueOpen() {
			if !slices.Contains(n.UniqueStates, s) {
				return fmt.Errorf("%w: unique states must include %s (and pending, held, running, rescued)", ErrInvalidItem, s)
			}
		}
	}
	return nil
}

// UniqueMaskOf is the bit set a NewItem's unique key is stored with.
func (n NewItem) UniqueMaskOf() int64 {
	if n.UniqueStates == nil {
		return UniqueMask(UniqueOpen())
	}
	return UniqueMask(n.UniqueStates)
}

// US is t in Unix microseconds, 0 for the zero time: how every time is
// stored (BIGINT), so comparisons are integer comparisons on every dialect.
func US(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// FromUS is the inverse of US, in UTC.
func FromUS(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}
