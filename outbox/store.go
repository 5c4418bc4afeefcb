package outbox

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"
)

// store is the one seam between the relay and a database dialect. Most of it
// is portable gorm (gormStore); each dialect supplies how a message is
// inserted (ordering) and how a batch is claimed (locking).
type store interface {
	// insert writes a new message in the caller's transaction.
	insert(ctx context.Context, tx *gorm.DB, row *messageRow) error
	// claim leases up to limit due pending messages to token until
	// leaseUS, at most one per key and only the first unfinished one of its
	// key, and counts the attempt it starts.
	claim(ctx context.Context, nowUS, leaseUS int64, token string, limit int) ([]messageRow, error)
	// claimSuspect leases the first eligible suspect (see soloPrefix), if
	// any, to its solo token, counting the attempt it starts and a cut one.
	claimSuspect(ctx context.Context, nowUS, leaseUS int64, token string) ([]messageRow, error)
	// hasSuspect reports whether claimSuspect would find one.
	hasSuspect(ctx context.Context, nowUS int64) (bool, error)
	// finish records attempts and their messages' next states in one
	// transaction (one commit for many messages), each only if its message
	// is still leased to its token; ok[i] false means that lease was lost.
	finish(ctx context.Context, os []outcome) (ok []bool, err error)
	get(ctx context.Context, id string) (messageRow, []attemptRow, error)
	list(ctx context.Context, f ListFilter) ([]messageRow, error)
	retry(ctx context.Context, id string, nowUS int64) (messageRow, error)
	retryDead(ctx context.Context, topic string, nowUS int64) (int64, error)
	remove(ctx context.Context, id string) (messageRow, error)
	counts(ctx context.Context, limit int64) (statusCounts, error) // each status up to limit
	cleanup(ctx context.Context, beforeUS int64, limit int) (int64, error)
}

// storeFor picks the store for db's dialect: the only place that looks at it.
func storeFor(db *gorm.DB) (store, error) {
	switch name := db.Dialector.Name(); name {
	case "sqlite":
		return sqliteStore{gormStore{db}}, nil
	case "postgres":
		return postgresStore{gormStore{db}}, nil
	default:
		return nil, fmt.Errorf("%w: %q", ErrDialect, name)
	}
}

// outcome is the result of one attempt.
type outcome struct {
	seq       int64
	token     string
	status    Status // dispatched, pending (retry) or dead
	dueUS     int64
	failures  int
	lastError string
	blocks    bool
	nowUS     int64
	attempt   attemptRow
	// given up at claim: no attempt was made, so the claim's count of
	// attempts is taken back and no attempt row is written.
	givenUp bool
}

type statusCounts struct {
	byStatus     map[Status]int64
	oldestOpenUS int64 // created_us of the oldest pending or inflight message, 0 if none
}

// ListFilter selects a page of messages, newest first.
type ListFilter struct {
	Status Status // empty: any
	Topic  string // empty: any
	Before int64  // a seq cursor from Page.Next; 0: from the newest
	Limit  int    // 1..MaxPage; 0 means DefaultPage
}

// Page sizes for List.
const (
	DefaultPage = 50
	MaxPage     = 500
)

// gormStore holds the dialect-neutral queries.
type gormStore struct{ db *gorm.DB }

func (s gormStore) finish(ctx context.Context, os []outcome) ([]bool, error) {
	ok := make([]bool, len(os))
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		clear(ok) // in case gorm retries the function
		atts := make([]attemptRow, 0, len(os))
		for i, o := range os {
			upd := map[string]any{
				"status": string(o.status), "due_us": o.dueUS, "failures": o.failures,
				"last_error": o.lastError, "blocks": o.blocks, "claim_token": "",
				"updated_us": o.nowUS,
			}
			if o.status == StatusDispatched {
				upd["dispatched_us"] = o.nowUS
			}
			if o.givenUp {
				upd["attempts"] = gorm.Expr("attempts - 1")
			}
			// The token guard keeps a relay whose lease expired from
			// overwriting what the relay that reclaimed the message wrote.
			res := tx.Model(&messageRow{}).
				Where("seq = ? AND status = ? AND claim_token = ?", o.seq, string(StatusInflight), o.token).
				Updates(upd)
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected == 1 {
				ok[i] = true
				if !o.givenUp {
					atts = append(atts, o.attempt)
				}
			}
		}
		if len(atts) == 0 {
			return nil
		}
		return tx.Create(&atts).Error
	})
	if err != nil {
		return nil, fmt.Errorf("record attempts: %w", err)
	}
	return ok, nil
}

