package queuesql

import (
	"context"
	"database/sql"
	"sync"
	"time"
)

// Stmts prepares each statement once per pool and keeps it, so the hot path
// never parses SQL again (database/sql re-prepares it per connection only
// when a new connection first runs it). What it prepared stays open on
// the pool's connections until Close: its owner closes it when it stops.
type Stmts struct {
	DB *sql.DB
	// OneShot prepares nothing and runs each statement as given: for a
	// driver built for one call (outbox.Add in a caller's transaction)
	// and then dropped, whose statements nobody would close. Each one
	// prepared on the pool stayed open on a connection for the pool's
	// life: ~18 KB of SQLite memory per call, unbounded under load.
	OneShot bool
	mu      sync.Mutex
	m       map[string]*sql.Stmt
}

func (s *Stmts) cached(q string) *sql.Stmt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[q]
}

// Get returns the prepared form of q. The lock is not held while it
// prepares: preparing takes a connection of the pool, which may have to
// wait for one.
func (s *Stmts) Get(ctx context.Context, q string) (*sql.Stmt, error) {
	if st := s.cached(q); st != nil {
		return st, nil
	}
	st, err := s.DB.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[q]; ok {
		_ = st.Close()
		return old, nil
	}
	if s.m == nil {
		s.m = map[string]*sql.Stmt{}
	}
	s.m[q] = st
	return st, nil
}

// inTx is q's statement on tx. Not prepared yet, q is prepared on tx's own
// connection for this once (and on the pool in the background): preparing
// on the pool from inside a transaction would wait for a second
// connection, which, with a small pool whose other connections wait for
// this transaction's write lock (SQLite), never comes.
func (s *Stmts) inTx(ctx context.Context, tx *sql.Tx, q string) (*sql.Stmt, error) {
	if st := s.cached(q); st != nil {
		return tx.StmtContext(ctx, st), nil
	}
	go func() {
		pctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = s.Get(pctx, q)
	}()
	return tx.PrepareContext(ctx, q)
}

// QueryRowOn runs q on pool, a caller's gorm connection pool (its own
// transaction, usually), through q's prepared statement when pool is a
// *sql.Tx or *sql.DB: database/sql then prepares q once per connection and
// keeps it, where the pool's own QueryRowContext would parse it on every
// call with drivers that do not cache statements themselves (modernc
// SQLite). Other pools (gorm's prepared-statement mode) run q as given.
func (s *Stmts) QueryRowOn(ctx context.Context, pool interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}, q string, args ...any) *sql.Row {
	if s.OneShot {
		return pool.QueryRowContext(ctx, q, args...)
	}
	switch p := pool.(type) {
	case *sql.Tx:
		st, err := s.inTx(ctx, p, q)
		if err != nil {
			return p.QueryRowContext(ctx, q, args...)
		}
		return st.QueryRowContext(ctx, args...)
	case *sql.DB:
		if st, err := s.Get(ctx, q); err == nil {
			return st.QueryRowContext(ctx, args...)
		}
	}
	return pool.QueryRowContext(ctx, q, args...)
}

// Query runs q (in tx if not nil) and scans items.
func (s *Stmts) Query(ctx context.Context, tx *sql.Tx, q string, args ...any) (*sql.Rows, error) {
	if s.OneShot {
		if tx != nil {
			return tx.QueryContext(ctx, q, args...)
		}
		return s.DB.QueryContext(ctx, q, args...)
	}
	var st *sql.Stmt
	var err error
	if tx != nil {
		st, err = s.inTx(ctx, tx, q)
	} else {
		st, err = s.Get(ctx, q)
	}
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// Exec runs q (in tx if not nil).
func (s *Stmts) Exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	if s.OneShot {
		if tx != nil {
			return tx.ExecContext(ctx, q, args...)
		}
		return s.DB.ExecContext(ctx, q, args...)
	}
	var st *sql.Stmt
	var err error
	if tx != nil {
		st, err = s.inTx(ctx, tx, q)
	} else {
		st, err = s.Get(ctx, q)
	}
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// Close closes every prepared statement (on every connection of the pool).
// Statements asked for afterwards are prepared afresh.
func (s *Stmts) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.m {
		_ = st.Close()
	}
	s.m = nil
}
