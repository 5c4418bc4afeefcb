// Package audit stores who did what to Canal: every command and write, with
// who (and in which role), when, from where, on what, and how it ended.
// Entries are kept for a retention and then deleted by Pruner. Routine
// writes that would swamp the log (an API's intake at hundreds a second)
// are summarised by Tally: one row per caller, action and outcome a minute,
// with the number of requests it stands for in Count.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/canalhq/canal/internal/migratelock"
	"github.com/canalhq/canal/internal/outage"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Entry is one recorded action.
type Entry struct {
	ID        int64     `json:"id" gorm:"primaryKey;autoIncrement"`
	At        time.Time `json:"at" gorm:"not null;index"`
	Who       string    `json:"who" gorm:"size:200;not null;index"`
	Role      string    `json:"role" gorm:"size:20;not null"`
	Via       string    `json:"via" gorm:"size:20;not null"`   // bearer, session, open
	From      string    `json:"from" gorm:"size:100;not null"` // client address
	Action    string    `json:"action" gorm:"size:100;not null;index"`
	Target    string    `json:"target,omitempty" gorm:"size:300"`
	Result    string    `json:"result" gorm:"size:20;not null"` // ok, failed, denied
	Status    int       `json:"status"`
	Detail    string    `json:"detail,omitempty" gorm:"size:1000"`
	RequestID string    `json:"requestId,omitempty" gorm:"size:100"`
	// Count is how many requests the row stands for: 1 for Record's, the
	// minute's total for Tally's summary (the first one's time, detail and
	// request id).
	Count int64 `json:"count" gorm:"not null;default:1"`
	// Bucket is a summary's key (caller, action, outcome and minute); nil
	// for a single action's row. Unique: the minute's requests add to it.
	Bucket *string `json:"-" gorm:"size:64;uniqueIndex"`

	key string `gorm:"-"` // Bucket, kept while the entry is held in memory
}

// TableName keeps the table beside Canal's others.
func (Entry) TableName() string { return "canal_audit" }

// Results.
const (
	ResultOK     = "ok"
	ResultFailed = "failed"
	ResultDenied = "denied"
)

// Migrate creates or updates the audit table.
func Migrate(ctx context.Context, db *gorm.DB) error {
	err := migratelock.Do(ctx, db, func(ctx context.Context) error {
		return db.WithContext(ctx).AutoMigrate(&Entry{})
	})
	if err != nil {
		return fmt.Errorf("audit: migrate: %w", err)
	}
	return nil
}

// Log is the stored audit log.
type Log struct {
	db *gorm.DB
	// held are entries the database could not take while it was away,
	// written, in order, before the next entry (or by Flush); bounded.
	mu   sync.Mutex
	held []Entry
}

// flushEvery is how often Pruner.Run writes the entries kept while the
// database was away.
const flushEvery = 5 * time.Second

// maxHeld bounds the entries kept while the database is away; past it the
// oldest are dropped and counted in the error.
const maxHeld = 10000

// ErrHeld: the database is away; the entry is kept in memory and written
// when it is back (Flush, or the next Record).
var ErrHeld = errors.New("audit: database unavailable; entry kept until it is back")

// New returns the log on db (migrated by Migrate).
func New(db *gorm.DB) *Log { return &Log{db: db} }

// Record stores e, filling in its time if unset, and returns it as stored.
// While the database is away (outage.Unavailable) it keeps e in memory and
// returns ErrHeld.
func (l *Log) Record(ctx context.Context, e Entry) (Entry, error) {
	e = clean(e)
	e.Count, e.Bucket = 1, nil
	if _, err := l.Flush(ctx); err != nil {
		l.hold(e)
		return e, fmt.Errorf("audit: record %s: %w", e.Action, ErrHeld)
	}
	if err := l.db.WithContext(ctx).Create(&e).Error; err != nil {
		if outage.Unavailable(err) {
			l.hold(e)
			return e, fmt.Errorf("audit: record %s: %w: %w", e.Action, ErrHeld, err)
		}
		return e, fmt.Errorf("audit: record %s: %w", e.Action, err)
	}
	return e, nil
}

// clean fills in e's time and makes its text storable.
func clean(e Entry) Entry {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	e.At = e.At.UTC()
	e.Who, e.Target, e.Detail = clip(Escape(e.Who), 200), clip(Escape(e.Target), 300), clip(Escape(e.Detail), 1000)
	e.From, e.Action, e.RequestID = clip(Escape(e.From), 100), clip(Escape(e.Action), 100), clip(Escape(e.RequestID), 100)
	e.Role, e.Via, e.Result = clip(Escape(e.Role), 20), clip(Escape(e.Via), 20), clip(Escape(e.Result), 20)
	e.ID = 0
	return e
}

