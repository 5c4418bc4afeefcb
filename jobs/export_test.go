package jobs

import (
	"context"
	"fmt"

	"github.com/canalhq/canal/internal/queue"
)

// InsertWorkRow writes w as a row of the engine's table in w's state, as
// the engine would have left it: a fixture for the read side (Enqueue
// only makes pending items).
func InsertWorkRow(ctx context.Context, s Store, w WorkItem) error {
	gs, ok := s.(gormStore)
	if !ok {
		return fmt.Errorf("not an engine store: %T", s)
	}
	state, failures := map[WorkState]queue.State{
		WorkPending: queue.StatePending, WorkRetrying: queue.StatePending, WorkRunning: queue.StateRunning,
		WorkDone: queue.StateDone, WorkFailed: queue.StateDead, WorkDropped: queue.StateDropped,
	}[w.State], 0
	if w.State == WorkRetrying || w.State == WorkFailed {
		failures = max(w.Attempts, 1)
	}
	return gs.db.WithContext(ctx).Exec(`INSERT INTO canal_queue_items (public_id, queue, kind, priority, payload, state,
  attempt, failures, max_attempts, last_error, run_at_us, created_us, updated_us)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, w.ID, workQueue, w.Kind, int(w.Priority), "null", string(state),
		w.Attempts, failures, w.MaxAttempts, w.LastError, us(w.RunAt), us(w.CreatedAt), us(w.UpdatedAt)).Error
}
