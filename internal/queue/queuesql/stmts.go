package queuesql

import (
	"context"
	"database/sql"
	"sync"
)

// Stmts prepares each statement once per pool and keeps it, so the hot path
// never parses SQL again (database/sql re-prepares it per connection only
// when a new connection first runs it).
type Stmts struct {
	DB *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// Get returns the prepared form of q.
func (s *Stmts) Get(ctx context.Context, q string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.m[q]; ok {
		return st, nil
	}
	st, err := s.DB.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if s.m == nil {
		s.m = map[string]*sql.Stmt{}
	}
	s.m[q] = st
	return st, nil
}

// Query runs q (in tx if not nil) and scans items.
func (s *Stmts) Query(ctx context.Context, tx *sql.Tx, q string, args ...any) (*sql.Rows, error) {
	st, err := s.Get(ctx, q)
	if err != nil {
		return nil, err
	}
	if tx != nil {
		st = tx.StmtContext(ctx, st)
	}
	return st.QueryContext(ctx, args...)
}

// Exec runs q (in tx if not nil).
func (s *Stmts) Exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	st, err := s.Get(ctx, q)
	if err != nil {
		return nil, err
	}
	if tx != nil {
		st = tx.StmtContext(ctx, st)
	}
	return st.ExecContext(ctx, args...)
}

// Close closes every prepared statement.
func (s *Stmts) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.m {
		_ = st.Close()
	}
	s.m = nil
}