func (s gormStore) get(ctx context.Context, id string) (messageRow, []attemptRow, error) {
	var row messageRow
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return row, nil, ErrNotFound
	}
	if err != nil {
		return row, nil, fmt.Errorf("get message: %w", err)
	}
	var atts []attemptRow
	if err := s.db.WithContext(ctx).Where("message_id = ?", id).Order("number").Find(&atts).Error; err != nil {
		return row, nil, fmt.Errorf("get attempts: %w", err)
	}
	return row, atts, nil
}

func (s gormStore) list(ctx context.Context, f ListFilter) ([]messageRow, error) {
	q := s.db.WithContext(ctx).Model(&messageRow{})
	if f.Status != "" {
		q = q.Where("status = ?", string(f.Status))
	}
	if f.Topic != "" {
		q = q.Where("topic = ?", f.Topic)
	}
	if f.Before > 0 {
		q = q.Where("seq < ?", f.Before)
	}
	var rows []messageRow
	if err := q.Order("seq DESC").Limit(f.Limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list messages: %w", err)
	}
	return rows, nil
}

// retry makes a dead message pending again with a fresh budget of attempts,
// or a pending one (waiting for its backoff) due at once.
//
// Every write here comes first in its statement or transaction: a SQLite
// transaction that reads and then writes cannot wait for the lock (it gets
// SQLITE_BUSY at once), one that writes first waits its turn.
func (s gormStore) retry(ctx context.Context, id string, nowUS int64) (messageRow, error) {
	db := s.db.WithContext(ctx)
	res := db.Model(&messageRow{}).
		Where("id = ? AND status IN ?", id, []string{string(StatusDead), string(StatusPending)}).
		Updates(map[string]any{"status": string(StatusPending), "due_us": int64(0), "failures": 0, "blocks": false, "updated_us": nowUS})
	if res.Error != nil {
		return messageRow{}, fmt.Errorf("retry message %s: %w", id, res.Error)
	}
	var row messageRow
	if err := db.Where("id = ?", id).Take(&row).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return row, fmt.Errorf("retry message %s: %w", id, ErrNotFound)
		}
		return row, fmt.Errorf("retry message %s: %w", id, err)
	}
	if res.RowsAffected == 0 {
		return row, fmt.Errorf("retry message %s (%s): %w", id, row.Status, ErrNotRetryable)
	}
	return row, nil
}

func (s gormStore) retryDead(ctx context.Context, topic string, nowUS int64) (int64, error) {
	q := s.db.WithContext(ctx).Model(&messageRow{}).Where("status = ?", string(StatusDead))
	if topic != "" {
		q = q.Where("topic = ?", topic)
	}
	res := q.Updates(map[string]any{"status": string(StatusPending), "due_us": int64(0), "failures": 0, "blocks": false, "updated_us": nowUS})
	if res.Error != nil {
		return 0, fmt.Errorf("retry dead messages: %w", res.Error)
	}
	return res.RowsAffected, nil
}

// remove deletes a dead message and its attempts; other statuses are refused
// so that nothing undelivered disappears by mistake.
func (s gormStore) remove(ctx context.Context, id string) (messageRow, error) {
	var row messageRow
	db := s.db.WithContext(ctx)
	if err := db.Where("id = ?", id).Take(&row).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return row, fmt.Errorf("delete message %s: %w", id, ErrNotFound)
		}
		return row, fmt.Errorf("delete message %s: %w", id, err)
	}
	err := db.Transaction(func(tx *gorm.DB) error {
		res := tx.Where("seq = ? AND status = ?", row.Seq, string(StatusDead)).Delete(&messageRow{})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrNotDead
		}
		return tx.Where("message_id = ?", id).Delete(&attemptRow{}).Error
	})
	if err != nil {
		return row, fmt.Errorf("delete message %s (%s): %w", id, row.Status, err)
	}
	return row, nil
}

func (s gormStore) counts(ctx context.Context, limit int64) (statusCounts, error) {
	c := statusCounts{byStatus: map[Status]int64{}}
	db := s.db.WithContext(ctx)
	// Each status is counted up to limit over the (status, due_us) index,
	// so the cost stays bounded however many dispatched rows are retained;
	// a count equal to the cap reads "at least".
	for _, st := range []Status{StatusPending, StatusInflight, StatusDispatched, StatusDead} {
		var n int64
		err := db.Raw(`SELECT COUNT(*) FROM (SELECT 1 FROM canal_outbox_messages WHERE status = ? LIMIT ?) capped`,
			string(st), limit).Scan(&n).Error
		if err != nil {
			return c, fmt.Errorf("count %s messages: %w", st, err)
		}
		c.byStatus[st] = n
	}
	for _, st := range []Status{StatusPending, StatusInflight} {
		var created []int64
		// One indexed probe per status rather than an IN that might scan.
		if err := db.Model(&messageRow{}).Where("status = ?", string(st)).Order("seq").Limit(1).Pluck("created_us", &created).Error; err != nil {
			return c, fmt.Errorf("oldest message: %w", err)
		}
		if len(created) == 1 && (c.oldestOpenUS == 0 || created[0] < c.oldestOpenUS) {
			c.oldestOpenUS = created[0]
		}
	}
	return c, nil
}

