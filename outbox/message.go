// Package outbox is a transactional outbox on gorm: Add writes a message in
// the caller's own transaction, so a business write and the message it implies
// commit together or not at all, and a Relay then delivers every committed
// message at least once, even if the process dies at any instant.
//
// A message carries its id as an idempotency key: delivery is at-least-once,
// so receivers drop duplicates by id. Messages that share a key are delivered
// one at a time in commit order; messages with different keys (or no key) are
// delivered in parallel.
//
// Attempts count failures of a message, not of a receiver. A publisher says
// a message is bad with MessageError; any other error means its destination
// is down, and the message waits without spending an attempt. Each named
// destination (Named) has a circuit breaker: while it fails every message
// its messages wait unsent, one probe goes every Config.BreakerOpen, and
// once it gets through they go out by themselves, in key order. A Fanout of
// named destinations records on each message which ones already have it,
// so a destination that was up never gets a copy because another was down.
// The retry budget (Config.MaxAttempts, BackoffBase, BackoffMax) spans
// hours by default and Config.Budgets sets it per topic.
package outbox

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/dialect"
	"gorm.io/gorm"
)

// Errors returned by this package; test for them with errors.Is.
var (
	ErrNotFound       = errors.New("outbox: message not found")
	ErrNotDead        = errors.New("outbox: message is not dead")
	ErrNotRetryable   = errors.New("outbox: message cannot be retried in its current status")
	ErrInvalidMessage = errors.New("outbox: invalid message")
	ErrNoPublisher    = errors.New("outbox: no publisher registered for topic")
	ErrDialect        = errors.New("outbox: unsupported database dialect")
	ErrInvalidConfig  = errors.New("outbox: invalid config")
	ErrInvalidFilter  = errors.New("outbox: invalid filter")
	// ErrUnfinished: a message's attempts were cut short (its lease
	// expired mid-send) until it ran out of attempts; it is dead unsent.
	ErrUnfinished = queue.ErrGaveUp
)

// unfinishedText is the last error of a message whose attempt was cut short.
const unfinishedText = queue.CutShort

// Status is where a message is in its life.
type Status string

// The statuses of a message. Pending messages wait for their next attempt;
// inflight ones are leased by a relay; dispatched and dead ones are final
// until purged (dispatched) or retried by hand (dead).
const (
	StatusPending    Status = "pending"
	StatusInflight   Status = "inflight"
	StatusDispatched Status = "dispatched"
	StatusDead       Status = "dead"
)

// ParseStatus returns the Status named s, or false.
func ParseStatus(s string) (Status, bool) {
	switch st := Status(s); st {
	case StatusPending, StatusInflight, StatusDispatched, StatusDead:
		return st, true
	}
	return "", false
}

// Message is what a caller adds to the outbox.
type Message struct {
	// Topic selects the publisher; letters, digits, '.', '_' and '-' only,
	// so that it can also name a NATS subject.
	Topic string
	// Key orders messages: those with the same non-empty key are delivered
	// one at a time in commit order. Typically an aggregate id.
	Key string
	// Payload is marshalled to JSON; a json.RawMessage or []byte is stored
	// as is and must be valid JSON.
	Payload any
	// Headers travel with the message to the publisher. Add sets
	// "traceparent" from the context when WithTraceparent put one there.
	Headers map[string]string
}

// Delivery is what a Publisher receives: a committed message and its attempt.
type Delivery struct {
	ID        string            // UUIDv7; use it as the idempotency key
	Topic     string            //
	Key       string            //
	Payload   json.RawMessage   //
	Headers   map[string]string //
	CreatedAt time.Time         // when Add ran (UTC)
	Attempt   int               // 1 for the first attempt
}

