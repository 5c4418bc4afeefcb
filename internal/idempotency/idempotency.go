// Package idempotency makes a POST safe to retry: a request that carries an
// Idempotency-Key is done once per key, and a retry with the same key and
// the same body gets the first answer again instead of a second write.
//
// The key's record is written in the same database transaction as the
// request's own write (Do), so a crash never leaves an item without its key
// or a key without its item. Keys are scoped (by the caller: principal and
// route), kept for a TTL (24 h by default) and deleted by Cleaner.
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/canalhq/canal/internal/migratelock"
	"github.com/canalhq/canal/internal/outage"
	"gorm.io/gorm"
)

// Errors of Do; test with errors.Is.
var (
	// ErrInProgress: a request with the same key is being handled now.
	ErrInProgress = errors.New("idempotency: a request with this key is in progress")
	// ErrMismatch: the key was used for a request with a different body.
	ErrMismatch = errors.New("idempotency: the key was used for a different request")
	// ErrInvalidKey: the key is empty, longer than MaxKeyLen or not
	// printable ASCII.
	ErrInvalidKey = errors.New("idempotency: invalid key")
)

// MaxKeyLen bounds a key.
const MaxKeyLen = 255

// CheckKey says whether k can be a key: 1 to MaxKeyLen bytes of printable
// ASCII (an HTTP structured-field string, as the IETF draft's
// Idempotency-Key header is).
func CheckKey(k string) error {
	if k == "" || len(k) > MaxKeyLen {
		return fmt.Errorf("%w: must be 1 to %d characters", ErrInvalidKey, MaxKeyLen)
	}
	for i := range len(k) {
		if k[i] < 0x20 || k[i] > 0x7e {
			return fmt.Errorf("%w: must be printable ASCII (byte %d is 0x%02x)", ErrInvalidKey, i, k[i])
		}
	}
	return nil
}

// Request is one request's claim on a key.
type Request struct {
	Scope       string // who and where: the principal and the route
	Key         string
	Fingerprint string // of what was asked (Fingerprint)
}

// Fingerprint is a digest of a request's method, route and body: the same
// key with another fingerprint is another request (ErrMismatch).
func Fingerprint(method, route string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(method + " " + route + "\n"))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// Response is what the first request answered, replayed to its retries.
type Response struct {
	Status   int
	Body     []byte
	Location string // the Location header, if any
}

// record is one key's row.
type record struct {
	Scope       string `gorm:"column:scope;primaryKey;size:300"`
	Key         string `gorm:"column:idem_key;primaryKey;size:255"`
	Fingerprint string `gorm:"column:fingerprint;size:64;not null"`
	Status      int    `gorm:"column:status;not null"`
	Body        string `gorm:"column:body;not null"`
	Location    string `gorm:"column:location;size:500;not null"`
	CreatedUS   int64  `gorm:"column:created_us;not null"`
	ExpiresUS   int64  `gorm:"column:expires_us;not null;index"`
}

func (record) TableName() string { return "canal_idempotency_keys" }

// Migrate creates or updates the keys' table, one process at a time
// (migratelock): replicas may start together on an empty database.
func Migrate(ctx context.Context, db *gorm.DB) error {
	err := migratelock.Do(ctx, db, func(ctx context.Context) error {
		return db.WithContext(ctx).AutoMigrate(&record{})
	})
	if err != nil {
		return fmt.Errorf("idempotency: migrate: %w", err)
	}
	return nil
}

// Transactor runs fn in a transaction (*outbox.Relay is one: it wakes its
// relay once the transaction commits).
type Transactor interface {
	Transaction(ctx context.Context, fn func(tx *gorm.DB) error) error
}

// Config tunes a Store; zero values take defaults.
type Config struct {
	TTL   time.Duration // how long a key is kept (default 24 h)
	Clock func() time.Time
}

// Store keeps the keys in the database.
type Store struct {
	db    *gorm.DB
	ttl   time.Duration
	clock func() time.Time
	// busy are the keys this process is handling now: a second request
	// for one is ErrInProgress at once. (Another process's request for
	// the same key waits for the first's transaction, then replays it.)
	mu   sync.Mutex
	busy map[string]bool
}

// New returns a store over db, migrated with Migrate.
func New(db *gorm.DB, cfg Config) *Store {
	if cfg.TTL <= 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Store{db: db, ttl: cfg.TTL, clock: cfg.Clock, busy: map[string]bool{}}
}

func (s *Store) claim(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[id] {
		return false
	}
	s.busy[id] = true
	return true
}

func (s *Store) release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.busy, id)
}