func (s gormStore) cleanup(ctx context.Context, beforeUS int64, limit int) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var ids []string
		err := tx.Raw(`DELETE FROM canal_outbox_messages WHERE seq IN (
  SELECT seq FROM canal_outbox_messages WHERE status = ? AND due_us < ? ORDER BY due_us LIMIT ?)
RETURNING id`, string(StatusDispatched), beforeUS, limit).Scan(&ids).Error
		if err != nil || len(ids) == 0 {
			return err
		}
		n = int64(len(ids))
		return tx.Where("message_id IN ?", ids).Delete(&attemptRow{}).Error
	})
	if err != nil {
		return 0, fmt.Errorf("cleanup: %w", err)
	}
	return n, nil
}

// Suspects. A message still inflight after its lease expired was cut short:
// the process died (or a publisher hung) while it was out. It may be what
// killed the process, or it may have been out alongside what did. So it is
// sent again alone (claimSuspect, with a solo token) while nothing else of
// this relay is out, and only a cut while alone counts as a failure: a
// message that kills the relay on every send goes dead after MaxAttempts
// lives of the process, and the messages that happened to be out with it
// lose nothing. Alone means within this relay: a crash caused by something
// else in the process while a suspect is out counts against the suspect.

// soloPrefix starts the claim token of a suspect sent alone; ordinary
// tokens are UUIDs in lowercase hex, so it cannot start one.
const soloPrefix = "s"

func soloToken(token string) string { return soloPrefix + token[1:] }

// countSoloCut is the suspect claim's SET clause: the attempt before was cut
// short while the message was out alone, so it counts. SET expressions read
// the row as it was, in both dialects.
func countSoloCut(t string) string {
	solo := `substr(` + t + `claim_token, 1, 1) = '` + soloPrefix + `'`
	return `failures = ` + t + `failures + CASE WHEN ` + solo + ` THEN 1 ELSE 0 END,
  last_error = CASE WHEN ` + solo + ` THEN @cut ELSE ` + t + `last_error END`
}

// suspectExists is the test, cheap and exact, for whether claimSuspect
// would find a row: inflight rows are few, and it walks only those.
const suspectExists = `SELECT m.seq FROM canal_outbox_messages m WHERE m.status = 'inflight' AND ` + claimEligible + ` ORDER BY m.seq LIMIT 1`

func (s gormStore) hasSuspect(ctx context.Context, nowUS int64) (bool, error) {
	var seqs []int64
	if err := s.db.WithContext(ctx).Raw(suspectExists, map[string]any{"now": nowUS}).Scan(&seqs).Error; err != nil {
		return false, fmt.Errorf("look for suspects: %w", err)
	}
	return len(seqs) > 0, nil
}

// claimEligible is the eligibility test shared by both dialects' claim
// queries, for a row m already known to be pending or inflight: due (for an
// inflight row: its lease expired), and either keyless or the first
// unfinished message of its key. A dead message blocks its key only when its
// topic's policy said so (blocks).
//
// The claim queries look at pending and inflight rows in two branches, each
// walking the (status, seq) index in seq order and stopping at the limit: one
// ordered walk per status costs the batch, where one IN over both statuses
// would read and sort the whole backlog on every claim.
//
// The second test covers a message retried by hand after its key moved on
// (set-aside policy): it is older than a message of its key that is in
// flight, and must wait for it rather than go out alongside. An inflight row
// whose lease expired does not count, or it and an older pending row would
// wait on each other forever.
const claimEligible = `m.due_us <= @now
  AND (m.msg_key = '' OR (NOT EXISTS (
    SELECT 1 FROM canal_outbox_messages e
    WHERE e.msg_key = m.msg_key AND e.seq < m.seq AND e.status <> 'dispatched'
      AND (e.status <> 'dead' OR e.blocks))
  AND NOT EXISTS (
    SELECT 1 FROM canal_outbox_messages f
    WHERE f.status = 'inflight' AND f.msg_key = m.msg_key AND f.seq <> m.seq AND f.due_us > @now)))`
