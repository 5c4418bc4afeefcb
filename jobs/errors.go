package jobs

import "errors"

// Errors returned by the Processor, its channels and its store; test them
// with errors.Is.
var (
	ErrUnknownJob      = errors.New("unknown job")
	ErrAlreadyRunning  = errors.New("job is already running")
	ErrNotRunning      = errors.New("job is not running")
	ErrInvalidInterval = errors.New("invalid interval")
	ErrDuplicateJob    = errors.New("job already registered")
	ErrClosed          = errors.New("processor is closed")

	// ErrFull: a channel was full and the new item was not taken (DropNewest,
	// or Wait past the caller's deadline). Nothing was accepted.
	ErrFull = errors.New("queue is full")
	// ErrDropped: a queued command was evicted by a newer one (DropOldest).
	ErrDropped = errors.New("dropped by a newer item")
	// ErrInvalidPolicy: an unknown full-channel policy name.
	ErrInvalidPolicy = errors.New("invalid full-channel policy")

	ErrUnknownKind     = errors.New("unknown work kind")
	ErrDuplicateKind   = errors.New("work kind already registered")
	ErrInvalidPriority = errors.New("invalid priority")
	ErrInvalidPayload  = errors.New("invalid payload")
	ErrUnknownWork     = errors.New("unknown work item")
	// ErrWorkState: the work item is not in a state that allows the
	// command (retry: failed or dropped; delete: done, failed or dropped).
	ErrWorkState = errors.New("work item is not in a state that allows this")
	// ErrNoStore: work items need a Store; the processor has none.
	ErrNoStore = errors.New("no work store configured")
	// ErrDuplicate: another work item holds the new one's unique key (the
	// error is a *DuplicateError naming it).
	ErrDuplicate = errors.New("duplicate work item")
	// ErrInvalidUnique: NewWork.Unique has no key, a key too long, or
	// states that are unknown or leave out pending, retrying or running.
	ErrInvalidUnique = errors.New("invalid unique options")
	// ErrDialect: the database's dialect has no store implementation.
	ErrDialect = errors.New("unsupported database dialect")
)

// Errors of the history queries (Runs, ListWork); test them with errors.Is.
var (
	ErrInvalidLimit  = errors.New("invalid page limit")
	ErrInvalidCursor = errors.New("invalid page cursor")
	ErrInvalidState  = errors.New("invalid work state")
)
