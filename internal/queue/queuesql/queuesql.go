// Package queuesql holds what the queue drivers share: the migration runner,
// the row scanner and the portable read queries (through gorm, whose
// placeholders suit every dialect). Dialect-specific SQL stays in the
// drivers.
package queuesql

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"gorm.io/gorm"
)

// Columns are the item columns every driver selects and returns, in Scan's order.
const Columns = `id, public_id, queue, kind, item_key, priority, payload, meta, state, attempt, failures,
  max_attempts, blocks, last_error, run_at_us, lease_until_us, owner, created_us, updated_us, started_us, finished_us,
  unique_key, unique_states`

// Unique is the condition under which a row holds its unique key: it has
// one and its state is in its unique_states bit set (bit i is
// queue.States()[i]). It is the predicate of both drivers' partial unique
// index canal_queue_items_unique (migration 0011), spelled the same, so
// an item that leaves those states leaves the index and frees its key.
// alias qualifies the columns ("" for none).
func Unique(alias string) string {
	if alias != "" {
		alias += "."
	}
	var b strings.Builder
	b.WriteString(alias + "unique_key IS NOT NULL AND (" + alias + "unique_states & CASE " + alias + "state")
	for i, s := range queue.States() {
		fmt.Fprintf(&b, " WHEN '%s' THEN %d", s, 1<<i)
	}
	b.WriteString(" ELSE 0 END) <> 0")
	return b.String()
}

// Scanner is a *sql.Row or *sql.Rows.
type Scanner interface{ Scan(dest ...any) error }

// Scan reads one item in Columns' order.
func Scan(s Scanner) (queue.Item, error) {
	var it queue.Item
	var payload, meta []byte // one copy of the driver's text, not two as a string would make
	var state string
	var runAt, lease, created, updated, started, finished int64
	var uniqueKey sql.NullString
	var uniqueStates sql.NullInt64
	err := s.Scan(&it.ID, &it.PublicID, &it.Queue, &it.Kind, &it.Key, &it.Priority, &payload, &meta, &state,
		&it.Attempt, &it.Failures, &it.MaxAttempts, &it.Blocks, &it.LastError, &runAt, &lease, &it.Owner,
		&created, &updated, &started, &finished, &uniqueKey, &uniqueStates)
	if err != nil {
		return it, err
	}
	if uniqueKey.Valid {
		it.UniqueKey, it.UniqueStates = uniqueKey.String, queue.UniqueStatesOf(uniqueStates.Int64)
	}
	it.Payload, it.Meta, it.State = json.RawMessage(payload), json.RawMessage(meta), queue.State(state)
	it.RunAt, it.LeaseUntil = queue.FromUS(runAt), queue.FromUS(lease)
	it.CreatedAt, it.UpdatedAt = queue.FromUS(created), queue.FromUS(updated)
	it.StartedAt, it.FinishedAt = queue.FromUS(started), queue.FromUS(finished)
	return it, nil
}

// ScanAll reads every row and closes rows.
func ScanAll(rows *sql.Rows, err error) ([]queue.Item, error) {
	return ScanAppend(nil, rows, err)
}

// ScanAppend reads every row onto items and closes rows; a claim passes a
// slice with room for its limit, so a batch of thousands is not copied as
// it grows.
func ScanAppend(items []queue.Item, rows *sql.Rows, err error) ([]queue.Item, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		it, err := Scan(rows)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, rows.Err()
}

// Defaults fills what a NewItem may leave out, as the drivers store it:
// payload null, meta {}, created now, and the start state ("" unless
// dropped at intake, when the driver decides pending or held).
func Defaults(it queue.NewItem, nowUS int64) (payload, meta string, createdUS int64, state string) {
	payload, meta = string(it.Payload), string(it.Meta)
	if it.Payload == nil {
		payload = "null"
	}
	if it.Meta == nil {
		meta = "{}"
	}
	createdUS = queue.US(it.CreatedAt)
	if createdUS == 0 {
		createdUS = nowUS
	}
	if it.State == queue.StateDropped {
		state = string(queue.StateDropped)
	}
	return payload, meta, createdUS, state
}

