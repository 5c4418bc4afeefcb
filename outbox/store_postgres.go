package outbox

import (
	"context"
	"fmt"

	"gorm.io/gorm"
)

// postgresStore claims with FOR UPDATE SKIP LOCKED so that several relays,
// in one process or several, can share a database without waiting on each
// other's rows.
type postgresStore struct{ gormStore }

// advisoryClass namespaces the outbox's advisory locks ("CANA").
const advisoryClass = 0x43414E41

// insert takes a transaction-scoped advisory lock on the key before the row
// gets its seq. seq comes from a sequence at insert time, not at commit: two
// transactions adding to one key could take seqs 10 and 11 and commit 11
// first; a relay that then sees both dispatches 10 before 11, against commit
// order, and one that saw only 11 dispatches it before 10 exists (the lost
// ordering of watermill#311). Holding the lock until commit serialises the
// adders of a key, so seq order within a key is commit order. Keyless
// messages promise no order and take no lock.
func (postgresStore) insert(ctx context.Context, tx *gorm.DB, row *messageRow) error {
	tx = tx.WithContext(ctx)
	if row.Key != "" {
		if err := tx.Exec("SELECT pg_advisory_xact_lock(?, hashtext(?))", advisoryClass, row.Key).Error; err != nil {
			return fmt.Errorf("lock key: %w", err)
		}
	}
	return tx.Create(row).Error
}

func (s postgresStore) claim(ctx context.Context, nowUS, leaseUS int64, token string, limit int) ([]messageRow, error) {
	var rows []messageRow
	branch := func(status string) string {
		return `SELECT m.seq FROM canal_outbox_messages m WHERE m.status = '` + status + `' AND ` + claimEligible + `
  ORDER BY m.seq LIMIT @limit FOR UPDATE SKIP LOCKED`
	}
	q := `WITH c AS (` + branch("pending") + `)
UPDATE canal_outbox_messages AS t
SET status = 'inflight', due_us = @lease, claim_token = @token, attempts = t.attempts + 1, updated_us = @now
FROM c WHERE t.seq = c.seq
RETURNING t.*`
	err := s.db.WithContext(ctx).Raw(q, map[string]any{"now": nowUS, "lease": leaseUS, "token": token, "limit": limit}).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("claim batch: %w", err)
	}
	return rows, nil
}

func (s postgresStore) claimSuspect(ctx context.Context, nowUS, leaseUS int64, token string) ([]messageRow, error) {
	var rows []messageRow
	q := `WITH c AS (` + suspectExists + ` FOR UPDATE SKIP LOCKED)
UPDATE canal_outbox_messages AS t
SET due_us = @lease, claim_token = @token, attempts = t.attempts + 1, updated_us = @now,
  ` + countSoloCut("t.") + `
FROM c WHERE t.seq = c.seq
RETURNING t.*`
	err := s.db.WithContext(ctx).Raw(q, map[string]any{"now": nowUS, "lease": leaseUS, "token": token, "cut": unfinishedText}).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("claim suspect: %w", err)
	}
	return rows, nil
}
