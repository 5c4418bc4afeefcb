package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/canalhq/canal/internal/queue"
)

// workQueue is the engine queue that holds work items.
const workQueue = "work"

// Work items are items of the engine's queue "work". A work state is a
// set of engine states (and failures, which tell a retry waiting for its
// backoff from a first try): one or more engine filters, read through the
// engine's Reader.
func workFilters(st WorkState) ([]queue.Filter, bool) {
	var no, yes = false, true
	f := func(failed *bool, states ...queue.State) queue.Filter {
		return queue.Filter{Queue: workQueue, States: states, Failed: failed}
	}
	switch st {
	case WorkPending:
		return []queue.Filter{f(nil, queue.StateHeld, queue.StateRescued), f(&no, queue.StatePending)}, true
	case WorkRetrying:
		return []queue.Filter{f(&yes, queue.StatePending)}, true
	case WorkRunning:
		return []queue.Filter{f(nil, queue.StateRunning)}, true
	case WorkDone:
		return []queue.Filter{f(nil, queue.StateDone)}, true
	case WorkFailed:
		return []queue.Filter{f(nil, queue.StateDead)}, true
	case WorkDropped:
		return []queue.Filter{f(nil, queue.StateDropped, queue.StateCancelled)}, true
	}
	return nil, false
}

