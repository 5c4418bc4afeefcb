// Package sqlite is the queue engine's driver for SQLite. SQLite has one
// writer at a time, so a claim is one UPDATE … RETURNING (atomic under that
// writer), inserts of a key commit in ID order without a lock, outcomes
// are bound as rows of a VALUES list (statements prepared for a few batch
// sizes), and the other set-based statements take their rows as one JSON
// array (json_each).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/queuesql"
	"gorm.io/gorm"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Driver is the SQLite queue driver.
type Driver struct {
	queuesql.Reader
	db    *sql.DB
	stmts *queuesql.Stmts
	// wmu makes the engine's own writes take turns in the process:
	// SQLite has one writer at a time, and writers that collide wait in
	// its busy handler, which sleeps milliseconds between tries.
	wmu sync.Mutex
	// The claim SQL per number of priorities.
	claimMu sync.Mutex
	claims  map[int]string
}

var _ queue.Driver = (*Driver)(nil)

// New returns the driver for db, a SQLite gorm handle.
func New(db *gorm.DB) (*Driver, error) {
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("queue sqlite: %w", err)
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

// Dialect is "sqlite".
func (d *Driver) Dialect() string { return "sqlite" }

// Migrate applies the embedded migrations.
func (d *Driver) Migrate(ctx context.Context) error {
	ms, err := queuesql.Load(migrations, "migrations")
	if err != nil {
		return err
	}
	return queuesql.Apply(ctx, d.db, queuesql.Dialect{
		TableExists: func(ctx context.Context, tx *sql.Tx, table string) (bool, error) {
			var n int
			err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, table).Scan(&n)
			return n > 0, err
		},
		Exec: func(ctx context.Context, tx *sql.Tx, q string) error {
			_, err := tx.ExecContext(ctx, q)
			return err
		},
	}, ms)
}

// openKey is true when key has an open item: what makes a new one held.
// INDEXED BY: the planner took the key index, every row the key ever had
// (see promoteSQL), and an outbox.Add's cost grew with its key's history.
const openKey = `EXISTS (SELECT 1 FROM canal_queue_items o INDEXED BY canal_queue_items_open_key
  WHERE o.queue = ?1 AND o.item_key = ?2 AND o.item_key <> ''
  AND o.state IN ('pending', 'running', 'rescued', 'dead') AND (o.state <> 'dead' OR o.blocks))`

const insertSQL = `INSERT INTO canal_queue_items (public_id, queue, kind, item_key, priority, payload, meta, state,
  max_attempts, last_error, run_at_us, created_us, updated_us, finished_us` + insertValues + `)
RETURNING id`

const insertValues = `)
VALUES (?3, ?1, ?4, ?2, ?5, ?6, ?7,
  CASE WHEN ?8 <> '' THEN ?8 WHEN ?2 <> '' AND (?12 OR ` + openKey + `) THEN 'held' ELSE 'pending' END,
  ?9, ?10, ?11, ?13, ?13, CASE WHEN ?8 <> '' THEN ?13 ELSE 0 END`

// insertUniqueSQL inserts an item with a unique key unless an item holds
// the key (no row returned then); the conflict target names the partial
// unique index, so no other constraint's conflict is passed over.
var insertUniqueSQL = `INSERT INTO canal_queue_items (public_id, queue, kind, item_key, priority, payload, meta, state,
  max_attempts, last_error, run_at_us, created_us, updated_us, finished_us, unique_key, unique_states` + insertValues + `, ?14, ?15)
ON CONFLICT (queue, unique_key) WHERE ` + queuesql.Unique("") + ` DO NOTHING
RETURNING id`

// holderOfSQL finds the item holding the unique key of another.
var holderOfSQL = strings.ReplaceAll(queuesql.HolderOfSQL, "i.queue = ? AND i.public_id = ?", "i.queue = ?1 AND i.public_id = ?2")

