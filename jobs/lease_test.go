package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// The election's store on both dialects: one live lease at a time, taken
// over only once it ended or was released, with a new term each time; the
// fence lets a run start only under the live lease's owner and term.
func TestLeaseElectionAndFence(t *testing.T) {
	for _, d := range []struct {
		name string
		open func(testing.TB) *gorm.DB
	}{{"sqlite", testenv.SQLite}, {"postgres", testenv.Postgres}} {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			db := d.open(t)
			if err := Migrate(ctx, db); err != nil {
				t.Fatal(err)
			}
			st, err := NewStore(db)
			if err != nil {
				t.Fatal(err)
			}
			s := st.(leaseStore)
			if err := s.ensureJobs(ctx, []JobState{{Name: "tick", Running: true, Interval: time.Second}}); err != nil {
				t.Fatal(err)
			}
			const sec = int64(time.Second / time.Microsecond)
			now := time.Now().UnixMicro()
			steps := []struct {
				name string
				do   func() (int64, error)
				want int64
			}{
				{"a takes the free lease", func() (int64, error) { return s.acquire(ctx, "a", now, now+3*sec) }, 1},
				{"b cannot take a live lease", func() (int64, error) { return s.acquire(ctx, "b", now+sec, now+4*sec) }, 0},
				{"a renews", func() (int64, error) { return boolInt(s.renew(ctx, "a", 1, now+2*sec, now+5*sec)) }, 1},
				{"a's run passes the fence", func() (int64, error) { return boolInt(s.fence(ctx, "tick", "a", 1, now+2*sec)) }, 1},
				{"b cannot take it before its new end", func() (int64, error) { return s.acquire(ctx, "b", now+4*sec, now+7*sec) }, 0},
				{"b takes it once it ended", func() (int64, error) { return s.acquire(ctx, "b", now+6*sec, now+9*sec) }, 2},
				{"a cannot renew a lease it lost", func() (int64, error) { return boolInt(s.renew(ctx, "a", 1, now+6*sec, now+9*sec)) }, 0},
				{"a's run is fenced off", func() (int64, error) { return boolInt(s.fence(ctx, "tick", "a", 1, now+6*sec)) }, 0},
				{"b's run passes", func() (int64, error) { return boolInt(s.fence(ctx, "tick", "b", 2, now+6*sec)) }, 1},
				{"b's run is fenced off after its lease's end", func() (int64, error) { return boolInt(s.fence(ctx, "tick", "b", 2, now+10*sec)) }, 0},
				{"a's release of its old term leaves b's lease", func() (int64, error) { return 0, s.release(ctx, "a", 1) }, 0},
				{"c cannot take b's live lease", func() (int64, error) { return s.acquire(ctx, "c", now+7*sec, now+10*sec) }, 0},
				{"b releases", func() (int64, error) { return 0, s.release(ctx, "b", 2) }, 0},
				{"c takes a released lease at once", func() (int64, error) { return s.acquire(ctx, "c", now+7*sec, now+10*sec) }, 3},
			}
			for _, step := range steps {
				got, err := step.do()
				if err != nil {
					t.Fatalf("%s: %v", step.name, err)
				}
				if got != step.want {
					t.Fatalf("%s: got %d, want %d", step.name, got, step.want)
				}
			}
			row, err := s.leader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if row.Owner != "c" || row.Term != 3 {
				t.Fatalf("lease %+v, want c's of term 3", row)
			}
			saved, err := s.LoadJobs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(saved) != 1 || saved[0].LastStart == nil || saved[0].LastStart.UnixMicro() != now+6*sec || !saved[0].Running || saved[0].Interval != time.Second {
				t.Fatalf("stored job %+v: want b's fenced start and the registration's state", saved)
			}
		})
	}
}

func boolInt(ok bool, err error) (int64, error) {
	if ok {
		return 1, err
	}
	return 0, err
}
