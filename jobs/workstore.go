package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/queuesql"
)

// workQueue is the engine queue that holds work items.
const workQueue = "work"

// Work items are rows of the engine's table in queue "work". A work state
// is a condition on the engine's state (and failures, which tell a retry
// waiting for its backoff from a first try); these reads are portable SQL
// through gorm, as the engine's own reader is.
var workConds = map[WorkState]string{
	WorkPending:  `(state IN ('held', 'rescued') OR (state = 'pending' AND failures = 0))`,
	WorkRetrying: `state = 'pending' AND failures > 0`,
	WorkRunning:  `state = 'running'`,
	WorkDone:     `state = 'done'`,
	WorkFailed:   `state = 'dead'`,
	WorkDropped:  `state IN ('dropped', 'cancelled')`,
}

// workState is an engine item's work state.
func workState(it queue.Item) WorkState {
	switch it.State {
	case queue.StatePending:
		if it.Failures > 0 {
			return WorkRetrying
		}
		return WorkPending
	case queue.StateHeld, queue.StateRescued:
		return WorkPending
	case queue.StateRunning:
		return WorkRunning
	case queue.StateDone:
		return WorkDone
	case queue.StateDead:
		return WorkFailed
	default: // dropped, cancelled
		return WorkDropped
	}
}

// toWork is an engine item as a work item.
func toWork(it queue.Item) WorkItem {
	w := WorkItem{
		ID: it.PublicID, Kind: it.Kind, Priority: Priority(it.Priority), State: workState(it),
		Attempts: it.Attempt, MaxAttempts: it.MaxAttempts, LastError: it.LastError,
		CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt, RunAt: it.RunAt,
	}
	if w.RunAt.IsZero() {
		w.RunAt = w.CreatedAt
	}
	if string(it.Payload) != "null" && len(it.Payload) > 0 {
		w.Payload = json.RawMessage(it.Payload)
	}
	if w.State == WorkDone {
		w.LastError = "" // the error of an earlier attempt, not of the item
	}
	if !it.StartedAt.IsZero() {
		t := it.StartedAt
		w.StartedAt = &t
	}
	if !it.FinishedAt.IsZero() {
		t := it.FinishedAt
		w.FinishedAt = &t
	}
	return w
}

func (s gormStore) GetWork(ctx context.Context, id string) (WorkItem, error) {
	if !storableID(id) {
		return WorkItem{}, fmt.Errorf("work %q: %w", id, ErrUnknownWork)
	}
	it, err := s.drv.Get(ctx, workQueue, id)
	if errors.Is(err, queue.ErrNotFound) {
		return WorkItem{}, fmt.Errorf("work %q: %w", id, ErrUnknownWork)
	}
	if err != nil {
		return WorkItem{}, fmt.Errorf("get work %s: %w", id, err)
	}
	return toWork(it), nil
}

// engineID is the engine's id of a work item, 0 if there is none.
func (s gormStore) engineID(ctx context.Context, publicID string) (int64, error) {
	var ids []int64
	err := s.db.WithContext(ctx).Raw(`SELECT id FROM canal_queue_items WHERE queue = ? AND public_id = ?`, workQueue, publicID).Scan(&ids).Error
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	return ids[0], nil
}