// Do answers req once: the first time it runs fn in a transaction of tr
// (nil: the store's own database), where fn makes the request's write and
// its answer, and records the answer in that same transaction; a retry
// with the same key and fingerprint gets that answer back, replayed true.
// An error of fn rolls everything back and records nothing, so the
// request may be tried again with its key.
func (s *Store) Do(ctx context.Context, tr Transactor, req Request, fn func(tx *gorm.DB) (Response, error)) (resp Response, replayed bool, err error) {
	id := req.Scope + "\x00" + req.Key
	if !s.claim(id) {
		return Response{}, false, ErrInProgress
	}
	defer s.release(id)
	if resp, ok, err := s.lookup(ctx, req); err != nil || ok {
		return resp, ok, err
	}
	if tr == nil {
		tr = gormTransactor{s.db}
	}
	err = tr.Transaction(ctx, func(tx *gorm.DB) error {
		now := s.clock()
		// An expired record not yet cleaned up frees its key now. The new
		// record goes in first: a concurrent request for the key in
		// another process waits here for this transaction, not after
		// making its own write.
		if err := tx.Where("scope = ? AND idem_key = ? AND expires_us <= ?", req.Scope, req.Key, now.UnixMicro()).
			Delete(&record{}).Error; err != nil {
			return fmt.Errorf("idempotency: free expired key: %w", err)
		}
		rec := record{Scope: req.Scope, Key: req.Key, Fingerprint: req.Fingerprint,
			CreatedUS: now.UnixMicro(), ExpiresUS: now.Add(s.ttl).UnixMicro()}
		if err := tx.Create(&rec).Error; err != nil {
			return fmt.Errorf("idempotency: record key: %w", err)
		}
		r, err := fn(tx)
		if err != nil {
			return err
		}
		if err := tx.Model(&record{}).Where("scope = ? AND idem_key = ?", req.Scope, req.Key).
			Updates(map[string]any{"status": r.Status, "body": string(r.Body), "location": r.Location}).Error; err != nil {
			return fmt.Errorf("idempotency: record answer: %w", err)
		}
		resp = r
		return nil
	})
	if err != nil {
		// Another process's request for the key committed first (this
		// insert then failed on the key): its answer is this one's.
		if prev, ok, lerr := s.lookup(ctx, req); ok || errors.Is(lerr, ErrMismatch) {
			return prev, ok, lerr
		}
		return Response{}, false, err
	}
	return resp, false, nil
}

type gormTransactor struct{ db *gorm.DB }

func (g gormTransactor) Transaction(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return g.db.WithContext(ctx).Transaction(fn)
}

// lookup reads req's unexpired record: its answer, or ErrMismatch.
func (s *Store) lookup(ctx context.Context, req Request) (Response, bool, error) {
	var recs []record
	err := s.db.WithContext(ctx).Where("scope = ? AND idem_key = ? AND expires_us > ?", req.Scope, req.Key, s.clock().UnixMicro()).
		Limit(1).Find(&recs).Error
	if err != nil {
		return Response{}, false, fmt.Errorf("idempotency: read key: %w", err)
	}
	if len(recs) == 0 {
		return Response{}, false, nil
	}
	if recs[0].Fingerprint != req.Fingerprint {
		return Response{}, false, ErrMismatch
	}
	return Response{Status: recs[0].Status, Body: []byte(recs[0].Body), Location: recs[0].Location}, true, nil
}

// Cleanup deletes the records that expired and returns how many went.
func (s *Store) Cleanup(ctx context.Context) (int64, error) {
	res := s.db.WithContext(ctx).Where("expires_us <= ?", s.clock().UnixMicro()).Delete(&record{})
	if res.Error != nil {
		return 0, fmt.Errorf("idempotency: cleanup: %w", res.Error)
	}
	return res.RowsAffected, nil
}

// Cleaner deletes expired keys every Every until its owner cancels Run's
// context.
type Cleaner struct {
	Store  *Store
	Every  time.Duration // default 10 minutes
	Logger *slog.Logger
}

// Run cleans up at once, then every Every, until ctx ends.
func (c Cleaner) Run(ctx context.Context) {
	if c.Every <= 0 {
		c.Every = 10 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(c.Every)
	defer t.Stop()
	for {
		n, err := c.Store.Cleanup(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !outage.Unavailable(err):
			c.Logger.Warn("idempotency key cleanup failed", "err", err)
		case n > 0:
			c.Logger.Debug("expired idempotency keys deleted", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Scope is the scope of a route's keys for a principal: keys of one
// principal on one route never meet another's.
func Scope(principal, route string) string {
	if len(principal) > 200 {
		principal = principal[:200]
	}
	s := strings.ToValidUTF8(principal, "\uFFFD")
	return route + " " + strings.ReplaceAll(s, "\x00", "\uFFFD")
}
