// Package postgres is the queue engine's driver for PostgreSQL: claims with
// FOR UPDATE SKIP LOCKED so any number of processes share the table without
// waiting on each other's rows, set-based completion over unnest'ed arrays,
// per-key commit order by a transaction-scoped advisory lock, and wake-ups
// by LISTEN/NOTIFY.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/queuesql"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Driver is the PostgreSQL queue driver.
type Driver struct {
	queuesql.Reader
	db      *sql.DB
	stmts   *queuesql.Stmts
	claimMu sync.Mutex
	claims  map[int]string
}

var _ queue.Driver = (*Driver)(nil)

// New returns the driver for db, a PostgreSQL gorm handle (pgx).
func New(db *gorm.DB) (*Driver, error) {
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("queue postgres: %w", err)
	}
	return &Driver{
		Reader: queuesql.Reader{DB: db.Session(&gorm.Session{SkipDefaultTransaction: true})},
		db:     sqlDB, stmts: &queuesql.Stmts{DB: sqlDB}, claims: map[int]string{},
	}, nil
}

// NewOneShot returns a driver for one call that prepares nothing (see
// queuesql.Stmts.OneShot), so dropping it leaves nothing open.
func NewOneShot(db *gorm.DB) (*Driver, error) {
	d, err := New(db)
	if err != nil {
		return nil, err
	}
	d.stmts.OneShot = true
	return d, nil
}

// Close closes the statements d prepared.
func (d *Driver) Close() error {
	d.stmts.Close()
	return nil
}

// Migrate creates or updates the queue tables; see migrations/.
func Migrate(ctx context.Context, db *gorm.DB) error {
	d, err := NewOneShot(db)
	if err != nil {
		return err
	}
	return d.Migrate(ctx)
}

// Dialect is "postgres".
func (d *Driver) Dialect() string { return "postgres" }

// lockClass namespaces the engine's advisory locks ("CANQ").
const lockClass = 0x43414E51