// SummaryWindow is the span of one summary row.
const SummaryWindow = time.Minute

// Tally records e as one more request of its kind: the requests of one
// caller (who, role, via, from) on one action and target with one result
// and status in one minute share a row, whose Count grows with each. It
// returns the row as stored. Use it for routine writes only: an
// operator's action, a refusal or a login is Record's, one row each.
// While the database is away it keeps the minute's count in memory and
// returns ErrHeld, as Record does.
func (l *Log) Tally(ctx context.Context, e Entry) (Entry, error) {
	e = clean(e)
	e.key = bucket(e)
	e.Count, e.Bucket = 1, &e.key
	if _, err := l.Flush(ctx); err != nil {
		l.hold(e)
		return e, fmt.Errorf("audit: tally %s: %w", e.Action, ErrHeld)
	}
	// RETURNING gives the row as it is now (its first time, its count),
	// for the live page, without reading it again.
	err := l.db.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "bucket"}},
		DoUpdates: clause.Assignments(map[string]any{"count": gorm.Expr(`"canal_audit"."count" + 1`)}),
	}, clause.Returning{}).Create(&e).Error
	if err != nil {
		if outage.Unavailable(err) {
			l.hold(e)
			return e, fmt.Errorf("audit: tally %s: %w: %w", e.Action, ErrHeld, err)
		}
		return e, fmt.Errorf("audit: tally %s: %w", e.Action, err)
	}
	return e, nil
}

// bucket is the key of e's summary row: its caller, action, outcome and
// minute.
func bucket(e Entry) string {
	h := sha256.New()
	for _, s := range []string{e.At.Truncate(SummaryWindow).Format(time.RFC3339), e.Who, e.Role, e.Via, e.From,
		e.Action, e.Target, e.Result, strconv.Itoa(e.Status)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (l *Log) hold(e Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.key != "" {
		// The minute's requests held so far share one entry; it is
		// written as a plain row (a summary already stored for the
		// minute would refuse its bucket).
		e.Bucket = nil
		for i := len(l.held) - 1; i >= 0 && i >= len(l.held)-64; i-- {
			if l.held[i].key == e.key {
				l.held[i].Count++
				return
			}
		}
	}
	if len(l.held) >= maxHeld {
		l.held = l.held[1:]
	}
	l.held = append(l.held, e)
}

// Flush writes the entries kept while the database was away, in one
// transaction, and returns how many; they stay kept if it fails.
func (l *Log) Flush(ctx context.Context) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.held) == 0 {
		return 0, nil
	}
	if err := l.db.WithContext(ctx).CreateInBatches(l.held, 500).Error; err != nil {
		if !outage.Unavailable(err) {
			n := len(l.held)
			l.held = nil // they would fail again forever
			return 0, fmt.Errorf("audit: %d kept entries not written: %w", n, err)
		}
		for i := range l.held {
			l.held[i].ID = 0
		}
		return 0, fmt.Errorf("audit: write kept entries: %w", err)
	}
	n := len(l.held)
	l.held = nil
	return n, nil
}