// Publisher delivers a message somewhere. A nil error means delivered. An
// error marked with MessageError is a failed attempt of the message, retried
// with backoff until its budget is spent; any other error says the
// destination is down: the message waits, spending no attempt, behind the
// destination's circuit breaker (see Named). It must honour ctx.
type Publisher interface {
	Publish(ctx context.Context, d Delivery) error
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(ctx context.Context, d Delivery) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, d Delivery) error { return f(ctx, d) }

// HeaderTraceparent is the W3C trace-context header Add copies from ctx.
const HeaderTraceparent = "traceparent"

type traceparentKey struct{}

var traceparentRE = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

// WithTraceparent returns a context that carries a W3C traceparent
// ("00-<trace id>-<span id>-<flags>"); Add copies it into the message's
// headers so the trace continues at the receiver. An invalid value is ignored,
// so a bad incoming header never makes a business write fail. This keeps the
// package free of an OpenTelemetry dependency: a caller using otel passes the
// value its propagator would write.
func WithTraceparent(ctx context.Context, tp string) context.Context {
	if !traceparentRE.MatchString(tp) {
		return ctx
	}
	return context.WithValue(ctx, traceparentKey{}, tp)
}

// Traceparent returns the traceparent WithTraceparent put in ctx, if any.
func Traceparent(ctx context.Context) (string, bool) {
	tp, ok := ctx.Value(traceparentKey{}).(string)
	return tp, ok
}

// headerNameRE is an HTTP token (RFC 9110), which NATS accepts too.
var headerNameRE = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

var topicRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

const maxNameLen = 200

// ValidTopic reports whether s can name a topic: dot-separated letters,
// digits, '_' or '-', at most 200 bytes. A filter on any other topic can
// match nothing, so an API should refuse it as bad input.
func ValidTopic(s string) bool { return len(s) <= maxNameLen && topicRE.MatchString(s) }

// ValidID reports whether s has the form of a message id (a UUID in its
// canonical lower- or upper-case text form). Anything else names no message;
// checking first keeps odd bytes (NUL, invalid UTF-8), which PostgreSQL
// refuses in a text comparison, away from the database.
func ValidID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// validText reports whether s can be stored in a text column of both
// dialects: valid UTF-8 without NUL (PostgreSQL refuses both).
func validText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// Add writes msg in tx, the caller's own transaction, and returns its id. The
// message is delivered only if tx commits. Use Relay.Transaction to have the
// relay woken at once on commit; otherwise it finds the message at its next
// poll.
func Add(ctx context.Context, tx *gorm.DB, msg Message) (string, error) {
	return add(ctx, tx, msg, time.Now, nil)
}

// add writes msg with drv, the driver of a relay on tx's database; nil
// outside a relay (its Transaction's collector gives its own), when a
// one-shot driver that prepares nothing does it.
func add(ctx context.Context, tx *gorm.DB, msg Message, clock func() time.Time, drv queue.Driver) (string, error) {
	if tx == nil {
		return "", fmt.Errorf("%w: nil transaction", ErrInvalidMessage)
	}
	// Inside Relay.Transaction the transaction's context carries a
	// collector with the relay's clock; ctx is the caller's own.
	var col *collector
	if tctx := tx.Statement.Context; tctx != nil {
		col, _ = tctx.Value(collectorKey{}).(*collector)
		if col != nil {
			clock = col.clock
			if drv == nil {
				drv = col.drv
			}
		}
		if _, ok := Traceparent(ctx); !ok {
			if tp, ok := Traceparent(tctx); ok {
				ctx = WithTraceparent(ctx, tp)
			}
		}
	}
	now := clock().UTC()
	it, err := newItem(ctx, msg, now)
	if err != nil {
		return "", err
	}
	if drv == nil {
		// Built for this call and dropped: a driver's prepared
		// statements would stay open on the pool, one per call.
		if drv, err = dialect.OneShot(tx); err != nil {
			return "", fmt.Errorf("%w: %w", ErrDialect, err)
		}
	}
	if _, err := queue.Insert(ctx, drv, tx, queueName, now, it); err != nil {
		return "", fmt.Errorf("outbox add: %w", err)
	}
	if col != nil {
		col.add(Summary{ID: it.PublicID, Topic: it.Kind, Key: it.Key, Status: StatusPending, CreatedAt: now})
	}
	return it.PublicID, nil
}