// ListWork pages by the engine's id, newest first: the id is assigned at
// insert, so it is the order of creation.
func (s gormStore) ListWork(ctx context.Context, f WorkFilter, before WorkCursor, limit int) ([]WorkItem, error) {
	where, args := []string{"queue = ?"}, []any{workQueue}
	if f.State != "" {
		cond, ok := workConds[f.State]
		if !ok {
			return nil, fmt.Errorf("list work: %w: %q", ErrInvalidState, f.State)
		}
		where = append(where, cond)
	}
	if f.Kind != "" {
		if !storableID(f.Kind) {
			return nil, nil
		}
		where, args = append(where, "kind = ?"), append(args, f.Kind)
	}
	if !before.IsZero() {
		id, err := s.engineID(ctx, before.ID)
		if err != nil {
			return nil, fmt.Errorf("list work: %w", err)
		}
		if id == 0 {
			return nil, fmt.Errorf("list work: %w: no item %q", ErrInvalidCursor, before.ID)
		}
		where, args = append(where, "id < ?"), append(args, id)
	}
	args = append(args, limit)
	rows, err := s.db.WithContext(ctx).Raw(`SELECT `+queuesql.Columns+` FROM canal_queue_items WHERE `+
		strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`, args...).Rows()
	items, err := queuesql.ScanAll(rows, err)
	if err != nil {
		return nil, fmt.Errorf("list work: %w", err)
	}
	out := make([]WorkItem, len(items))
	for i, it := range items {
		out[i] = toWork(it)
		out[i].Payload = nil // lists never show it and it may be large
	}
	return out, nil
}

func (s gormStore) CountWork(ctx context.Context, kind string, limit int) (map[WorkState]Count, error) {
	out := make(map[WorkState]Count, len(workConds))
	if kind != "" && !storableID(kind) {
		return out, nil
	}
	for st, cond := range workConds {
		where, args := "queue = ? AND "+cond, []any{workQueue}
		if kind != "" {
			where, args = where+" AND kind = ?", append(args, kind)
		}
		var n int64
		// Counting a LIMITed subquery reads at most limit+1 index entries.
		err := s.db.WithContext(ctx).Raw(`SELECT COUNT(*) FROM (SELECT 1 FROM canal_queue_items WHERE `+where+` LIMIT ?) bounded`,
			append(args, limit+1)...).Scan(&n).Error
		if err != nil {
			return nil, fmt.Errorf("count %s work: %w", st, err)
		}
		c := Count{N: int(n)}
		if c.N > limit {
			c = Count{N: limit, More: true}
		}
		out[st] = c
	}
	return out, nil
}

// depths counts the waiting items per priority, due and scheduled (a
// retry's backoff or a deferral), each count bounded by limit, over the
// engine's claim index.
func (s gormStore) depths(ctx context.Context, nowUS int64, limit int) (due, later [numPriorities]int, err error) {
	db := s.db.WithContext(ctx)
	for p := range numPriorities {
		var n, m int64
		err = db.Raw(`SELECT COUNT(*) FROM (SELECT 1 FROM canal_queue_items WHERE queue = ? AND state = 'pending' AND priority = ? AND run_at_us <= ? LIMIT ?) bounded`,
			workQueue, p, nowUS, limit).Scan(&n).Error
		if err == nil {
			err = db.Raw(`SELECT COUNT(*) FROM (SELECT 1 FROM canal_queue_items WHERE queue = ? AND state = 'pending' AND priority = ? AND run_at_us > ? LIMIT ?) bounded`,
				workQueue, p, nowUS, limit).Scan(&m).Error
		}
		if err != nil {
			return due, later, fmt.Errorf("work depths: %w", err)
		}
		due[p], later[p] = int(n), int(m)
	}
	return due, later, nil
}

// ImportWork writes items as they stand, in any state, with their ids,
// attempts and times (a fixture, or work carried over from elsewhere):
// Enqueue only makes new pending items. s must come from NewStore.
func ImportWork(ctx context.Context, s Store, items ...WorkItem) error {
	gs, ok := s.(gormStore)
	if !ok {
		return fmt.Errorf("import work: %w: %T keeps no work items", ErrNoStore, s)
	}
	for _, w := range items {
		if !ValidWorkState(w.State) || !w.Priority.valid() || !storableID(w.ID) || w.ID == "" {
			return fmt.Errorf("import work %q: %w", w.ID, ErrInvalidState)
		}
		state, failures := map[WorkState]queue.State{
			WorkPending: queue.StatePending, WorkRetrying: queue.StatePending, WorkRunning: queue.StateRunning,
			WorkDone: queue.StateDone, WorkFailed: queue.StateDead, WorkDropped: queue.StateDropped,
		}[w.State], 0
		if w.State == WorkRetrying || w.State == WorkFailed {
			failures = max(w.Attempts, 1)
		}
		payload := "null"
		if len(w.Payload) > 0 {
			payload = string(w.Payload)
		}
		var started, finished int64
		if w.StartedAt != nil {
			started = us(*w.StartedAt)
		}
		if w.FinishedAt != nil {
			finished = us(*w.FinishedAt)
		}
		err := gs.db.WithContext(ctx).Exec(`INSERT INTO canal_queue_items (public_id, queue, kind, priority, payload, state,
  attempt, failures, max_attempts, last_error, run_at_us, created_us, updated_us, started_us, finished_us)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, w.ID, workQueue, w.Kind, int(w.Priority), payload, string(state),
			w.Attempts, failures, w.MaxAttempts, queue.Text(w.LastError), us(w.RunAt), us(w.CreatedAt), us(w.UpdatedAt), started, finished).Error
		if err != nil {
			return fmt.Errorf("import work %q: %w", w.ID, err)
		}
	}
	return nil
}