// holderSQL finds the item that holds a unique key.
var holderSQL = `SELECT id, public_id FROM canal_queue_items WHERE queue = ?1 AND unique_key = ?2 AND ` + queuesql.Unique("")

// Insert writes items in tx. Under SQLite's single writer the transaction
// that inserts commits before any other can, so no lock is needed for
// per-key commit order.
func (d *Driver) Insert(ctx context.Context, tx *gorm.DB, q string, nowUS int64, items []queue.NewItem) ([]int64, error) {
	ids := make([]int64, 0, len(items))
	seen := map[string]bool{}
	for _, it := range items {
		payload, meta, created, state := queuesql.Defaults(it, nowUS)
		var id int64
		// Below gorm (its Raw would rewrite the numbered placeholders),
		// on the caller's transaction.
		args := []any{q, it.Key, it.PublicID, it.Kind, it.Priority, payload, meta,
			state, it.MaxAttempts, queue.Text(it.LastError), queue.US(it.RunAt), seen[it.Key], created}
		pool := tx.Statement.ConnPool
		var err error
		if it.UniqueKey == "" {
			err = d.stmts.QueryRowOn(ctx, pool, insertSQL, args...).Scan(&id)
		} else {
			id, err = queuesql.InsertUnique(it.UniqueKey, func() *sql.Row {
				return d.stmts.QueryRowOn(ctx, pool, insertUniqueSQL, append(args, it.UniqueKey, it.UniqueMaskOf())...)
			}, func() *sql.Row {
				return d.stmts.QueryRowOn(ctx, pool, holderSQL, q, it.UniqueKey)
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

const claimSet = `SET state = 'running', attempt = attempt + 1, owner = ?2, lease_until_us = ?3,
  started_us = ?4, updated_us = ?4, solo = `

func (d *Driver) claimSQL(priorities int) string {
	d.claimMu.Lock()
	defer d.claimMu.Unlock()
	if q, ok := d.claims[priorities]; ok {
		return q
	}
	// Each priority's branch walks the claim index in order and stops at
	// the limit; a weighted rank over at most priorities×limit rows then
	// shares the batch (8:4:2:1 gives each level its share, an idle
	// level's share going to the others).
	var pick string
	if priorities <= 1 {
		pick = `SELECT id FROM canal_queue_items WHERE state = 'pending' AND queue = ?1 AND priority = 0 AND run_at_us <= ?4
  ORDER BY run_at_us, id LIMIT ?5`
	} else {
		var bs []string
		for p := range priorities {
			bs = append(bs, fmt.Sprintf(`SELECT id, ROW_NUMBER() OVER (ORDER BY run_at_us, id) * 1.0 / json_extract(?6, '$[%d]') AS r
  FROM (SELECT id, run_at_us FROM canal_queue_items WHERE state = 'pending' AND queue = ?1 AND priority = %d AND run_at_us <= ?4
    ORDER BY run_at_us, id LIMIT ?5)`, p, p))
		}
		pick = `SELECT id FROM (` + strings.Join(bs, "\nUNION ALL\n") + `) ORDER BY r, id LIMIT ?5`
	}
	q := `UPDATE canal_queue_items ` + claimSet + `0 WHERE id IN (` + pick + `) RETURNING ` + queuesql.Columns
	d.claims[priorities] = q
	return q
}

// Claim leases a batch in one statement.
func (d *Driver) Claim(ctx context.Context, r queue.ClaimRequest) ([]queue.Item, error) {
	w, _ := json.Marshal(r.Weights)
	d.wmu.Lock()
	defer d.wmu.Unlock()
	rows, err := d.stmts.Query(ctx, nil, d.claimSQL(len(r.Weights)), r.Queue, r.Owner, r.LeaseUS, r.NowUS, r.Limit, string(w))
	items, err := queuesql.ScanAppend(make([]queue.Item, 0, min(max(r.Limit, 0), 4096)), rows, err)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	queuesql.SortClaimed(items)
	return items, nil
}

const claimRescuedSQL = `UPDATE canal_queue_items ` + claimSet + `1
WHERE id = (SELECT id FROM canal_queue_items WHERE state = 'rescued' AND queue = ?1 ORDER BY id LIMIT 1)
RETURNING ` + queuesql.Columns

// ClaimRescued leases the oldest suspect alone.
func (d *Driver) ClaimRescued(ctx context.Context, r queue.ClaimRequest) ([]queue.Item, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	items, err := queuesql.ScanAll(d.stmts.Query(ctx, nil, claimRescuedSQL, r.Queue, r.Owner, r.LeaseUS, r.NowUS))
	if err != nil {
		return nil, fmt.Errorf("claim rescued: %w", err)
	}
	return items, nil
}

// HasRescued reports whether queue has a suspect.
func (d *Driver) HasRescued(ctx context.Context, q string) (bool, error) {
	rows, err := d.stmts.Query(ctx, nil, `SELECT id FROM canal_queue_items WHERE state = 'rescued' AND queue = ?1 LIMIT 1`, q)
	if err != nil {
		return false, fmt.Errorf("look for rescued items: %w", err)
	}
	defer rows.Close()
	return rows.Next(), rows.Err()
}

// completeRows are the batch sizes completeSQL is prepared for: a batch of
// outcomes goes as the fewest statements of these sizes (1 000 outcomes:
// 3×256, 3×64, 2×16, 2×4). Bound parameters, not a JSON array: reading
// twelve fields out of each json_each row parsed every row's JSON twelve
// times, more than half of a completion's time in a CPU profile.
var completeRows = []int{256, 64, 16, 4, 1}

// completeCols is one outcome's parameters, in the order of outcomeArgs.
const completeCols = 13

// completeSQLs holds completeSQL for each of completeRows.
var completeSQLs = func() map[int]string {
	m := map[int]string{}
	for _, n := range completeRows {
		m[n] = completeSQL(n)
	}
	return m
}()

// completeSQL is the completion of n outcomes.
func completeSQL(n int) string {
	row := "(?" + strings.Repeat(",?", completeCols-1) + ")"
	var b strings.Builder
	b.WriteString(`WITH u(id, o, a, s, r, f, e, b, g, n, st, du, m) AS (VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	b.WriteString(`)
UPDATE canal_queue_items AS t
SET state = u.s, run_at_us = u.r, failures = u.f, last_error = u.e, blocks = u.b, attempt = t.attempt - u.g,
  owner = '', lease_until_us = 0, solo = 0, updated_us = u.n,
  finished_us = CASE WHEN u.s IN ('done', 'dead', 'dropped', 'cancelled') THEN u.n ELSE t.finished_us END,
  started_us = CASE WHEN u.du >= 0 THEN u.st ELSE t.started_us END, duration_us = u.du,
  meta = COALESCE(u.m, t.meta)
FROM u
WHERE t.id = u.id AND t.state = 'running' AND t.owner = u.o AND t.attempt = u.a
RETURNING id`)
	return b.String()
}

// outcomeArgs appends o's completeCols parameters to args.
func outcomeArgs(args []any, o queue.Outcome) []any {
	started, duration := int64(0), int64(-1) // -1: the attempt is an attempts row
	if o.InRow() {
		started, duration = o.StartedUS, max(o.DurationUS, 0)
	}
	var meta any // NULL: unchanged
	if o.Meta != nil {
		meta = string(o.Meta)
	}
	return append(args, o.ID, o.Owner, o.Attempt, string(o.State), o.RunAtUS, o.Failures,
		queue.Text(o.LastError), b2i(o.Blocks), b2i(o.GiveBack), o.NowUS, started, duration, meta)
}

const attemptsSQL = `INSERT INTO canal_queue_attempts (item_id, number, started_us, duration_us, error)
SELECT value ->> 'i', value ->> 'n', value ->> 's', value ->> 'd', value ->> 'e' FROM json_each(?1) WHERE true
ON CONFLICT (item_id, number) DO NOTHING`

// promoteSQL makes the next held item of each key pending when the key
// has no open item left. INDEXED BY, because SQLite's planner (without
// ANALYZE) searched the key's every row for an open one (the key index:
// its done rows too, kept a day) and the queue's every held row for the
// key's head (the state index): a key's completion cost grew with its
// history and its backlog, and a soak's throughput fell from 350 to 50
// orders/s in 10 minutes.
const promoteSQL = `UPDATE canal_queue_items SET state = 'pending', updated_us = ?2
WHERE id IN (
  SELECT (SELECT h.id FROM canal_queue_items h INDEXED BY canal_queue_items_held
      WHERE h.queue = k.value ->> 'q' AND h.item_key = k.value ->> 'k'
      AND h.state = 'held' ORDER BY h.id LIMIT 1)
  FROM json_each(?1) AS k
  WHERE NOT EXISTS (SELECT 1 FROM canal_queue_items o INDEXED BY canal_queue_items_open_key
    WHERE o.queue = k.value ->> 'q' AND o.item_key = k.value ->> 'k'
    AND o.item_key <> '' AND o.state IN ('pending', 'running', 'rescued', 'dead') AND (o.state <> 'dead' OR o.blocks)))`

type attemptJSON struct {
	ID       int64  `json:"i"`
	Number   int    `json:"n"`
	Started  int64  `json:"s"`
	Duration int64  `json:"d"`
	Err      string `json:"e"`
}

type keyJSON struct {
	Q string `json:"q"`
	K string `json:"k"`
}

// Complete writes outcomes in one transaction: the completion in as few
// statements as completeRows allows, then the attempts rows and the keys'
// next heads, set-based.
func (d *Driver) Complete(ctx context.Context, outs []queue.Outcome) ([]bool, error) {
	if len(outs) == 0 {
		return nil, nil
	}
	ok := make([]bool, len(outs))
	err := d.tx(ctx, func(tx *sql.Tx) error {
		done := make(map[int64]bool, len(outs))
		args := make([]any, 0, completeRows[0]*completeCols)
		for rest := outs; len(rest) > 0; {
			n := completeRows[len(completeRows)-1]
			for _, size := range completeRows {
				if size <= len(rest) {
					n = size
					break
				}
			}
			args = args[:0]
			for _, o := range rest[:n] {
				args = outcomeArgs(args, o)
			}
			rest = rest[n:]
			if err := d.completed(ctx, tx, completeSQLs[n], args, done); err != nil {
				return err
			}
		}
		var atts []attemptJSON
		var keys []keyJSON
		var nowUS int64
		for i, o := range outs {
			ok[i] = done[o.ID]
			if !ok[i] {
				continue
			}
			nowUS = max(nowUS, o.NowUS)
			if !o.GiveBack && !o.InRow() {
				atts = append(atts, attemptJSON{ID: o.ID, Number: o.Attempt, Started: o.StartedUS, Duration: o.DurationUS, Err: queue.Text(o.Error)})
			}
			if o.Key != "" && frees(o) {
				keys = append(keys, keyJSON{Q: o.Queue, K: o.Key})
			}
		}
		if len(atts) > 0 {
			b, _ := json.Marshal(atts)
			if _, err := d.stmts.Exec(ctx, tx, attemptsSQL, string(b)); err != nil {
				return err
			}
		}
		return d.promote(ctx, tx, keys, nowUS)
	})
	if err != nil {
		return nil, fmt.Errorf("complete: %w", err)
	}
	return ok, nil
}

// completed runs one completion statement and notes the IDs it wrote.
func (d *Driver) completed(ctx context.Context, tx *sql.Tx, q string, args []any, done map[int64]bool) error {
	rows, err := d.stmts.Query(ctx, tx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return err
		}
		done[id] = true
	}
	return rows.Err()
}

func (d *Driver) promote(ctx context.Context, tx *sql.Tx, keys []keyJSON, nowUS int64) error {
	if len(keys) == 0 {
		return nil
	}
	b, _ := json.Marshal(keys)
	_, err := d.stmts.Exec(ctx, tx, promoteSQL, string(b), nowUS)
	return err
}

// frees says whether an outcome ends its key's hold: final and not a dead
// item that blocks.
func frees(o queue.Outcome) bool {
	return o.State.Final() && !(o.State == queue.StateDead && o.Blocks)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// tx runs fn in a transaction; the pool's DSN makes it BEGIN IMMEDIATE
// where set, and every transaction here writes first anyway.
func (d *Driver) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
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
	d.wmu.Lock()
	defer d.wmu.Unlock()
	_, err := d.stmts.Exec(ctx, nil, `INSERT INTO canal_queue_processes (id, host, pid, started_us, heartbeat_us, version)
VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET heartbeat_us = excluded.heartbeat_us`,
		p.ID, p.Host, p.PID, p.StartedUS, p.HeartbeatUS, p.Version)
	if err != nil || len(ids) == 0 {
		return err
	}
	b, _ := json.Marshal(ids)
	_, err = d.stmts.Exec(ctx, nil, `UPDATE canal_queue_items SET lease_until_us = ?1
WHERE state = 'running' AND owner = ?2 AND id IN (SELECT value FROM json_each(?3))`, leaseUS, p.ID, string(b))
	return err
}

// Forget deletes a process row.
func (d *Driver) Forget(ctx context.Context, id string) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	_, err := d.stmts.Exec(ctx, nil, `DELETE FROM canal_queue_processes WHERE id = ?1`, id)
	return err
}

// Rescue moves expired leases to rescued.
func (d *Driver) Rescue(ctx context.Context, nowUS int64, limit int) (int64, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	res, err := d.stmts.Exec(ctx, nil, `UPDATE canal_queue_items
SET state = 'rescued', failures = failures + solo, last_error = CASE WHEN solo THEN ?2 ELSE last_error END,
  owner = '', lease_until_us = 0, solo = 0, updated_us = ?1
WHERE id IN (SELECT id FROM canal_queue_items WHERE state = 'running' AND lease_until_us < ?1 ORDER BY lease_until_us LIMIT ?3)`,
		nowUS, queue.CutShort, limit)
	if err != nil {
		return 0, fmt.Errorf("rescue: %w", err)
	}
	return res.RowsAffected()
}

// Listen has no cross-process signal on SQLite: one process owns the file
// in practice, and its Clients wake each other in-process.
func (d *Driver) Listen(ctx context.Context, wake func(string)) error { return nil }

// retrySet makes an item waiting and due at once: a set-aside dead item of a
// key goes behind the key's open items (held, promoted below if none).
const retrySet = `SET state = CASE WHEN state = 'rescued' THEN 'rescued'
    WHEN state IN ('dead', 'dropped') AND NOT blocks AND item_key <> '' THEN 'held' ELSE 'pending' END,
  run_at_us = 0, failures = 0, blocks = 0, finished_us = 0, updated_us = ?1`

// Retry retries one item by hand.
func (d *Driver) Retry(ctx context.Context, q, publicID string, nowUS int64) (queue.Item, error) {
	var out queue.Item
	err := d.tx(ctx, func(tx *sql.Tx) error {
		items, err := queuesql.ScanAll(d.stmts.Query(ctx, tx, `UPDATE canal_queue_items `+retrySet+`
WHERE queue = ?2 AND public_id = ?3 AND state IN ('dead', 'dropped', 'pending', 'rescued')
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
		if err := d.promote(ctx, tx, keysOf(items), nowUS); err != nil {
			return err
		}
		out, err = d.reread(ctx, tx, items[0].ID)
		return err
	})
	return out, err
}

func (d *Driver) reread(ctx context.Context, tx *sql.Tx, id int64) (queue.Item, error) {
	items, err := queuesql.ScanAll(d.stmts.Query(ctx, tx, `SELECT `+queuesql.Columns+` FROM canal_queue_items WHERE id = ?1`, id))
	if err != nil {
		return queue.Item{}, err
	}
	if len(items) == 0 {
		return queue.Item{}, queue.ErrNotFound
	}
	return items[0], nil
}

// whyNot tells ErrNotFound from ErrState after an update matched nothing.
func (d *Driver) whyNot(ctx context.Context, tx *sql.Tx, q, publicID string) error {
	var st string
	err := tx.QueryRowContext(ctx, `SELECT state FROM canal_queue_items WHERE queue = ?1 AND public_id = ?2`, q, publicID).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return queue.ErrNotFound
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%w (%s)", queue.ErrState, st)
}

func keysOf(items []queue.Item) []keyJSON {
	var keys []keyJSON
	for _, it := range items {
		if it.Key != "" {
			keys = append(keys, keyJSON{Q: it.Queue, K: it.Key})
		}
	}
	return keys
}

// RetryDead retries every dead item of queue (and kind).
func (d *Driver) RetryDead(ctx context.Context, q, kind string, nowUS int64) (int64, error) {
	var n int64
	err := d.tx(ctx, func(tx *sql.Tx) error {
		items, err := queuesql.ScanAll(d.stmts.Query(ctx, tx, `UPDATE canal_queue_items `+retrySet+`
WHERE queue = ?2 AND state = 'dead' AND (?3 = '' OR kind = ?3)
  AND `+queuesql.UniqueFree()+` RETURNING `+queuesql.Columns, nowUS, q, kind))
		if err != nil {
			return err
		}
		n = int64(len(items))
		return d.promote(ctx, tx, keysOf(items), nowUS)
	})
	if err != nil {
		return 0, fmt.Errorf("retry dead: %w", err)
	}
	return n, nil
}

// Delete removes an item in one of states and its attempts.
func (d *Driver) Delete(ctx context.Context, q, publicID string, states []queue.State) (queue.Item, error) {
	var out queue.Item
	err := d.tx(ctx, func(tx *sql.Tx) error {
		items, err := queuesql.ScanAll(d.stmts.Query(ctx, tx, `DELETE FROM canal_queue_items
WHERE queue = ?1 AND public_id = ?2 AND state IN (SELECT value FROM json_each(?3)) RETURNING `+queuesql.Columns,
			q, publicID, statesJSON(states)))
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return d.whyNot(ctx, tx, q, publicID)
		}
		out = items[0]
		if _, err := d.stmts.Exec(ctx, tx, `DELETE FROM canal_queue_attempts WHERE item_id = ?1`, out.ID); err != nil {
			return err
		}
		return d.promote(ctx, tx, keysOf(items), queue.US(out.UpdatedAt))
	})
	return out, err
}

func statesJSON(states []queue.State) string {
	ss := make([]string, len(states))
	for i, s := range states {
		ss[i] = strconv.Quote(string(s))
	}
	return "[" + strings.Join(ss, ",") + "]"
}

// Drop ends a waiting item by hand (dropped or cancelled).
func (d *Driver) Drop(ctx context.Context, q, publicID string, to queue.State, reason string, nowUS int64) (queue.Item, error) {
	var out queue.Item
	err := d.tx(ctx, func(tx *sql.Tx) error {
		items, err := queuesql.ScanAll(d.stmts.Query(ctx, tx, `UPDATE canal_queue_items
SET state = ?3, last_error = ?4, finished_us = ?5, updated_us = ?5
WHERE queue = ?1 AND public_id = ?2 AND state IN ('pending', 'held', 'rescued') RETURNING `+queuesql.Columns,
			q, publicID, string(to), queue.Text(reason), nowUS))
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return d.whyNot(ctx, tx, q, publicID)
		}
		out = items[0]
		return d.promote(ctx, tx, keysOf(items), nowUS)
	})
	return out, err
}