// workStates are the work states, in the order the dashboard shows them.
var workStates = []WorkState{WorkPending, WorkRetrying, WorkRunning, WorkDone, WorkFailed, WorkDropped}

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
		Attempts: it.Attempt, Failures: it.Failures, MaxAttempts: it.MaxAttempts, LastError: it.LastError,
		CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt, RunAt: it.RunAt,
	}
	if w.RunAt.IsZero() {
		w.RunAt = w.CreatedAt
	}
	if string(it.Payload) != "null" && len(it.Payload) > 0 {
		w.Payload = json.RawMessage(it.Payload)
	}
	var meta workMeta
	if json.Unmarshal(it.Meta, &meta) == nil {
		w.EnqueuedBy = meta.EnqueuedBy
	}
	if it.UniqueKey != "" {
		w.UniqueKey, w.UniqueStates = it.UniqueKey, uniqueWorkStates(it.UniqueStates)
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

// ListWork pages by the engine's id, newest first: the id is assigned at
// insert, so it is the order of creation.
func (s gormStore) ListWork(ctx context.Context, f WorkFilter, before WorkCursor, limit int) ([]WorkItem, error) {
	filters := []queue.Filter{{Queue: workQueue}}
	if f.State != "" {
		var ok bool
		if filters, ok = workFilters(f.State); !ok {
			return nil, fmt.Errorf("list work: %w: %q", ErrInvalidState, f.State)
		}
	}
	if f.Kind != "" && !storableID(f.Kind) {
		return nil, nil
	}
	var beforeID int64
	if !before.IsZero() {
		it, err := s.drv.Get(ctx, workQueue, before.ID)
		if errors.Is(err, queue.ErrNotFound) {
			return nil, fmt.Errorf("list work: %w: no item %q", ErrInvalidCursor, before.ID)
		}
		if err != nil {
			return nil, fmt.Errorf("list work: %w", err)
		}
		beforeID = it.ID
	}
	// A state of several filters: each one's page, merged newest first.
	var items []queue.Item
	for _, fl := range filters {
		fl.Kind = f.Kind
		page, err := s.drv.List(ctx, queue.ListQuery{Filter: fl, Before: beforeID, Limit: limit})
		if err != nil {
			return nil, fmt.Errorf("list work: %w", err)
		}
		items = append(items, page...)
	}
	if len(filters) > 1 {
		slices.SortFunc(items, func(a, b queue.Item) int { return cmp.Compare(b.ID, a.ID) })
		items = items[:min(len(items), limit)]
	}
	out := make([]WorkItem, len(items))
	for i, it := range items {
		out[i] = toWork(it)
		out[i].Payload = nil // lists never show it and it may be large
	}
	return out, nil
}

func (s gormStore) CountWork(ctx context.Context, kind string, limit int) (map[WorkState]Count, error) {
	out := make(map[WorkState]Count, len(workStates))
	if kind != "" && !storableID(kind) {
		return out, nil
	}
	for _, st := range workStates {
		filters, _ := workFilters(st)
		n := 0
		for _, f := range filters {
			f.Kind = kind
			// Each count reads at most limit+1 index entries.
			m, err := s.drv.CountUpTo(ctx, nil, f, int64(limit)+1)
			if err != nil {
				return nil, fmt.Errorf("count %s work: %w", st, err)
			}
			n += int(m)
		}
		c := Count{N: n}
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
	for p := range numPriorities {
		f := queue.Filter{Queue: workQueue, States: []queue.State{queue.StatePending}, Priorities: []int{p}}
		dueF, laterF := f, f
		dueF.DueBy, laterF.DueAfter = nowUS, nowUS
		var n, m int64
		n, err = s.drv.CountUpTo(ctx, nil, dueF, int64(limit))
		if err == nil {
			m, err = s.drv.CountUpTo(ctx, nil, laterF, int64(limit))
		}
		if err != nil {
			return due, later, fmt.Errorf("work depths: %w", err)
		}
		due[p], later[p] = int(n), int(m)
	}
	return due, later, nil
}

// ImportWork writes items as they stand, in any state, with their ids,
// attempts and times (a fixture, or work carried over from elsewhere), all
// or none: Enqueue only makes new pending items. s must come from NewStore.
func ImportWork(ctx context.Context, s Store, items ...WorkItem) error {
	gs, ok := s.(gormStore)
	if !ok {
		return fmt.Errorf("import work: %w: %T keeps no work items", ErrNoStore, s)
	}
	qs := make([]queue.Item, 0, len(items))
	for _, w := range items {
		if !ValidWorkState(w.State) || !w.Priority.valid() || !storableID(w.ID) || w.ID == "" {
			return fmt.Errorf("import work %q: %w", w.ID, ErrInvalidState)
		}
		it := queue.Item{
			PublicID: w.ID, Kind: w.Kind, Priority: int(w.Priority), Attempt: w.Attempts, MaxAttempts: w.MaxAttempts,
			LastError: w.LastError, RunAt: w.RunAt, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt,
			State: map[WorkState]queue.State{
				WorkPending: queue.StatePending, WorkRetrying: queue.StatePending, WorkRunning: queue.StateRunning,
				WorkDone: queue.StateDone, WorkFailed: queue.StateDead, WorkDropped: queue.StateDropped,
			}[w.State],
		}
		if w.State == WorkRetrying || w.State == WorkFailed {
			it.Failures = max(w.Failures, 1)
			if w.Failures == 0 {
				it.Failures = max(w.Attempts, 1)
			}
		}
		if len(w.Payload) > 0 {
			it.Payload = w.Payload
		}
		if w.StartedAt != nil {
			it.StartedAt = *w.StartedAt
		}
		if w.FinishedAt != nil {
			it.FinishedAt = *w.FinishedAt
		}
		qs = append(qs, it)
	}
	if err := gs.drv.Import(ctx, workQueue, qs); err != nil {
		return fmt.Errorf("import work: %w", err)
	}
	return nil
}

// workMeta is what a work item's meta column holds.
type workMeta struct {
	EnqueuedBy string `json:"enqueuedBy,omitempty"`
}

// uniqueItem checks u and sets it on ni as the engine's unique key and
// states: pending and retrying are the engine's held, pending and rescued
// (a retry waits as pending with failures), running is running; done,
// failed and dropped are done, dead, and dropped or cancelled.
func uniqueItem(ni *queue.NewItem, u *UniqueOpts) error {
	if u == nil {
		return nil
	}
	if u.Key == "" || len(u.Key) > 255 || !queue.ValidText(u.Key) {
		return fmt.Errorf("%w: the key must be 1 to 255 bytes of UTF-8 without NUL", ErrInvalidUnique)
	}
	ni.UniqueKey = u.Key
	if u.States == nil {
		return nil
	}
	for _, must := range DefaultUniqueStates() {
		if !slices.Contains(u.States, must) {
			return fmt.Errorf("%w: states must include pending, retrying and running (%s is missing)", ErrInvalidUnique, must)
		}
	}
	states := queue.UniqueOpen()
	for _, st := range u.States {
		switch st {
		case WorkPending, WorkRetrying, WorkRunning:
		case WorkDone:
			states = append(states, queue.StateDone)
		case WorkFailed:
			states = append(states, queue.StateDead)
		case WorkDropped:
			states = append(states, queue.StateDropped, queue.StateCancelled)
		default:
			return fmt.Errorf("%w: unknown state %q", ErrInvalidUnique, st)
		}
	}
	ni.UniqueStates = states
	return nil
}

// uniqueWorkStates is the inverse of uniqueItem's mapping of states.
func uniqueWorkStates(states []queue.State) []WorkState {
	out := DefaultUniqueStates()
	for _, m := range []struct {
		q queue.State
		w WorkState
	}{{queue.StateDone, WorkDone}, {queue.StateDead, WorkFailed}, {queue.StateDropped, WorkDropped}} {
		if slices.Contains(states, m.q) {
			out = append(out, m.w)
		}
	}
	return out
}
