package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/canalhq/canal/internal/migratelock"
	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/dialect"
	"gorm.io/gorm"
)

// queueName is the outbox's use of the queue engine: its messages are the
// engine's items of this queue, their topic the item's kind.
const queueName = "outbox"

// Migrate creates or updates the engine's tables (the outbox keeps no
// tables of its own) and adopts those of an older Canal. It is idempotent,
// and processes started together take turns (migratelock).
func Migrate(ctx context.Context, db *gorm.DB) error {
	drv, err := dialect.For(db)
	if err != nil {
		return fmt.Errorf("outbox migrate: %w: %w", ErrDialect, err)
	}
	if err := migratelock.Do(ctx, db, drv.Migrate); err != nil {
		return fmt.Errorf("outbox migrate: %w", err)
	}
	return nil
}

// status is the outbox's name for an engine state: held (behind its key)
// and rescued (cut short, to be sent again alone) are still pending.
func status(s queue.State) Status {
	switch s {
	case queue.StateRunning:
		return StatusInflight
	case queue.StateDone:
		return StatusDispatched
	case queue.StateDead, queue.StateDropped, queue.StateCancelled:
		return StatusDead
	}
	return StatusPending
}

// states are the engine states of an outbox status.
func states(s Status) []queue.State {
	switch s {
	case StatusPending:
		return []queue.State{queue.StatePending, queue.StateHeld, queue.StateRescued}
	case StatusInflight:
		return []queue.State{queue.StateRunning}
	case StatusDispatched:
		return []queue.State{queue.StateDone}
	case StatusDead:
		return []queue.State{queue.StateDead}
	}
	return nil
}

func summary(it queue.Item) Summary {
	return Summary{
		ID: it.PublicID, Topic: it.Kind, Key: it.Key, Status: status(it.State),
		Attempts: it.Attempt, LastError: it.LastError, CreatedAt: it.CreatedAt,
	}
}

func record(it queue.Item) Record {
	rec := Record{
		ID: it.PublicID, Seq: it.ID, Topic: it.Kind, Key: it.Key,
		Payload: it.Payload, Status: status(it.State),
		Attempts: it.Attempt, Failures: it.Failures, LastError: it.LastError,
		BlocksKey: it.State == queue.StateDead && it.Blocks,
		CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt,
	}
	_ = json.Unmarshal(it.Meta, &rec.Headers)
	if v, ok := rec.Headers[DeliveredMeta]; ok {
		rec.DeliveredTo = parseDelivered(v)
		delete(rec.Headers, DeliveredMeta)
	}
	switch rec.Status {
	case StatusPending:
		if !it.RunAt.IsZero() {
			at := it.RunAt
			rec.NextAttemptAt = &at
		}
	case StatusInflight:
		at := it.LeaseUntil
		rec.LeaseUntil = &at
	case StatusDispatched:
		at := it.FinishedAt
		rec.DispatchedAt = &at
	}
	return rec
}

// delivery is what publishers get of it, and the destinations that
// already have it (the metadata's DeliveredMeta, kept from publishers).
func delivery(it *queue.Item) (Delivery, []string) {
	d := Delivery{
		ID: it.PublicID, Topic: it.Kind, Key: it.Key, Payload: it.Payload,
		CreatedAt: it.CreatedAt, Attempt: it.Attempt, // the claim counted it
	}
	var delivered []string
	if len(it.Meta) > len("{}") { // most messages have no headers: no map, no decoding
		_ = json.Unmarshal(it.Meta, &d.Headers)
		if v, ok := d.Headers[DeliveredMeta]; ok {
			delivered = parseDelivered(v)
			delete(d.Headers, DeliveredMeta)
			if len(d.Headers) == 0 {
				d.Headers = nil
			}
		}
	}
	return d, delivered
}

// withDelivered is meta (a JSON object of strings) recording delivered.
func withDelivered(meta json.RawMessage, delivered []string) json.RawMessage {
	m := map[string]string{}
	_ = json.Unmarshal(meta, &m)
	m[DeliveredMeta] = strings.Join(delivered, ",")
	b, err := json.Marshal(m)
	if err != nil {
		return meta
	}
	return b
}

func attempt(a queue.Attempt) Attempt {
	return Attempt{Number: a.Number, StartedAt: a.Started, Duration: a.Duration, Error: a.Error}
}

// Summary is the short form of a message carried by events.
type Summary struct {
	ID        string    `json:"id"`
	Topic     string    `json:"topic"`
	Key       string    `json:"key,omitempty"`
	Status    Status    `json:"status"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"lastError,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// Record is a stored message as the admin API shows it.
type Record struct {
	ID        string            `json:"id"`
	Seq       int64             `json:"seq"`
	Topic     string            `json:"topic"`
	Key       string            `json:"key,omitempty"`
	Payload   json.RawMessage   `json:"payload"`
	Headers   map[string]string `json:"headers,omitempty"`
	Status    Status            `json:"status"`
	Attempts  int               `json:"attempts"`
	Failures  int               `json:"failures"` // failed attempts since the last manual retry
	LastError string            `json:"lastError,omitempty"`
	// BlocksKey is set on a dead message that holds back later messages of
	// its key until it is retried or deleted.
	BlocksKey     bool       `json:"blocksKey,omitempty"`
	CreatedAt     time.Time  `json:"createdAt"`
	UpdatedAt     time.Time  `json:"updatedAt"`
	NextAttemptAt *time.Time `json:"nextAttemptAt,omitempty"` // pending only
	LeaseUntil    *time.Time `json:"leaseUntil,omitempty"`    // inflight only
	DispatchedAt  *time.Time `json:"dispatchedAt,omitempty"`
	// DeliveredTo are the destinations (see Named) of a fan-out that
	// already have the message: a later attempt skips them.
	DeliveredTo []string `json:"deliveredTo,omitempty"`
	// AttemptLog is filled by Relay.Get only.
	AttemptLog []Attempt `json:"attemptLog,omitempty"`
}

// Attempt is one try at delivering a message.
type Attempt struct {
	Number    int           `json:"number"`
	StartedAt time.Time     `json:"startedAt,omitzero"`
	Duration  time.Duration `json:"durationNs"`
	Error     string        `json:"error,omitempty"`
	// Unfinished is an attempt that was cut short (the process died or the
	// publisher hung past its lease): nothing recorded its start or end. It
	// counted as a failure only if the message was out alone (a suspect).
	Unfinished bool `json:"unfinished,omitempty"`
}