// SortClaimed orders a claimed batch as the claim ranked it (RETURNING
// has no order): priority, then run_at, then id.
func SortClaimed(items []queue.Item) {
	slices.SortFunc(items, func(a, b queue.Item) int {
		if a.Priority != b.Priority {
			return a.Priority - b.Priority
		}
		if c := a.RunAt.Compare(b.RunAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// Migration is one numbered step of a driver's schema.
type Migration struct {
	Version int
	Name    string
	SQL     string
	// IfTable: the step only applies when this table exists (adopting a
	// schema made by an older Canal); otherwise it is recorded as done.
	IfTable string
}

// Load reads files named NNNN_name.sql from dir of fsys. A first line
// "-- if-table: T" sets IfTable.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range ents {
		name := e.Name()
		num, rest, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration file %q: want NNNN_name.sql", name)
		}
		b, err := fs.ReadFile(fsys, dir+"/"+name)
		if err != nil {
			return nil, err
		}
		m := Migration{Version: v, Name: strings.TrimSuffix(rest, ".sql"), SQL: string(b)}
		if first, _, _ := strings.Cut(m.SQL, "\n"); strings.HasPrefix(first, "-- if-table: ") {
			m.IfTable = strings.TrimSpace(strings.TrimPrefix(first, "-- if-table: "))
		}
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	// Numbers are unique and start at 1; a gap is allowed (numbers are
	// reserved by work in parallel, and each is recorded on its own).
	for i, m := range ms {
		if m.Version < 1 || (i > 0 && m.Version == ms[i-1].Version) {
			return nil, fmt.Errorf("migrations: version %d twice or below 1", m.Version)
		}
	}
	return ms, nil
}

// Dialect is what the runner needs from a driver.
type Dialect struct {
	// Lock serialises migrating processes inside tx (PostgreSQL: an
	// advisory lock); nil when the BEGIN already does (SQLite's IMMEDIATE).
	Lock func(ctx context.Context, tx *sql.Tx) error
	// TableExists reports whether table exists in the current schema.
	TableExists func(ctx context.Context, tx *sql.Tx, table string) (bool, error)
	// Exec runs a migration's SQL (it may hold several statements).
	Exec func(ctx context.Context, tx *sql.Tx, sql string) error
}

// Apply runs, each in its own transaction, the migrations not yet recorded
// in canal_queue_schema.
func Apply(ctx context.Context, db *sql.DB, d Dialect, ms []Migration) error {
	for _, m := range ms {
		if err := applyOne(ctx, db, d, m); err != nil {
			return fmt.Errorf("queue migration %04d_%s: %w", m.Version, m.Name, err)
		}
	}
	return nil
}

func applyOne(ctx context.Context, db *sql.DB, d Dialect, m Migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if d.Lock != nil {
		if err := d.Lock(ctx, tx); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS canal_queue_schema (
  version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_us BIGINT NOT NULL)`); err != nil {
		return err
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM canal_queue_schema WHERE version = `+strconv.Itoa(m.Version)).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	run := true
	if m.IfTable != "" {
		if run, err = d.TableExists(ctx, tx, m.IfTable); err != nil {
			return err
		}
	}
	if run {
		if err := d.Exec(ctx, tx, m.SQL); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO canal_queue_schema (version, name, applied_us) VALUES (`+
		strconv.Itoa(m.Version)+`, '`+m.Name+`', `+strconv.FormatInt(time.Now().UnixMicro(), 10)+`)`); err != nil {
		return err
	}
	return tx.Commit()
}

// Reader is the portable read side of a driver.
type Reader struct{ DB *gorm.DB }

func (r Reader) one(ctx context.Context, where string, args ...any) (queue.Item, error) {
	rows, err := r.DB.WithContext(ctx).Raw(`SELECT `+Columns+` FROM canal_queue_items WHERE `+where, args...).Rows()
	items, err := ScanAll(rows, err)
	if err != nil {
		return queue.Item{}, err
	}
	if len(items) == 0 {
		return queue.Item{}, queue.ErrNotFound
	}
	return items[0], nil
}

// Get reads one item by its public id.
func (r Reader) Get(ctx context.Context, q, publicID string) (queue.Item, error) {
	it, err := r.one(ctx, `queue = ? AND public_id = ?`, q, publicID)
	if err != nil && !errors.Is(err, queue.ErrNotFound) {
		return it, fmt.Errorf("get item: %w", err)
	}
	return it, err
}

// attemptsSQL reads an item's attempt rows and, for a done item whose
// last attempt is kept in its own row (queue.Outcome.InRow), that one too.
const attemptsSQL = `SELECT number, started_us, duration_us, error FROM canal_queue_attempts WHERE item_id = ?
UNION ALL
SELECT i.attempt, i.started_us, i.duration_us, '' FROM canal_queue_items i
WHERE i.id = ? AND i.state = 'done' AND i.duration_us >= 0
  AND NOT EXISTS (SELECT 1 FROM canal_queue_attempts a WHERE a.item_id = i.id AND a.number = i.attempt)
ORDER BY 1`

// Attempts lists an item's attempts in order.
func (r Reader) Attempts(ctx context.Context, id int64) ([]queue.Attempt, error) {
	rows, err := r.DB.WithContext(ctx).Raw(attemptsSQL, id, id).Rows()
	if err != nil {
		return nil, fmt.Errorf("get attempts: %w", err)
	}
	defer rows.Close()
	var out []queue.Attempt
	for rows.Next() {
		a := queue.Attempt{ItemID: id}
		var started, dur int64
		if err := rows.Scan(&a.Number, &started, &dur, &a.Error); err != nil {
			return nil, fmt.Errorf("get attempts: %w", err)
		}
		a.Started, a.Duration = queue.FromUS(started), time.Duration(dur)*time.Microsecond
		out = append(out, a)
	}
	return out, rows.Err()
}

// where is f as a condition and its arguments. States are written as
// literals (they are a closed set): a partial index (WHERE state =
// 'pending') serves a query only when the planner sees the constant.
func where(f queue.Filter) (string, []any, error) {
	conds, args := []string{"queue = ?"}, []any{f.Queue}
	if len(f.States) > 0 {
		ss := make([]string, len(f.States))
		for i, s := range f.States {
			if !slices.Contains(queue.States(), s) {
				return "", nil, fmt.Errorf("%w: %q", queue.ErrUnknownState, s)
			}
			ss[i] = "'" + string(s) + "'"
		}
		if len(ss) == 1 {
			conds = append(conds, "state = "+ss[0])
		} else {
			conds = append(conds, "state IN ("+strings.Join(ss, ", ")+")")
		}
	}
	if f.Kind != "" {
		conds, args = append(conds, "kind = ?"), append(args, f.Kind)
	}
	if f.Key != "" {
		// The literal term lets the partial key index serve any plan.
		conds, args = append(conds, "item_key = ?", "item_key <> ''"), append(args, f.Key)
	}
	switch len(f.Priorities) {
	case 0:
	case 1: // an equality walks the claim index (queue, priority, run_at_us, id)
		conds, args = append(conds, "priority = ?"), append(args, f.Priorities[0])
	default:
		conds, args = append(conds, "priority IN ?"), append(args, f.Priorities)
	}
	if f.Failed != nil {
		if *f.Failed {
			conds = append(conds, "failures > 0")
		} else {
			conds = append(conds, "failures = 0")
		}
	}
	if f.DueBy > 0 {
		conds, args = append(conds, "run_at_us <= ?"), append(args, f.DueBy)
	}
	if f.DueAfter > 0 {
		conds, args = append(conds, "run_at_us > ?"), append(args, f.DueAfter)
	}
	if f.FinishedFrom > 0 {
		conds, args = append(conds, "finished_us >= ?"), append(args, f.FinishedFrom)
	}
	if f.FinishedBefore > 0 {
		conds, args = append(conds, "finished_us < ?"), append(args, f.FinishedBefore)
	}
	return strings.Join(conds, " AND "), args, nil
}

// on is tx when not nil, else the reader's own handle.
func (r Reader) on(ctx context.Context, tx *gorm.DB) *gorm.DB {
	if tx != nil {
		return tx.WithContext(ctx)
	}
	return r.DB.WithContext(ctx)
}

// byRunning splits a kind's filter that spans running and other states
// into one filter for running items and one for the rest: on PostgreSQL
// the kind index leaves running items out (a claim then writes one index
// entry less), so a query for both is answered by two indexed ones, the
// running part through the lease index.
func byRunning(f queue.Filter) []queue.Filter {
	states := f.States
	if len(states) == 0 {
		states = queue.States()
	}
	if f.Kind == "" || len(states) < 2 || !slices.Contains(states, queue.StateRunning) {
		return []queue.Filter{f}
	}
	rest, running := f, f
	rest.States = slices.DeleteFunc(slices.Clone(states), func(s queue.State) bool { return s == queue.StateRunning })
	running.States = []queue.State{queue.StateRunning}
	return []queue.Filter{rest, running}
}

// ListSQL is the statement and arguments (with ? placeholders) List runs
// for q, for plan tests; a kind's filter over running and other states is
// run as two (byRunning).
func ListSQL(q queue.ListQuery) (string, []any, error) {
	cond, args, err := where(q.Filter)
	if err != nil {
		return "", nil, err
	}
	if q.Before > 0 {
		cond, args = cond+" AND id < ?", append(args, q.Before)
	}
	return `SELECT ` + Columns + ` FROM canal_queue_items WHERE ` + cond + ` ORDER BY id DESC LIMIT ?`, append(args, q.Limit), nil
}

// List reads a page, newest first.
func (r Reader) List(ctx context.Context, q queue.ListQuery) ([]queue.Item, error) {
	var items []queue.Item
	for _, f := range byRunning(q.Filter) {
		part := q
		part.Filter = f
		stmt, args, err := ListSQL(part)
		if err != nil {
			return nil, fmt.Errorf("list items: %w", err)
		}
		rows, err := r.DB.WithContext(ctx).Raw(stmt, args...).Rows()
		got, err := ScanAll(rows, err)
		if err != nil {
			return nil, fmt.Errorf("list items: %w", err)
		}
		items = append(items, got...)
	}
	slices.SortFunc(items, func(a, b queue.Item) int { return cmp.Compare(b.ID, a.ID) })
	if q.Limit > 0 && len(items) > q.Limit {
		items = items[:q.Limit]
	}
	return items, nil
}

// CountUpTo counts the items f matches: counting a LIMITed subquery reads
// at most limit index entries whatever the table holds.
func (r Reader) CountUpTo(ctx context.Context, tx *gorm.DB, f queue.Filter, limit int64) (int64, error) {
	var total int64
	for _, f := range byRunning(f) {
		cond, args, err := where(f)
		if err != nil {
			return 0, fmt.Errorf("count items: %w", err)
		}
		var n int64
		err = r.on(ctx, tx).Raw(`SELECT COUNT(*) FROM (SELECT 1 FROM canal_queue_items WHERE `+cond+` LIMIT ?) capped`,
			append(args, limit)...).Scan(&n).Error
		if err != nil {
			return 0, fmt.Errorf("count items: %w", err)
		}
		total += n
	}
	return min(total, limit), nil
}

// CountByFinish groups by bucket over the (queue, finished_us) index of a
// final state.
func (r Reader) CountByFinish(ctx context.Context, f queue.Filter, fromUS, widthUS int64, n int) ([]int64, error) {
	if widthUS <= 0 || n <= 0 {
		return nil, fmt.Errorf("count by finish: bucket width %d and count %d must be positive", widthUS, n)
	}
	f.FinishedFrom, f.FinishedBefore = max(f.FinishedFrom, fromUS), fromUS+int64(n)*widthUS
	cond, args, err := where(f)
	if err != nil {
		return nil, fmt.Errorf("count by finish: %w", err)
	}
	var rows []struct {
		B int64 `gorm:"column:b"`
		N int64 `gorm:"column:n"`
	}
	err = r.DB.WithContext(ctx).Raw(`SELECT (finished_us - ?) / ? AS b, COUNT(*) AS n FROM canal_queue_items WHERE `+cond+` GROUP BY 1`,
		append([]any{fromUS, widthUS}, args...)...).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("count by finish: %w", err)
	}
	out := make([]int64, n)
	for _, r := range rows {
		if r.B >= 0 && r.B < int64(n) {
			out[r.B] += r.N
		}
	}
	return out, nil
}

// LatestFinished reads the latest finished items first.
func (r Reader) LatestFinished(ctx context.Context, f queue.Filter, limit int) ([]queue.Item, error) {
	cond, args, err := where(f)
	if err != nil {
		return nil, fmt.Errorf("latest finished: %w", err)
	}
	rows, err := r.DB.WithContext(ctx).Raw(`SELECT `+Columns+` FROM canal_queue_items WHERE `+cond+
		` ORDER BY finished_us DESC LIMIT ?`, append(args, limit)...).Rows()
	items, err := ScanAll(rows, err)
	if err != nil {
		return nil, fmt.Errorf("latest finished: %w", err)
	}
	return items, nil
}

// DropOldest drops the oldest unkeyed pending item, choosing the next
// oldest when a claim takes the chosen one first.
func (r Reader) DropOldest(ctx context.Context, tx *gorm.DB, q, reason string, nowUS int64) (queue.Item, error) {
	db := r.on(ctx, tx)
	for range 10 {
		var ids []int64
		err := db.Raw(`SELECT id FROM canal_queue_items WHERE queue = ? AND state = 'pending' AND item_key = '' ORDER BY id LIMIT 1`, q).Scan(&ids).Error
		if err != nil {
			return queue.Item{}, fmt.Errorf("find oldest: %w", err)
		}
		if len(ids) == 0 {
			return queue.Item{}, queue.ErrNotFound
		}
		rows, err := db.Raw(`UPDATE canal_queue_items SET state = 'dropped', last_error = ?, finished_us = ?, updated_us = ?
WHERE id = ? AND state = 'pending' RETURNING `+Columns, queue.Text(reason), nowUS, nowUS, ids[0]).Rows()
		items, err := ScanAll(rows, err)
		if err != nil {
			return queue.Item{}, fmt.Errorf("drop oldest: %w", err)
		}
		if len(items) == 1 {
			return items[0], nil
		}
	}
	return queue.Item{}, queue.ErrNotFound
}

// Import writes items as they stand in one transaction.
func (r Reader) Import(ctx context.Context, q string, items []queue.Item) error {
	for _, it := range items {
		if it.PublicID == "" || it.Kind == "" || !slices.Contains(queue.States(), it.State) {
			return fmt.Errorf("import %q: %w: public id, kind and a state are required", it.PublicID, queue.ErrInvalidItem)
		}
		if it.Payload != nil && !json.Valid(it.Payload) || it.Meta != nil && !json.Valid(it.Meta) {
			return fmt.Errorf("import %q: %w: payload and meta must be JSON", it.PublicID, queue.ErrInvalidItem)
		}
	}
	err := r.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for _, it := range items {
			// Ids are checked here, not by the index (unique on SQLite
			// only: see PostgreSQL's migration 0008).
			var taken int64
			if err := tx.Raw(`SELECT COUNT(*) FROM canal_queue_items WHERE queue = ? AND public_id = ?`, q, it.PublicID).Scan(&taken).Error; err != nil {
				return fmt.Errorf("import %q: %w", it.PublicID, err)
			}
			if taken > 0 {
				return fmt.Errorf("import %q: %w: the public id is already in queue %q", it.PublicID, queue.ErrInvalidItem, q)
			}
			payload, meta, created, _ := Defaults(queue.NewItem{Payload: it.Payload, Meta: it.Meta, CreatedAt: it.CreatedAt}, 0)
			err := tx.Exec(`INSERT INTO canal_queue_items (public_id, queue, kind, item_key, priority, payload, meta, state,
  attempt, failures, max_attempts, blocks, last_error, run_at_us, lease_until_us, owner, created_us, updated_us, started_us, finished_us)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				it.PublicID, q, it.Kind, it.Key, it.Priority, payload, meta, string(it.State),
				it.Attempt, it.Failures, it.MaxAttempts, it.Blocks, queue.Text(it.LastError), queue.US(it.RunAt),
				queue.US(it.LeaseUntil), it.Owner, created, queue.US(it.UpdatedAt), queue.US(it.StartedAt), queue.US(it.FinishedAt)).Error
			if err != nil {
				return fmt.Errorf("import %q: %w", it.PublicID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import items: %w", err)
	}
	return nil
}

// Count counts per state, each up to limit over the (queue, state, id) index.
func (r Reader) Count(ctx context.Context, q, kind string, limit int64) (map[queue.State]int64, error) {
	out := map[queue.State]int64{}
	db := r.DB.WithContext(ctx)
	for _, st := range queue.States() {
		var n int64
		var err error
		if kind == "" {
			err = db.Raw(`SELECT COUNT(*) FROM (SELECT 1 FROM canal_queue_items WHERE queue = ? AND state = ? LIMIT ?) capped`, q, string(st), limit).Scan(&n).Error
		} else {
			err = db.Raw(`SELECT COUNT(*) FROM (SELECT 1 FROM canal_queue_items WHERE queue = ? AND state = ? AND kind = ? LIMIT ?) capped`, q, string(st), kind, limit).Scan(&n).Error
		}
		if err != nil {
			return nil, fmt.Errorf("count %s items: %w", st, err)
		}
		out[st] = n
	}
	return out, nil
}

// OldestOpen is the created_us of the oldest open item, 0 if none.
func (r Reader) OldestOpen(ctx context.Context, q string) (int64, error) {
	var oldest int64
	for _, st := range []queue.State{queue.StatePending, queue.StateHeld, queue.StateRunning, queue.StateRescued} {
		var created []int64
		// One indexed probe per state rather than an IN that might scan.
		err := r.DB.WithContext(ctx).Raw(`SELECT created_us FROM canal_queue_items WHERE queue = ? AND state = ? ORDER BY id LIMIT 1`, q, string(st)).Scan(&created).Error
		if err != nil {
			return 0, fmt.Errorf("oldest item: %w", err)
		}
		if len(created) == 1 && (oldest == 0 || created[0] < oldest) {
			oldest = created[0]
		}
	}
	return oldest, nil
}

// Processes reads up to limit process rows, the latest heartbeat first.
func (r Reader) Processes(ctx context.Context, limit int) ([]queue.ProcessRow, error) {
	var rows []struct {
		ID          string
		Host        string
		PID         int `gorm:"column:pid"`
		StartedUS   int64
		HeartbeatUS int64
		Version     string
	}
	err := r.DB.WithContext(ctx).Raw(`SELECT id, host, pid, started_us, heartbeat_us, version FROM canal_queue_processes
ORDER BY heartbeat_us DESC, id LIMIT ?`, limit).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("read processes: %w", err)
	}
	out := make([]queue.ProcessRow, len(rows))
	for i, p := range rows {
		out[i] = queue.ProcessRow(p)
	}
	return out, nil
}

// Cleanup deletes done items, then dropped ones, finished before beforeUS,
// with their attempts: at most limit rows, oldest first, each state over
// its own partial index.
func (r Reader) Cleanup(ctx context.Context, q string, beforeUS int64, limit int) (int64, error) {
	var n int64
	err := r.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for _, st := range []queue.State{queue.StateDone, queue.StateDropped} {
			if int(n) >= limit {
				return nil
			}
			var ids []int64
			err := tx.Raw(`DELETE FROM canal_queue_items WHERE id IN (
  SELECT id FROM canal_queue_items WHERE queue = ? AND state = ? AND finished_us < ? ORDER BY finished_us LIMIT ?)
RETURNING id`, q, string(st), beforeUS, limit-int(n)).Scan(&ids).Error
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				continue
			}
			n += int64(len(ids))
			if err := tx.Exec(`DELETE FROM canal_queue_attempts WHERE item_id IN ?`, ids).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cleanup: %w", err)
	}
	return n, nil
}

// TimeToFinish reads two columns only, not the payloads.
func (r Reader) TimeToFinish(ctx context.Context, f queue.Filter, limit int) ([]time.Duration, error) {
	cond, args, err := where(f)
	if err != nil {
		return nil, fmt.Errorf("time to finish: %w", err)
	}
	var us []int64
	err = r.DB.WithContext(ctx).Raw(`SELECT finished_us - created_us FROM canal_queue_items WHERE `+cond+
		` ORDER BY finished_us DESC LIMIT ?`, append(args, limit)...).Scan(&us).Error
	if err != nil {
		return nil, fmt.Errorf("time to finish: %w", err)
	}
	out := make([]time.Duration, len(us))
	for i, d := range us {
		out[i] = time.Duration(d) * time.Microsecond
	}
	return out, nil
}

// InsertUnique runs insert, an INSERT … ON CONFLICT DO NOTHING RETURNING id
// of an item with unique key key, and, when it wrote nothing, reads with
// holder the item that holds the key (id, public_id) into a
// *queue.DuplicateError. A holder that left its unique states in between
// (no row either way) makes it try again.
func InsertUnique(key string, insert, holder func() *sql.Row) (int64, error) {
	for range 3 {
		var id int64
		err := insert().Scan(&id)
		if !errors.Is(err, sql.ErrNoRows) {
			return id, err
		}
		dup := &queue.DuplicateError{UniqueKey: key}
		err = holder().Scan(&dup.ID, &dup.PublicID)
		if err == nil {
			return 0, dup
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("find holder of unique key: %w", err)
		}
	}
	return 0, fmt.Errorf("unique key %q: its holder keeps changing", key)
}

// UniqueFree is the condition that no other item holds a row's unique key
// (always true for a row without one): a retry by hand of an item whose key
// a newer item took would break the unique index, so it is refused.
func UniqueFree() string {
	return `NOT EXISTS (SELECT 1 FROM canal_queue_items u WHERE u.queue = canal_queue_items.queue
    AND u.unique_key = canal_queue_items.unique_key AND u.id <> canal_queue_items.id AND ` + Unique("u") + `)`
}

// HolderOfSQL finds, for the item public_id of queue (bound with ?), the
// other item that holds its unique key: why a retry was refused.
var HolderOfSQL = `SELECT u.id, u.public_id, u.unique_key FROM canal_queue_items i JOIN canal_queue_items u
  ON u.queue = i.queue AND u.unique_key = i.unique_key AND u.id <> i.id AND ` + Unique("u") + `
WHERE i.queue = ? AND i.public_id = ?`

// DuplicateOf is the *queue.DuplicateError that explains why item publicID
// of queue could not be retried, or nil. db runs holderSQL, HolderOfSQL
// with the driver's placeholders.
func DuplicateOf(row *sql.Row) error {
	dup := &queue.DuplicateError{}
	if err := row.Scan(&dup.ID, &dup.PublicID, &dup.UniqueKey); err != nil {
		return nil
	}
	return dup
}
