package web

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
)

// TestIntervalValidation: a job's interval is refused with a 400 that
// names the field and says what is wrong, below the minimum, above the
// maximum, or not a duration; a good one is taken.
func TestIntervalValidation(t *testing.T) {
	p := jobs.NewProcessor(jobs.Config{})
	if err := p.Register("report", time.Hour, false, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	runProcessor(t, p)
	e := New(Deps{Jobs: p})
	for _, tc := range []struct {
		body   string
		status int
		says   string
	}{
		{`{"interval":"100000h"}`, 400, "at most 168h"},
		{`{"interval":"-5s"}`, 400, "positive"},
		{`{"interval":"0s"}`, 400, "positive"},
		{`{"interval":"soon"}`, 400, "duration such as"},
		{`{"interval":"10ms"}`, 400, "below 100ms"},
		{`{"interval":"2s"}`, 200, `"interval"`},
		{`{"interval":"168h"}`, 200, `"interval"`},
	} {
		a := apiDo(t, e, "PUT", "/api/jobs/report/interval", tc.body)
		if a.status != tc.status || !strings.Contains(a.raw, tc.says) {
			t.Errorf("PUT %s = %d %s, want %d saying %q", tc.body, a.status, a.raw, tc.status, tc.says)
		}
		if tc.status == 400 && !strings.Contains(a.raw, `"field":"interval"`) {
			t.Errorf("PUT %s: the 400 does not name the field: %s", tc.body, a.raw)
		}
	}
}

// TestWorkActionsAPI: Retry and Delete of a work item answer what the
// control channel replied: 200 and the item, 204, 404 unknown, 409 when
// the action does not apply to the item's state.
func TestWorkActionsAPI(t *testing.T) {
	db := testenv.SQLite(t)
	if err := jobs.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	s, err := jobs.NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	p := jobs.NewProcessor(jobs.Config{Store: s})
	if err := p.RegisterKind("email", func(context.Context, jobs.WorkItem) error { return errors.New("down") },
		jobs.KindOptions{MaxAttempts: 1, BreakerFailures: -1}); err != nil {
		t.Fatal(err)
	}
	runProcessor(t, p)
	e := New(Deps{Work: p, WorkActions: p})
	it, err := p.Enqueue(context.Background(), jobs.NewWork{Kind: "email"})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "the item fails", func() bool {
		w, err := p.Work(context.Background(), it.ID)
		return err == nil && w.State == jobs.WorkFailed
	})
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"POST", "/api/work/nope/retry", 404},
		{"DELETE", "/api/work/nope", 404},
		{"DELETE", "/api/work/" + it.ID, 204},
		{"POST", "/api/work/" + it.ID + "/retry", 404},
	} {
		if a := apiDo(t, e, tc.method, tc.path, ""); a.status != tc.status {
			t.Errorf("%s %s = %d %s, want %d", tc.method, tc.path, a.status, a.raw, tc.status)
		}
	}
	again, err := p.Enqueue(context.Background(), jobs.NewWork{Kind: "email"})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "the second item fails", func() bool {
		w, err := p.Work(context.Background(), again.ID)
		return err == nil && w.State == jobs.WorkFailed
	})
	a := apiDo(t, e, "POST", "/api/work/"+again.ID+"/retry", "")
	var got jobs.WorkItem
	a.decode(t, &got)
	// Pending again with a fresh budget; the engine keeps numbering attempts.
	if a.status != 200 || got.ID != again.ID || got.State != jobs.WorkPending {
		t.Errorf("retry = %d %s", a.status, a.raw)
	}
	// A done item cannot be retried: 409.
	testenv.Eventually(t, 60*time.Second, "the retried item fails again", func() bool {
		w, err := p.Work(context.Background(), again.ID)
		return err == nil && w.State == jobs.WorkFailed
	})
	if a := apiDo(t, e, "POST", "/api/work/"+again.ID+"/retry", ""); a.status != 200 {
		t.Errorf("second retry = %d %s", a.status, a.raw)
	}
}

// TestWorkActionConflicts: the errors of actions that do not apply to an
// item's state are 409s.
func TestWorkActionConflicts(t *testing.T) {
	for _, err := range []error{fmt.Errorf("retry work x: %w: it is done", jobs.ErrWorkState)} {
		e := New(Deps{Work: brokenQueue{}, WorkActions: refusingActions{err}})
		for _, r := range [][2]string{{"POST", "/api/work/x/retry"}, {"DELETE", "/api/work/x"}} {
			if a := apiDo(t, e, r[0], r[1], ""); a.status != 409 || !strings.Contains(a.raw, err.Error()) {
				t.Errorf("%s %s refused with %v = %d %s, want 409 naming it", r[0], r[1], err, a.status, a.raw)
			}
		}
	}
}

type refusingActions struct{ err error }

func (r refusingActions) RetryWork(context.Context, string) (jobs.WorkItem, error) {
	return jobs.WorkItem{}, r.err
}
func (r refusingActions) DeleteWork(context.Context, string) (jobs.WorkItem, error) {
	return jobs.WorkItem{}, r.err
}
