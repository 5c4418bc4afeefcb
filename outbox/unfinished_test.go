package outbox

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// A publisher that hangs past its lease, ignoring its context, has its
// attempt cut short as if the process had died. The message is then sent
// alone; each cut while alone counts as a failure, and after MaxAttempts of
// them it is dead without one more send. The messages out with it the
// first time lose nothing, and the relay does not stall behind the hung
// workers.
func TestAttemptsCutShortCountTowardsDead(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		cfg := testConfig()
		cfg.MaxAttempts = 3
		cfg.Lease = 200 * time.Millisecond
		cfg.PublishTimeout = 100 * time.Millisecond
		r := newRelay(t, db, cfg)
		var sends atomic.Int32
		release := make(chan struct{})
		r.Register("hang", PublisherFunc(func(context.Context, Delivery) error {
			sends.Add(1)
			<-release // past PublishTimeout and the lease
			return errors.New("hung")
		}))
		ok := &recorder{}
		r.Register("ok", ok)
		stuck := addN(t, r, "hang", nil, 1)[0]
		addN(t, r, "ok", nil, 3)
		stop := runRelay(t, r)
		testenv.Eventually(t, 30*time.Second, "the hanging message goes dead", func() bool {
			return statusOf(t, r, stuck) == StatusDead
		})
		close(release)
		stop()

		// Once with the others (not counted), then MaxAttempts times alone.
		if n := sends.Load(); n != 4 {
			t.Errorf("the hanging message was sent %d times, want 1 + MaxAttempts (3) and not once more", n)
		}
		if ok.count() != 3 {
			t.Errorf("%d other messages delivered, want 3", ok.count())
		}
		rec := mustGet(t, r, stuck)
		if rec.Attempts != 4 || rec.Failures != 3 || rec.LastError != unfinishedText {
			t.Errorf("dead message: %d attempts, %d failures, last error %q; want 4, 3 and the lease's", rec.Attempts, rec.Failures, rec.LastError)
		}
		if len(rec.AttemptLog) != 4 {
			t.Fatalf("attempt log has %d entries, want 4: %+v", len(rec.AttemptLog), rec.AttemptLog)
		}
		for i, a := range rec.AttemptLog {
			if a.Number != i+1 || !a.Unfinished {
				t.Errorf("attempt %d: %+v, want number %d cut short", i, a, i+1)
			}
		}
	})
}

// The attempt log shows every number the claims counted: recorded ones as
// they were, missing ones as cut short, and not the one under way.
func TestAttemptLogFillsCutAttempts(t *testing.T) {
	rows := []attemptRow{{Number: 1, Error: "503"}, {Number: 3}}
	tests := []struct {
		status Status
		n      int
		want   []bool // unfinished, per entry
	}{
		{StatusDispatched, 3, []bool{false, true, false}},
		{StatusInflight, 4, []bool{false, true, false}},
		{StatusPending, 4, []bool{false, true, false, true}},
		{StatusPending, 0, []bool{}},
	}
	for _, tc := range tests {
		got := attemptLog(Record{Status: tc.status, Attempts: tc.n}, rows)
		if len(got) != len(tc.want) {
			t.Errorf("%s with %d attempts: %d entries, want %d", tc.status, tc.n, len(got), len(tc.want))
			continue
		}
		for i, a := range got {
			if a.Number != i+1 || a.Unfinished != tc.want[i] {
				t.Errorf("%s with %d attempts: entry %d = %+v, want number %d unfinished %v", tc.status, tc.n, i, a, i+1, tc.want[i])
			}
		}
	}
}