func newItem(ctx context.Context, msg Message, now time.Time) (queue.NewItem, error) {
	if !ValidTopic(msg.Topic) {
		return queue.NewItem{}, fmt.Errorf("%w: topic %q must be dot-separated letters, digits, '_' or '-'", ErrInvalidMessage, msg.Topic)
	}
	if len(msg.Key) > maxNameLen {
		return queue.NewItem{}, fmt.Errorf("%w: key longer than %d bytes", ErrInvalidMessage, maxNameLen)
	}
	if !validText(msg.Key) {
		return queue.NewItem{}, fmt.Errorf("%w: key must be UTF-8 text without NUL", ErrInvalidMessage)
	}
	payload, err := encodePayload(msg.Payload)
	if err != nil {
		return queue.NewItem{}, err
	}
	headers := make(map[string]string, len(msg.Headers)+1)
	for k, v := range msg.Headers {
		// A header a publisher cannot send (HTTP refuses such names and
		// line breaks in values) would fail every attempt and go dead.
		if !headerNameRE.MatchString(k) || !validText(v) || strings.ContainsAny(v, "\r\n") {
			return queue.NewItem{}, fmt.Errorf("%w: header %q: want a name of letters, digits or !#$%%&'*+-.^_`|~ and a value on one line of UTF-8 text", ErrInvalidMessage, k)
		}
		headers[k] = v
	}
	if tp, ok := Traceparent(ctx); ok {
		if _, set := headers[HeaderTraceparent]; !set {
			headers[HeaderTraceparent] = tp
		}
	}
	hb, err := json.Marshal(headers)
	if err != nil {
		return queue.NewItem{}, fmt.Errorf("%w: headers: %w", ErrInvalidMessage, err)
	}
	return queue.NewItem{
		PublicID: NewID(now), Kind: msg.Topic, Key: msg.Key,
		Payload: payload, Meta: hb, CreatedAt: now,
		// RunAt zero: due at once, whatever the relay's clock says.
	}, nil
}

func encodePayload(p any) ([]byte, error) {
	var b []byte
	switch v := p.(type) {
	case nil:
		return []byte("null"), nil
	case json.RawMessage:
		b = v
	case []byte:
		b = v
	default:
		enc, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%w: payload: %w", ErrInvalidMessage, err)
		}
		return enc, nil
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%w: payload is not valid JSON", ErrInvalidMessage)
	}
	// json.Valid lets invalid UTF-8 through inside strings; PostgreSQL
	// would refuse it and fail the caller's transaction with a driver error.
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: payload is not valid UTF-8", ErrInvalidMessage)
	}
	return b, nil
}

// NewID returns a UUIDv7 (RFC 9562) for time now: 48 bits of Unix
// milliseconds then random bits, so ids sort roughly by creation time and
// index well. Message ids are made with it; the engine's bigint id (Record.Seq),
// not this one, gives the exact order.
func NewID(now time.Time) string {
	var u [16]byte
	rand.Read(u[6:]) // never fails since Go 1.24
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(now.UnixMilli()))
	copy(u[0:6], ms[2:8])
	u[6] = 0x70 | (u[6] & 0x0f) // version 7
	u[8] = 0x80 | (u[8] & 0x3f) // variant 10
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], u[10:16])
	return string(s[:])
}

// collector gathers the summaries of the messages added in one
// Relay.Transaction, to announce them after commit.
type collector struct {
	clock func() time.Time
	drv   queue.Driver // the relay's: its statements are prepared once
	added []Summary
}

type collectorKey struct{}

func (c *collector) add(s Summary) { c.added = append(c.added, s) }