// Migrate applies the embedded migrations, one process at a time.
func (d *Driver) Migrate(ctx context.Context) error {
	ms, err := queuesql.Load(migrations, "migrations")
	if err != nil {
		return err
	}
	return queuesql.Apply(ctx, d.db, queuesql.Dialect{
		Lock: func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))`, lockClass)
			return err
		},
		TableExists: func(ctx context.Context, tx *sql.Tx, table string) (bool, error) {
			var ok bool
			err := tx.QueryRowContext(ctx, `SELECT to_regclass(quote_ident(current_schema()) || '.' || $1) IS NOT NULL`, table).Scan(&ok)
			return ok, err
		},
		Exec: func(ctx context.Context, tx *sql.Tx, q string) error {
			_, err := tx.ExecContext(ctx, q) // no arguments: one simple-protocol batch
			return err
		},
	}, ms)
}

// keyLock is the advisory lock of a key name (see lockName). Advisory locks
// are database-wide: the schema is part of the name, so the same key in
// two schemas (two deployments, or tests in parallel) is two locks.
func keyLock(name string) string {
	return `pg_advisory_xact_lock($1, hashtext(current_schema() || chr(31) || ` + name + `))`
}

// lockKeysSQL takes the key locks of pairs (queue, key) in a fixed order,
// so that one statement's keys never deadlock another's.
var lockKeysSQL = `SELECT ` + keyLock("k") + ` FROM (SELECT DISTINCT unnest($2::text[]) AS k ORDER BY 1) s`

func lockName(q, key string) string { return q + "\x1f" + key }

const openKey = `EXISTS (SELECT 1 FROM canal_queue_items o WHERE o.queue = $1 AND o.item_key = $2 AND o.item_key <> ''
  AND o.state IN ('pending', 'running', 'rescued', 'dead') AND (o.state <> 'dead' OR o.blocks))`

const insertSQL = `INSERT INTO canal_queue_items (public_id, queue, kind, item_key, priority, payload, meta, state,
  max_attempts, last_error, run_at_us, created_us, updated_us, finished_us` + insertValues + `)
RETURNING id`

const insertValues = `)
VALUES ($3, $1, $4, $2, $5, $6, $7,
  CASE WHEN $8::text <> '' THEN $8::text WHEN $2 <> '' AND ($12::boolean OR ` + openKey + `) THEN 'held' ELSE 'pending' END,
  $9, $10, $11, $13::bigint, $13::bigint, CASE WHEN $8::text <> '' THEN $13::bigint ELSE 0 END`

// insertUniqueSQL inserts an item with a unique key unless an item holds
// the key (no row returned then). An inserter of the same key that has not
// committed yet is waited for: its commit makes this a conflict, its
// rollback lets this row in. The target infers the partial unique index
// from its predicate, so no other constraint's conflict is passed over.
var insertUniqueSQL = `INSERT INTO canal_queue_items (public_id, queue, kind, item_key, priority, payload, meta, state,
  max_attempts, last_error, run_at_us, created_us, updated_us, finished_us, unique_key, unique_states` + insertValues + `, $14, $15)
ON CONFLICT (queue, unique_key) WHERE ` + queuesql.Unique("") + ` DO NOTHING
RETURNING id`

// holderOfSQL finds the item holding the unique key of another.
var holderOfSQL = strings.ReplaceAll(queuesql.HolderOfSQL, "i.queue = ? AND i.public_id = ?", "i.queue = $1 AND i.public_id = $2")

// holderSQL finds the item that holds a unique key.
var holderSQL = `SELECT id, public_id FROM canal_queue_items WHERE queue = $1 AND unique_key = $2 AND ` + queuesql.Unique("")

// Insert writes items in tx. A keyed insert first takes its key's
// transaction-scoped lock: IDs come from a sequence at insert time, not at
// commit, so without it two transactions adding to one key could commit
// out of ID order (watermill#311). The lock also orders the held/pending
// decision against the completer's promotion, which takes it too.
func (d *Driver) Insert(ctx context.Context, tx *gorm.DB, q string, nowUS int64, items []queue.NewItem) ([]int64, error) {
	pool := tx.Statement.ConnPool // below gorm: its Raw would rewrite placeholders
	var names []string
	for _, it := range items {
		if it.Key != "" {
			names = append(names, lockName(q, it.Key))
		}
	}
	if len(names) > 0 {
		if _, err := pool.ExecContext(ctx, lockKeysSQL, lockClass, names); err != nil {
			return nil, fmt.Errorf("lock keys: %w", err)
		}
	}
	ids := make([]int64, 0, len(items))
	seen := map[string]bool{}
	for _, it := range items {
		payload, meta, created, state := queuesql.Defaults(it, nowUS)
		var id int64
		args := []any{q, it.Key, it.PublicID, it.Kind, it.Priority, payload, meta,
			state, it.MaxAttempts, queue.Text(it.LastError), queue.US(it.RunAt), seen[it.Key], created}
		var err error
		if it.UniqueKey == "" {
			err = pool.QueryRowContext(ctx, insertSQL, args...).Scan(&id)
		} else {
			id, err = queuesql.InsertUnique(it.UniqueKey, func() *sql.Row {
				return pool.QueryRowContext(ctx, insertUniqueSQL, append(args, it.UniqueKey, it.UniqueMaskOf())...)
			}, func() *sql.Row {
				return pool.QueryRowContext(ctx, holderSQL, q, it.UniqueKey)
			})
		}
		if err != nil {
			return nil, err
		}
		if it.Key != "" && state == "" {
			seen[it.Key] = true
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (d *Driver) claimSQL(priorities int) string {
	d.claimMu.Lock()
	defer d.claimMu.Unlock()
	if q, ok := d.claims[priorities]; ok {
		return q
	}
	// One CTE per priority walks the claim index in order, locks what it
	// takes (skipping rows another claimer holds) and stops at the limit;
	// a weighted rank over at most priorities×limit rows then shares the
	// batch. Rows locked but not picked are released at the statement's end.
	n := max(priorities, 1)
	var ctes, ranks []string
	for p := range n {
		ctes = append(ctes, fmt.Sprintf(`p%d AS (SELECT id, run_at_us FROM canal_queue_items
  WHERE state = 'pending' AND queue = $1 AND priority = %d AND run_at_us <= $4
  ORDER BY run_at_us, id LIMIT $5 FOR UPDATE SKIP LOCKED)`, p, p))
		ranks = append(ranks, fmt.Sprintf(`SELECT id, (row_number() OVER (ORDER BY run_at_us, id))::float8 / COALESCE(($6::int[])[%d], 1) AS r FROM p%d`, p+1, p))
	}
	pick := `pick AS (SELECT id FROM (` + strings.Join(ranks, "\nUNION ALL\n") + `) ranked ORDER BY r, id LIMIT $5)`
	if n == 1 {
		// One priority (the outbox): nothing to share, no rank to sort.
		pick = `pick AS (SELECT id FROM p0)` // and no $6: Claim passes no weights
	}
	q := `WITH ` + strings.Join(ctes, ",\n") + `,
` + pick + `,
async AS (` + asyncCommit + `)
UPDATE canal_queue_items t SET state = 'running', attempt = t.attempt + 1, owner = $2, lease_until_us = $3,
  started_us = $4, updated_us = $4, solo = false
FROM pick, async WHERE t.id = pick.id
RETURNING ` + prefixed("t.")
	d.claims[priorities] = q
	return q
}

// prefixed qualifies Columns with a table alias.
func prefixed(p string) string {
	cols := strings.Split(queuesql.Columns, ",")
	for i, c := range cols {
		cols[i] = p + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// Claim leases a batch in one statement.
func (d *Driver) Claim(ctx context.Context, r queue.ClaimRequest) ([]queue.Item, error) {
	w := make([]int32, len(r.Weights))
	for i, v := range r.Weights {
		w[i] = int32(v)
	}
	args := []any{r.Queue, r.Owner, r.LeaseUS, r.NowUS, r.Limit}
	if len(w) > 1 {
		args = append(args, w)
	}
	rows, err := d.stmts.Query(ctx, nil, d.claimSQL(len(r.Weights)), args...)
	items, err := queuesql.ScanAppend(make([]queue.Item, 0, min(max(r.Limit, 0), 4096)), rows, err)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	queuesql.SortClaimed(items)
	return items, nil
}

const claimRescuedSQL = `WITH c AS (SELECT id FROM canal_queue_items WHERE state = 'rescued' AND queue = $1
  ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE canal_queue_items t SET state = 'running', attempt = t.attempt + 1, owner = $2, lease_until_us = $3,
  started_us = $4, updated_us = $4, solo = true
FROM c WHERE t.id = c.id
RETURNING `

// ClaimRescued leases the oldest suspect alone.
func (d *Driver) ClaimRescued(ctx context.Context, r queue.ClaimRequest) ([]queue.Item, error) {
	items, err := queuesql.ScanAll(d.stmts.Query(ctx, nil, claimRescuedSQL+prefixed("t."), r.Queue, r.Owner, r.LeaseUS, r.NowUS))
	if err != nil {
		return nil, fmt.Errorf("claim rescued: %w", err)
	}
	return items, nil
}

// HasRescued reports whether queue has a suspect.
func (d *Driver) HasRescued(ctx context.Context, q string) (bool, error) {
	rows, err := d.stmts.Query(ctx, nil, `SELECT id FROM canal_queue_items WHERE state = 'rescued' AND queue = $1 LIMIT 1`, q)
	if err != nil {
		return false, fmt.Errorf("look for rescued items: %w", err)
	}
	defer rows.Close()
	return rows.Next(), rows.Err()
}

// asyncCommit makes the statement's transaction commit without waiting
// for the WAL flush (synchronous_commit off, for that transaction only).
// The engine's claims and outcomes are safe to lose in a database crash: a
// lost claim leaves the item pending, a lost outcome leaves it running
// until its lease expires, and either way it is delivered again, which
// at-least-once delivery allows. Items are inserted by the caller's own
// transaction, durable as the caller's settings make it; hand-made changes
// (retry, delete) keep the durable default.
const asyncCommit = `SELECT set_config('synchronous_commit', 'off', true)`

// completeSQL writes a batch of outcomes and the attempts of those whose
// claim still held, in one statement (one round trip; in autocommit when
// no key needs promoting).
const completeSQL = `WITH u AS (
UPDATE canal_queue_items AS t
SET state = u.s, run_at_us = u.r, failures = u.f, last_error = u.e, blocks = u.b, attempt = t.attempt - u.g,
  owner = '', lease_until_us = 0, solo = false, updated_us = u.n,
  finished_us = CASE WHEN u.s IN ('done', 'dead', 'dropped', 'cancelled') THEN u.n ELSE t.finished_us END,
  started_us = CASE WHEN u.du >= 0 THEN u.st ELSE t.started_us END, duration_us = u.du,
  meta = CASE WHEN u.hm THEN u.m ELSE t.meta END
FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::bigint[], $6::int[], $7::text[], $8::boolean[], $9::int[], $10::bigint[],
  $16::bigint[], $17::bigint[], $18::boolean[], $19::text[])
  AS u(id, o, a, s, r, f, e, b, g, n, st, du, hm, m)
WHERE t.id = u.id AND t.state = 'running' AND t.owner = u.o AND t.attempt = u.a
RETURNING t.id),
att AS (INSERT INTO canal_queue_attempts (item_id, number, started_us, duration_us, error)
  SELECT x.id, x.num, x.st, x.du, x.er
  FROM unnest($11::bigint[], $12::int[], $13::bigint[], $14::bigint[], $15::text[]) AS x(id, num, st, du, er)
  WHERE x.id IN (SELECT id FROM u)
  ON CONFLICT (item_id, number) DO NOTHING),
async AS (` + asyncCommit + `)
SELECT u.id FROM u, async`

const promoteSQL = `UPDATE canal_queue_items SET state = 'pending', updated_us = $3
WHERE id IN (
  SELECT (SELECT h.id FROM canal_queue_items h WHERE h.queue = k.q AND h.item_key = k.k AND h.state = 'held'
      ORDER BY h.id LIMIT 1)
  FROM unnest($1::text[], $2::text[]) AS k(q, k)
  WHERE NOT EXISTS (SELECT 1 FROM canal_queue_items o WHERE o.queue = k.q AND o.item_key = k.k
    AND o.item_key <> '' AND o.state IN ('pending', 'running', 'rescued', 'dead') AND (o.state <> 'dead' OR o.blocks)))`

// Complete writes outcomes in one transaction: one UPDATE over unnest'ed
// arrays, one INSERT of the attempts, and one promotion of the next item of
// every key whose head finished.
//
// The promotion must see the held rows of inserters of those keys, so it
// holds their key locks; but an inserter may hold several keys' locks in
// any order (its own transaction), so waiting for them while holding
// others could deadlock with it, and PostgreSQL would then abort one side,
// perhaps the caller's business transaction. So the completer only tries
// the locks: the outcome of a head whose key an inserter holds right now is
// left for a moment (its item stays running, its lease renewed) and
// written in a next transaction once that inserter has committed.
func (d *Driver) Complete(ctx context.Context, outs []queue.Outcome) ([]bool, error) {
	ok := make([]bool, len(outs))
	idx := make([]int, len(outs))
	for i := range idx {
		idx[i] = i
	}
	for wait := 500 * time.Microsecond; len(idx) > 0; wait = min(2*wait, 50*time.Millisecond) {
		var err error
		if idx, err = d.completeOnce(ctx, outs, idx, ok); err != nil {
			return nil, fmt.Errorf("complete: %w", err)
		}
		if len(idx) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("complete: keys still locked by inserters: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
	return ok, nil
}

// frees says whether an outcome ends its key's hold: final and not a dead
// item that blocks.
func frees(o queue.Outcome) bool {
	return o.Key != "" && o.State.Final() && !(o.State == queue.StateDead && o.Blocks)
}

const tryLockKeysSQL = `SELECT k FROM unnest($2::text[]) AS k
WHERE pg_try_advisory_xact_lock($1, hashtext(current_schema() || chr(31) || k))`

// completeOnce writes the outcomes idx names whose key locks it gets, and
// returns the others.
func (d *Driver) completeOnce(ctx context.Context, outs []queue.Outcome, idx []int, ok []bool) (deferred []int, err error) {
	write := d.tx
	if !slices.ContainsFunc(idx, func(i int) bool { return frees(outs[i]) }) {
		write = d.noTx // one statement: autocommit
	}
	err = write(ctx, func(tx *sql.Tx) error {
		deferred = deferred[:0]
		locked := map[string]bool{}
		var names []string
		for _, i := range idx {
			if frees(outs[i]) {
				names = append(names, lockName(outs[i].Queue, outs[i].Key))
			}
		}
		if len(names) > 0 {
			slices.Sort(names)
			rows, err := d.stmts.Query(ctx, tx, tryLockKeysSQL, lockClass, slices.Compact(names))
			if err != nil {
				return err
			}
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					rows.Close()
					return err
				}
				locked[k] = true
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		var sel []int
		for _, i := range idx {
			if frees(outs[i]) && !locked[lockName(outs[i].Queue, outs[i].Key)] {
				deferred = append(deferred, i)
			} else {
				sel = append(sel, i)
			}
		}
		if len(sel) == 0 {
			return nil
		}
		n := len(sel)
		ids, owners, states, errs := make([]int64, n), make([]string, n), make([]string, n), make([]string, n)
		atts, fails, backs := make([]int32, n), make([]int32, n), make([]int32, n)
		runAts, nows, starts, durs := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		blocks, hasMeta, metas := make([]bool, n), make([]bool, n), make([]string, n)
		for j, i := range sel {
			o := outs[i]
			if o.Meta != nil {
				hasMeta[j], metas[j] = true, string(o.Meta)
			}
			ids[j], owners[j], states[j], errs[j] = o.ID, o.Owner, string(o.State), queue.Text(o.LastError)
			atts[j], fails[j] = int32(o.Attempt), int32(o.Failures)
			runAts[j], nows[j], blocks[j] = o.RunAtUS, o.NowUS, o.Blocks
			if o.GiveBack {
				backs[j] = 1
			}
			starts[j], durs[j] = 0, -1
			if o.InRow() {
				starts[j], durs[j] = o.StartedUS, max(o.DurationUS, 0)
			}
		}
		var aID, aStart, aDur []int64
		var aNum []int32
		var aErr []string
		for _, i := range sel {
			if o := outs[i]; !o.GiveBack && !o.InRow() {
				aID, aNum, aStart, aDur, aErr = append(aID, o.ID), append(aNum, int32(o.Attempt)),
					append(aStart, o.StartedUS), append(aDur, o.DurationUS), append(aErr, queue.Text(o.Error))
			}
		}
		rows, err := d.stmts.Query(ctx, tx, completeSQL, ids, owners, atts, states, runAts, fails, errs, blocks, backs, nows,
			aID, aNum, aStart, aDur, aErr, starts, durs, hasMeta, metas)
		if err != nil {
			return err
		}
		done := map[int64]bool{}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			done[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var kq, kk []string
		var nowUS int64
		for _, i := range sel {
			o := outs[i]
			ok[i] = done[o.ID]
			if ok[i] && frees(o) {
				nowUS = max(nowUS, o.NowUS)
				kq, kk = append(kq, o.Queue), append(kk, o.Key)
			}
		}
		if len(kk) > 0 {
			_, err = d.stmts.Exec(ctx, tx, promoteSQL, kq, kk, nowUS)
		}
		return err
	})
	return deferred, err
}

// promote locks the keys (waiting for inserters of them to commit, so
// their held rows are seen) and makes each key's next item pending if the
// key has no open item left.
func (d *Driver) promote(ctx context.Context, tx *sql.Tx, qs, keys []string, nowUS int64) error {
	if len(keys) == 0 {
		return nil
	}
	names := make([]string, len(keys))
	for i := range keys {
		names[i] = lockName(qs[i], keys[i])
	}
	// Only tried, for the completer's reason (see Complete): a key an
	// inserter holds makes the whole change wait and start again.
	slices.Sort(names)
	names = slices.Compact(names)
	rows, err := d.stmts.Query(ctx, tx, tryLockKeysSQL, lockClass, names)
	if err != nil {
		return err
	}
	got := 0
	for rows.Next() {
		got++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if got < len(names) {
		return errKeysBusy
	}
	_, err = d.stmts.Exec(ctx, tx, promoteSQL, qs, keys, nowUS)
	return err
}

// errKeysBusy: an inserter holds a key a hand-made change must promote.
var errKeysBusy = errors.New("queue postgres: keys held by an inserter")

// adminTx is tx for hand-made changes, run again (a few milliseconds
// later) while an inserter holds one of their keys.
func (d *Driver) adminTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := d.tx(ctx, fn)
		if !errors.Is(err, errKeysBusy) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", err, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// noTx runs fn outside a transaction (tx nil): for a single statement.
func (d *Driver) noTx(ctx context.Context, fn func(tx *sql.Tx) error) error { return fn(nil) }

func (d *Driver) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Heartbeat upserts the process row and renews its leases on ids.
func (d *Driver) Heartbeat(ctx context.Context, p queue.ProcessRow, ids []int64, leaseUS int64) error {
	_, err := d.stmts.Exec(ctx, nil, `INSERT INTO canal_queue_processes (id, host, pid, started_us, heartbeat_us, version)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET heartbeat_us = excluded.heartbeat_us`,
		p.ID, p.Host, p.PID, p.StartedUS, p.HeartbeatUS, p.Version)
	if err != nil || len(ids) == 0 {
		return err
	}
	// SKIP LOCKED: a row the completer is writing needs no renewal, and
	// waiting for it while holding others could deadlock with it.
	_, err = d.stmts.Exec(ctx, nil, `UPDATE canal_queue_items SET lease_until_us = $1
WHERE id IN (SELECT id FROM canal_queue_items WHERE id = ANY($3::bigint[]) AND state = 'running' AND owner = $2
  ORDER BY id FOR UPDATE SKIP LOCKED)`, leaseUS, p.ID, ids)
	return err
}

// Forget deletes a process row.
func (d *Driver) Forget(ctx context.Context, id string) error {
	_, err := d.stmts.Exec(ctx, nil, `DELETE FROM canal_queue_processes WHERE id = $1`, id)
	return err
}

// Rescue moves expired leases to rescued; SKIP LOCKED leaves alone a row a
// completer is writing at that moment.
func (d *Driver) Rescue(ctx context.Context, nowUS int64, limit int) (int64, error) {
	res, err := d.stmts.Exec(ctx, nil, `WITH c AS (SELECT id FROM canal_queue_items WHERE state = 'running' AND lease_until_us < $1
  ORDER BY lease_until_us LIMIT $3 FOR UPDATE SKIP LOCKED)
UPDATE canal_queue_items t
SET state = 'rescued', failures = t.failures + CASE WHEN t.solo THEN 1 ELSE 0 END,
  last_error = CASE WHEN t.solo THEN $2 ELSE t.last_error END,
  owner = '', lease_until_us = 0, solo = false, updated_us = $1
FROM c WHERE t.id = c.id AND t.state = 'running' AND t.lease_until_us < $1`, nowUS, queue.CutShort, limit)
	if err != nil {
		return 0, fmt.Errorf("rescue: %w", err)
	}
	return res.RowsAffected()
}

// Listen holds one connection that LISTENs on canal_queue and wakes the
// queues named in this schema's notifications.
func (d *Driver) Listen(ctx context.Context, wake func(string)) error {
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("queue postgres: LISTEN needs the pgx driver, got %T", dc)
		}
		pc := sc.Conn()
		var schema string
		if err := pc.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			return err
		}
		if _, err := pc.Exec(ctx, `LISTEN canal_queue`); err != nil {
			return err
		}
		prefix := schema + "."
		for {
			n, err := pc.WaitForNotification(ctx)
			if err != nil {
				if ctx.Err() != nil {
					// This connection still listens: do not return it to the pool.
					return driver.ErrBadConn
				}
				return err
			}
			if q, ok := strings.CutPrefix(n.Payload, prefix); ok {
				wake(q)
			}
		}
	})
}

// Notify wakes name in every process listening on this schema.
func (d *Driver) Notify(ctx context.Context, name string) error { return d.notify(ctx, nil, name) }

func (d *Driver) notify(ctx context.Context, tx *sql.Tx, q string) error {
	_, err := d.stmts.Exec(ctx, tx, `SELECT pg_notify('canal_queue', current_schema() || '.' || $1)`, q)
	return err
}

const retrySet = `SET state = CASE WHEN state = 'rescued' THEN 'rescued'
    WHEN state IN ('dead', 'dropped') AND NOT blocks AND item_key <> '' THEN 'held' ELSE 'pending' END,
  run_at_us = 0, failures = 0, blocks = false, finished_us = 0, updated_us = $1`

// Retry retries one item by hand.
func (d *Driver) Retry(ctx context.Context, q, publicID string, nowUS int64) (queue.Item, error) {
	var out queue.Item
	err := d.adminTx(ctx, func(tx *sql.Tx) error {
		items, err := queuesql.ScanAll(d.stmts.Query(ctx, tx, `UPDATE canal_queue_items `+retrySet+`
WHERE queue = $2 AND public_id = $3 AND state IN ('dead', 'dropped', 'pending', 'rescued')
  AND `+queuesql.UniqueFree()+` RETURNING `+queuesql.Columns, nowUS, q, publicID))
		if err != nil {
			return err
		}
		if len(items) == 0 {
			if dup := queuesql.DuplicateOf(tx.QueryRowContext(ctx, holderOfSQL, q, publicID)); dup != nil {
				return dup
			}
			return d.whyNot(ctx, tx, q, publicID)
		}
		if err := d.promoteItems(ctx, tx, items, nowUS); err != nil {
			return err
		}
		if out, err = d.reread(ctx, tx, items[0].ID); err != nil {
			return err
		}
		return d.notify(ctx, tx, q)
	})
	return out, err
}

func (d *Driver) promoteItems(ctx context.Context, tx *sql.Tx, items []queue.Item, nowUS int64) error {
	var qs, ks []string
	for _, it := range items {
		if it.Key != "" {
			qs, ks = append(qs, it.Queue), append(ks, it.Key)
		}
	}
	return d.promote(ctx, tx, qs, ks, nowUS)
}

func (d *Driver) reread(ctx context.Context, tx *sql.Tx, id int64) (queue.Item, error) {
	items, err := queuesql.ScanAll(d.stmts.Query(ctx, tx, `SELECT `+queuesql.Columns+` FROM canal_queue_items WHERE id = $1`, id))
	if err != nil {
		return queue.Item{}, err
	}
	if len(items) == 0 {
		return queue.Item{}, queue.ErrNotFound
	}
	return items[0], nil
}

func (d *Driver) whyNot(ctx context.Context, tx *sql.Tx, q, publicID string) error {
	var st string
	err := tx.QueryRowContext(ctx, `SELECT state FROM canal_queue_items WHERE queue = $1 AND public_id = $2`, q, publicID).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return queue.ErrNotFound
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%w (%s)", queue.ErrState, st)
}

// RetryDead retries every dead item of queue (and kind).
func (d *Driver) RetryDead(ctx context.Context, q, kind string, nowUS int64) (int64, error) {
	var n int64
	err := d.adminTx(ctx, func(tx *sql.Tx) error {
		items, err := queuesql.ScanAll(d.stmts.Query(ctx, tx, `UPDATE canal_queue_items `+retrySet+`
WHERE queue = $2 AND state = 'dead' AND ($3 = '' OR kind = $3)
  AND `+queuesql.UniqueFree()+` RETURNING `+queuesql.Columns, nowUS, q, kind))
		if err != nil {
			return err
		}
		n = int64(len(items))
		if err := d.promoteItems(ctx, tx, items, nowUS); err != nil {
			return err
		}
		return d.notify(ctx, tx, q)
	})
	if err != nil {
		return 0, fmt.Errorf("retry dead: %w", err)
	}
	return n, nil
}

// Delete removes an item in one of states and its attempts.
func (d *Driver) Delete(ctx context.Context, q, publicID string, states []queue.State) (queue.Item, error) {
	ss := make([]string, len(states))
	for i, s := range states {
		ss[i] = string(s)
	}
	var out queue.Item
	err := d.adminTx(ctx, func(tx *sql.Tx) error {
		items, err := queuesql.ScanAll(d.stmts.Query(ctx, tx, `DELETE FROM canal_queue_items
WHERE queue = $1 AND public_id = $2 AND state = ANY($3::text[]) RETURNING `+queuesql.Columns, q, publicID, ss))
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return d.whyNot(ctx, tx, q, publicID)
		}
		out = items[0]
		if _, err := d.stmts.Exec(ctx, tx, `DELETE FROM canal_queue_attempts WHERE item_id = $1`, out.ID); err != nil {
			return err
		}
		return d.promoteItems(ctx, tx, items, queue.US(out.UpdatedAt))
	})
	return out, err
}

// Drop ends a waiting item by hand (dropped or cancelled).
func (d *Driver) Drop(ctx context.Context, q, publicID string, to queue.State, reason string, nowUS int64) (queue.Item, error) {
	var out queue.Item
	err := d.adminTx(ctx, func(tx *sql.Tx) error {
		items, err := queuesql.ScanAll(d.stmts.Query(ctx, tx, `UPDATE canal_queue_items
SET state = $3, last_error = $4, finished_us = $5, updated_us = $5
WHERE queue = $1 AND public_id = $2 AND state IN ('pending', 'held', 'rescued') RETURNING `+queuesql.Columns,
			q, publicID, string(to), queue.Text(reason), nowUS))
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return d.whyNot(ctx, tx, q, publicID)
		}
		out = items[0]
		return d.promoteItems(ctx, tx, items, nowUS)
	})
	return out, err
}
