package outbox

import (
	"context"
	"fmt"

	"gorm.io/gorm"
)

// sqliteStore: SQLite has one writer at a time, so a transaction's inserts
// commit in seq order and a plain insert keeps per-key commit order; a claim
// is one UPDATE … RETURNING, atomic under that single writer.
type sqliteStore struct{ gormStore }

func (sqliteStore) insert(ctx context.Context, tx *gorm.DB, row *messageRow) error {
	return tx.WithContext(ctx).Create(row).Error
}

func (s sqliteStore) claim(ctx context.Context, nowUS, leaseUS int64, token string, limit int) ([]messageRow, error) {
	var rows []messageRow
	// INDEXED BY pins the ordered walk: without statistics SQLite might
	// pick the (status, due_us) index and sort the whole backlog.
	branch := func(status string) string {
		return `SELECT seq FROM (SELECT m.seq FROM canal_outbox_messages AS m INDEXED BY canal_outbox_messages_status_seq
  WHERE m.status = '` + status + `' AND ` + claimEligible + ` ORDER BY m.seq LIMIT @limit)`
	}
	q := `UPDATE canal_outbox_messages
SET status = 'inflight', due_us = @lease, claim_token = @token, attempts = attempts + 1, updated_us = @now
WHERE seq IN (` + branch("pending") + `)
RETURNING *`
	err := s.db.WithContext(ctx).Raw(q, map[string]any{"now": nowUS, "lease": leaseUS, "token": token, "limit": limit}).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("claim batch: %w", err)
	}
	return rows, nil
}

func (s sqliteStore) claimSuspect(ctx context.Context, nowUS, leaseUS int64, token string) ([]messageRow, error) {
	var rows []messageRow
	q := `UPDATE canal_outbox_messages
SET due_us = @lease, claim_token = @token, attempts = attempts + 1, updated_us = @now,
  ` + countSoloCut("") + `
WHERE seq IN (` + suspectExists + `)
RETURNING *`
	err := s.db.WithContext(ctx).Raw(q, map[string]any{"now": nowUS, "lease": leaseUS, "token": token, "cut": unfinishedText}).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("claim suspect: %w", err)
	}
	return rows, nil
}
