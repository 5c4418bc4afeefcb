package outbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/canalhq/canal/internal/queue"
)

// Page is one page of List, newest first.
type Page struct {
	Items []Record `json:"items"`
	// Next is the Before cursor of the following page, "" on the last.
	Next string `json:"next,omitempty"`
}

// ParseCursor reads a Page.Next cursor; ok is false if it is not one.
func ParseCursor(s string) (before int64, ok bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

// List returns a page of messages, newest first, paged by a keyset cursor so
// that deep pages cost what the first does.
func (r *Relay) List(ctx context.Context, f ListFilter) (Page, error) {
	if f.Status != "" {
		if _, ok := ParseStatus(string(f.Status)); !ok {
			return Page{}, fmt.Errorf("%w: status %q", ErrInvalidFilter, f.Status)
		}
	}
	if f.Topic != "" && !ValidTopic(f.Topic) {
		return Page{}, fmt.Errorf("%w: topic %q", ErrInvalidFilter, f.Topic)
	}
	if len(f.Key) > 200 {
		return Page{}, fmt.Errorf("%w: key longer than 200 bytes", ErrInvalidFilter)
	}
	if !utf8.ValidString(f.Key) || strings.ContainsRune(f.Key, 0) {
		// PostgreSQL refuses these bytes in text (SQLSTATE 22021).
		return Page{}, fmt.Errorf("%w: key must be UTF-8 text without NUL", ErrInvalidFilter)
	}
	if f.Limit < 0 || f.Limit > MaxPage || f.Before < 0 {
		return Page{}, fmt.Errorf("%w: limit must be 1..%d and before positive", ErrInvalidFilter, MaxPage)
	}
	if f.Limit == 0 {
		f.Limit = DefaultPage
	}
	// One more row than asked tells whether there is a next page.
	want := f.Limit
	f.Limit++
	rows, err := r.drv.List(ctx, queue.ListQuery{Filter: queue.Filter{Queue: queueName, States: states(f.Status), Kind: f.Topic, Key: f.Key}, Before: f.Before, Limit: f.Limit})
	if err != nil {
		return Page{}, fmt.Errorf("list messages: %w", err)
	}
	p := Page{Items: make([]Record, 0, min(len(rows), want))}
	for i, row := range rows {
		if i == want {
			p.Next = strconv.FormatInt(rows[want-1].ID, 10)
			break
		}
		p.Items = append(p.Items, record(row))
	}
	return p, nil
}

// Get returns a message with its attempts.
func (r *Relay) Get(ctx context.Context, id string) (Record, error) {
	if !ValidID(id) {
		return Record{}, ErrNotFound
	}
	it, err := r.drv.Get(ctx, queueName, id)
	if errors.Is(err, queue.ErrNotFound) {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, fmt.Errorf("get message: %w", err)
	}
	atts, err := r.drv.Attempts(ctx, it.ID)
	if err != nil {
		return Record{}, fmt.Errorf("get message: %w", err)
	}
	rec := record(it)
	rec.AttemptLog = attemptLog(rec, atts, r.now())
	return rec, nil
}

// attemptLog lists every attempt of rec in order. Claims count attempts and
// finished ones are recorded, so a number without a row is an attempt that
// was cut short, except the current one of a message whose lease still
// holds at now.
func attemptLog(rec Record, atts []queue.Attempt, now time.Time) []Attempt {
	byNumber := make(map[int]queue.Attempt, len(atts))
	for _, a := range atts {
		byNumber[a.Number] = a
	}
	log := make([]Attempt, 0, rec.Attempts)
	for n := 1; n <= rec.Attempts; n++ {
		if a, ok := byNumber[n]; ok {
			log = append(log, attempt(a))
			continue
		}
		if n == rec.Attempts && rec.Status == StatusInflight && rec.LeaseUntil != nil && rec.LeaseUntil.After(now) {
			break // under way
		}
		log = append(log, Attempt{Number: n, Error: unfinishedText, Unfinished: true})
	}
	return log
}

// Retry makes a dead message pending again with a fresh budget of attempts,
// or makes a pending one due now. Other statuses give ErrNotRetryable.
func (r *Relay) Retry(ctx context.Context, id string) (Record, error) {
	if !ValidID(id) {
		return Record{}, ErrNotFound
	}
	now := r.now()
	it, err := r.drv.Retry(ctx, queueName, id, now.UnixMicro())
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return Record{}, fmt.Errorf("retry message %s: %w", id, ErrNotFound)
	case errors.Is(err, queue.ErrState):
		return Record{}, fmt.Errorf("retry message %s: %w: %w", id, ErrNotRetryable, err)
	case err != nil:
		return Record{}, fmt.Errorf("retry message %s: %w", id, err)
	}
	r.Wake()
	sum := summary(it)
	r.emit(Event{Type: EventRetried, At: now, Message: &sum})
	r.refreshStats()
	return record(it), nil
}

// RetryDead retries every dead message, or those of topic when it is not
// empty, and returns how many. A topic no message can have gives
// ErrInvalidFilter.
func (r *Relay) RetryDead(ctx context.Context, topic string) (int64, error) {
	if topic != "" && !ValidTopic(topic) {
		return 0, fmt.Errorf("%w: topic %q", ErrInvalidFilter, topic)
	}
	now := r.now()
	n, err := r.drv.RetryDead(ctx, queueName, topic, now.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("retry dead messages: %w", err)
	}
	if n > 0 {
		r.Wake()
		r.emit(Event{Type: EventRetried, At: now, Topic: topic, Count: n})
		r.refreshStats()
	}
	return n, nil
}

// Delete removes a dead message and its attempts: ErrNotDead for any other.
func (r *Relay) Delete(ctx context.Context, id string) error {
	if !ValidID(id) {
		return ErrNotFound
	}
	it, err := r.drv.Delete(ctx, queueName, id, []queue.State{queue.StateDead})
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return fmt.Errorf("delete message %s: %w", id, ErrNotFound)
	case errors.Is(err, queue.ErrState):
		return fmt.Errorf("delete message %s: %w: %w", id, ErrNotDead, err)
	case err != nil:
		return fmt.Errorf("delete message %s: %w", id, err)
	}
	// A dead message that blocked its key no longer does: wake the relay.
	r.Wake()
	sum := summary(it)
	r.emit(Event{Type: EventDeleted, At: r.now(), Message: &sum})
	r.refreshStats()
	return nil
}

// Stats returns the last snapshot of the running relay, so that any number of
// viewers cost no query; when it is not running, it reads them now.
func (r *Relay) Stats(ctx context.Context) (Stats, error) {
	if s := r.stats.Load(); s != nil {
		return *s, nil
	}
	return r.dbStats(ctx)
}

// ListFilter selects a page of messages, newest first.
type ListFilter struct {
	Status Status // empty: any
	Topic  string // empty: any
	Key    string // empty: any
	Before int64  // a seq cursor from Page.Next; 0: from the newest
	Limit  int    // 1..MaxPage; 0 means DefaultPage
}

// Page sizes for List.
const (
	DefaultPage = 50
	MaxPage     = 500
)