// Escape returns s as the audit log stores it: as it is if it is valid
// UTF-8 of printable characters and spaces, else quoted with Go's escapes
// ("job\x00name"). A client chooses these bytes (a route's name, a user
// name, a header), and PostgreSQL refuses NUL and invalid UTF-8 in text
// (SQLSTATE 22021): refusing the entry would lose exactly the attack it
// records. Filters compare with the stored, escaped form.
func Escape(s string) string {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r != ' ' && !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

func plainText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// clip bounds s to n bytes without splitting a character.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// MaxPage bounds a page of entries.
const MaxPage = 200

// ErrInvalidFilter is a filter or cursor that can match nothing sensible.
var ErrInvalidFilter = errors.New("invalid audit filter")

// Filter selects entries, newest first; Before is the Next of a previous
// page.
type Filter struct {
	Who    string
	Action string
	Result string
	Before string
	Limit  int
}

// Page is a page of entries; Next is the cursor of the next, "" at the end.
type Page struct {
	Items []Entry `json:"items"`
	Next  string  `json:"next,omitempty"`
}

// ParseFilter checks a filter from a query (each field already read).
func ParseFilter(f Filter) (Filter, int64, error) {
	f.Who, f.Action, f.Result = strings.TrimSpace(f.Who), strings.TrimSpace(f.Action), strings.TrimSpace(f.Result)
	switch {
	case len(f.Who) > 200:
		return f, 0, fmt.Errorf("%w: who longer than 200 bytes", ErrInvalidFilter)
	case len(f.Action) > 100:
		return f, 0, fmt.Errorf("%w: action longer than 100 bytes", ErrInvalidFilter)
	}
	// PostgreSQL refuses these bytes in text (SQLSTATE 22021); what an
	// attacker sent is stored escaped (Escape), and found by that form.
	if !plainText(f.Who) || !plainText(f.Action) {
		return f, 0, fmt.Errorf("%w: who and action must be UTF-8 text without NUL (entries store such bytes escaped, as \"\\x00\")", ErrInvalidFilter)
	}
	switch f.Result {
	case "", ResultOK, ResultFailed, ResultDenied:
	default:
		return f, 0, fmt.Errorf("%w: result %q: want ok, failed or denied", ErrInvalidFilter, clip(f.Result, 50))
	}
	if f.Limit < 0 || f.Limit > MaxPage {
		return f, 0, fmt.Errorf("%w: limit %d: want 1 to %d", ErrInvalidFilter, f.Limit, MaxPage)
	}
	if f.Limit == 0 {
		f.Limit = 50
	}
	var before int64
	if f.Before != "" {
		n, err := strconv.ParseInt(f.Before, 10, 64)
		if err != nil || n <= 0 {
			return f, 0, fmt.Errorf("%w: before %q: want the next cursor of a previous page", ErrInvalidFilter, clip(f.Before, 50))
		}
		before = n
	}
	return f, before, nil
}

// List returns a page of entries matching f, newest first.
func (l *Log) List(ctx context.Context, f Filter) (Page, error) {
	f, before, err := ParseFilter(f)
	if err != nil {
		return Page{}, err
	}
	q := l.db.WithContext(ctx).Model(&Entry{}).Order("id DESC").Limit(f.Limit + 1)
	if f.Who != "" {
		q = q.Where("who = ?", f.Who)
	}
	if f.Action != "" {
		q = q.Where("action = ?", f.Action)
	}
	if f.Result != "" {
		q = q.Where("result = ?", f.Result)
	}
	if before > 0 {
		q = q.Where("id < ?", before)
	}
	var items []Entry
	if err := q.Find(&items).Error; err != nil {
		return Page{}, fmt.Errorf("audit: list: %w", err)
	}
	p := Page{Items: items}
	if len(items) > f.Limit {
		p.Items = items[:f.Limit]
		p.Next = strconv.FormatInt(p.Items[f.Limit-1].ID, 10)
	}
	if p.Items == nil {
		p.Items = []Entry{}
	}
	return p, nil
}

// Prune deletes entries older than cutoff, a batch at a time, and returns
// how many went.
func (l *Log) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for {
		sub := l.db.Model(&Entry{}).Select("id").Where("at < ?", cutoff.UTC()).Limit(1000)
		res := l.db.WithContext(ctx).Where("id IN (?)", sub).Delete(&Entry{})
		if res.Error != nil {
			return total, fmt.Errorf("audit: prune: %w", res.Error)
		}
		total += res.RowsAffected
		if res.RowsAffected < 1000 {
			return total, nil
		}
	}
}

// Pruner deletes entries older than Retention every Every.
type Pruner struct {
	Log       *Log
	Retention time.Duration // default 90 days
	Every     time.Duration // default 1 hour
	Logger    *slog.Logger
}

// Run prunes until ctx ends.
func (p Pruner) Run(ctx context.Context) {
	if p.Retention <= 0 {
		p.Retention = 90 * 24 * time.Hour
	}
	if p.Every <= 0 {
		p.Every = time.Hour
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(p.Every)
	defer t.Stop()
	// Entries kept while the database was away are written within seconds
	// of its return, even if nobody presses anything.
	flush := time.NewTicker(flushEvery)
	defer flush.Stop()
	for {
		n, err := p.Log.Prune(ctx, time.Now().Add(-p.Retention))
		switch {
		case err != nil && ctx.Err() == nil && !outage.Unavailable(err):
			p.Logger.Warn("audit prune failed", "err", err)
		case n > 0:
			p.Logger.Info("audit entries past retention deleted", "count", n, "retention", p.Retention)
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				break wait
			case <-flush.C:
				if n, err := p.Log.Flush(ctx); n > 0 {
					p.Logger.Info("audit entries kept while the database was away are written", "count", n)
				} else if err != nil && ctx.Err() == nil && !outage.Unavailable(err) {
					p.Logger.Warn("audit flush failed", "err", err)
				}
			}
		}
	}
}
