package clusterevents

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"

	"github.com/jackc/pgx/v5/stdlib"
)

// Channel is the PostgreSQL notification channel of the events. A
// payload starts with the publisher's schema and a space, so several
// schemas (several Canal systems) can share one database.
const Channel = "canal_events"

// Postgres carries events by NOTIFY and LISTEN on one channel. Its
// database handle must use the pgx driver (as Canal's does).
type Postgres struct{ db *sql.DB }

// NewPostgres returns the PostgreSQL transport over db.
func NewPostgres(db *sql.DB) *Postgres { return &Postgres{db: db} }

// Publish notifies every listening process, at once (no transaction).
func (p *Postgres) Publish(ctx context.Context, payload []byte) error {
	if _, err := p.db.ExecContext(ctx, `SELECT pg_notify('`+Channel+`', current_schema() || ' ' || $1)`, string(payload)); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

// Listen holds one connection that listens on Channel and delivers the
// payloads of this connection's schema.
func (p *Postgres) Listen(ctx context.Context, deliver func([]byte)) error {
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("cluster events: LISTEN needs the pgx driver, got %T", dc)
		}
		pc := sc.Conn()
		var schema string
		if err := pc.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		if _, err := pc.Exec(ctx, `LISTEN `+Channel); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		prefix := []byte(schema + " ")
		for {
			n, err := pc.WaitForNotification(ctx)
			if err != nil {
				if ctx.Err() != nil {
					// This connection still listens: do not return it to the pool.
					return driver.ErrBadConn
				}
				return fmt.Errorf("listen: %w", err)
			}
			if rest, ok := bytes.CutPrefix([]byte(n.Payload), prefix); ok && len(rest) > 0 && rest[0] == '{' {
				deliver(rest)
			}
		}
	})
}
