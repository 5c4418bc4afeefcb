package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// Times are stored as Unix microseconds (UTC by definition) in BIGINT
// columns: comparisons are then plain integer comparisons on both SQLite and
// PostgreSQL, where SQLite would otherwise compare time strings as text.
//
// due_us is the one column the claim query and the cleaner need: for a
// pending message it is the earliest time of its next attempt, for an
// inflight one the expiry of its lease, for a dispatched or dead one the time
// it got there. One column keeps the claim on one (status, due_us) index.
type messageRow struct {
	Seq        int64  `gorm:"column:seq;primaryKey;autoIncrement"`
	ID         string `gorm:"column:id;size:36;not null;uniqueIndex:canal_outbox_messages_id"`
	Topic      string `gorm:"column:topic;size:200;not null"`
	Key        string `gorm:"column:msg_key;size:200;not null;default:''"`
	Payload    string `gorm:"column:payload;type:text;not null"`
	Headers    string `gorm:"column:headers;type:text;not null"`
	Status     string `gorm:"column:status;size:16;not null;index:canal_outbox_messages_claim,priority:1"`
	DueUS      int64  `gorm:"column:due_us;not null;default:0;index:canal_outbox_messages_claim,priority:2"`
	Attempts   int    `gorm:"column:attempts;not null;default:0"`
	Failures   int    `gorm:"column:failures;not null;default:0"`
	LastError  string `gorm:"column:last_error;type:text;not null;default:''"`
	Blocks     bool   `gorm:"column:blocks;not null;default:false"`
	ClaimToken string `gorm:"column:claim_token;size:36;not null;default:''"`
	CreatedUS  int64  `gorm:"column:created_us;not null"`
	UpdatedUS  int64  `gorm:"column:updated_us;not null"`
	DoneUS     int64  `gorm:"column:dispatched_us;not null;default:0"`
}

func (messageRow) TableName() string { return "canal_outbox_messages" }

type attemptRow struct {
	MessageID  string `gorm:"column:message_id;size:36;primaryKey"`
	Number     int    `gorm:"column:number;primaryKey"`
	StartedUS  int64  `gorm:"column:started_us;not null"`
	DurationUS int64  `gorm:"column:duration_us;not null"`
	Error      string `gorm:"column:error;type:text;not null;default:''"`
}

func (attemptRow) TableName() string { return "canal_outbox_attempts" }

// Migrate creates or updates the outbox tables and indexes. It is idempotent.
func Migrate(ctx context.Context, db *gorm.DB) error {
	db = db.WithContext(ctx)
	if err := db.AutoMigrate(&messageRow{}, &attemptRow{}); err != nil {
		return fmt.Errorf("outbox migrate: %w", err)
	}
	for _, q := range []string{
		// Paging by status, newest first, and the oldest pending message.
		`CREATE INDEX IF NOT EXISTS canal_outbox_messages_status_seq ON canal_outbox_messages (status, seq)`,
		// The per-key ordering check looks only at unfinished messages of a
		// key; dispatched ones (the bulk of the table) stay out of it.
		`CREATE INDEX IF NOT EXISTS canal_outbox_messages_key_open ON canal_outbox_messages (msg_key, seq) WHERE status <> 'dispatched'`,
		// The claim's ordered walks over pending and inflight rows. Partial
		// indexes hold only those rows, so a walk never wades through the
		// dispatched ones, and PostgreSQL's planner picks them even before
		// it has statistics (it chose the primary key, and a scan of every
		// dispatched row per claim, without them).
		`CREATE INDEX IF NOT EXISTS canal_outbox_messages_pending_seq ON canal_outbox_messages (seq) WHERE status = 'pending'`,
		`CREATE INDEX IF NOT EXISTS canal_outbox_messages_inflight_seq ON canal_outbox_messages (seq) WHERE status = 'inflight'`,
		// The few inflight rows by key, for the check that a key has none.
		`CREATE INDEX IF NOT EXISTS canal_outbox_messages_key_inflight ON canal_outbox_messages (msg_key) WHERE status = 'inflight'`,
	} {
		if err := db.Exec(q).Error; err != nil {
			return fmt.Errorf("outbox migrate: %w", err)
		}
	}
	return nil
}

func fromUS(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
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

func (r messageRow) summary() Summary {
	return Summary{
		ID: r.ID, Topic: r.Topic, Key: r.Key, Status: Status(r.Status),
		Attempts: r.Attempts, LastError: r.LastError, CreatedAt: fromUS(r.CreatedUS),
	}
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

func (r messageRow) record() Record {
	rec := Record{
		ID: r.ID, Seq: r.Seq, Topic: r.Topic, Key: r.Key,
		Payload: json.RawMessage(r.Payload), Status: Status(r.Status),
		Attempts: r.Attempts, Failures: r.Failures, LastError: r.LastError,
		BlocksKey: r.Status == string(StatusDead) && r.Blocks,
		CreatedAt: fromUS(r.CreatedUS), UpdatedAt: fromUS(r.UpdatedUS),
	}
	_ = json.Unmarshal([]byte(r.Headers), &rec.Headers)
	due := fromUS(r.DueUS)
	switch Status(r.Status) {
	case StatusPending:
		if r.DueUS != 0 {
			rec.NextAttemptAt = &due
		}
	case StatusInflight:
		rec.LeaseUntil = &due
	}
	if r.DoneUS != 0 {
		d := fromUS(r.DoneUS)
		rec.DispatchedAt = &d
	}
	return rec
}

func (r messageRow) delivery() Delivery {
	d := Delivery{
		ID: r.ID, Topic: r.Topic, Key: r.Key, Payload: json.RawMessage(r.Payload),
		CreatedAt: fromUS(r.CreatedUS), Attempt: r.Attempts, // claim counted it
	}
	_ = json.Unmarshal([]byte(r.Headers), &d.Headers)
	return d
}

func (a attemptRow) attempt() Attempt {
	return Attempt{
		Number: a.Number, StartedAt: fromUS(a.StartedUS),
		Duration: time.Duration(a.DurationUS) * time.Microsecond, Error: a.Error,
	}
}
