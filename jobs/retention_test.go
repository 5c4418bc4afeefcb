package jobs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
)

// TestWorkRetentionDeletesOldDoneAndDroppedItems: the retention loop
// deletes done and dropped items that finished longer ago than
// WorkRetention, and keeps failed ones (an operator still has to look at
// them) and recent ones.
func TestWorkRetentionDeletesOldDoneAndDroppedItems(t *testing.T) {
	s := sqliteStore(t)
	now := time.Now().UTC()
	old := now.Add(-time.Hour)
	item := func(id string, st jobs.WorkState, finished time.Time) jobs.WorkItem {
		return jobs.WorkItem{ID: id, Kind: "email", State: st, Attempts: 1, MaxAttempts: 1,
			CreatedAt: finished, UpdatedAt: finished, RunAt: finished, FinishedAt: &finished}
	}
	items := []jobs.WorkItem{
		item("old-done", jobs.WorkDone, old), item("old-dropped", jobs.WorkDropped, old),
		item("old-failed", jobs.WorkFailed, old), item("new-done", jobs.WorkDone, now),
		item("new-dropped", jobs.WorkDropped, now),
	}
	if err := jobs.ImportWork(context.Background(), s, items...); err != nil {
		t.Fatal(err)
	}
	// 10 s: the loop looks every second (its floor), long before the new
	// items are 10 s old.
	p := jobs.NewProcessor(jobs.Config{Store: s, WorkRetention: 10 * time.Second})
	if err := p.RegisterKind("email", func(context.Context, jobs.WorkItem) error { return nil }, jobs.KindOptions{}); err != nil {
		t.Fatal(err)
	}
	running(t, p)

	gone := func(id string) bool {
		_, err := s.GetWork(context.Background(), id)
		return errors.Is(err, jobs.ErrUnknownWork)
	}
	testenv.Eventually(t, wait, "old done and dropped items deleted", func() bool {
		return gone("old-done") && gone("old-dropped")
	})
	for _, id := range []string{"old-failed", "new-done", "new-dropped"} {
		if w, err := s.GetWork(context.Background(), id); err != nil {
			t.Errorf("%s: %v, want it kept", id, err)
		} else if w.ID != id {
			t.Errorf("%s read back as %+v", id, w)
		}
	}
}
