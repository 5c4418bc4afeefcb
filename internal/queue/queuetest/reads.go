package queuetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"gorm.io/gorm"
)

// fixture imports items of q in the states the filters tell apart.
func fixture(t *testing.T, d queue.Driver) {
	t.Helper()
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	items := []queue.Item{
		{PublicID: "a", Kind: "k", State: queue.StatePending, CreatedAt: at(1)},
		{PublicID: "b", Kind: "k", Priority: 1, State: queue.StatePending, Attempt: 2, Failures: 2, RunAt: at(10 * time.Second), CreatedAt: at(2)},
		{PublicID: "c", Kind: "j", Priority: 1, State: queue.StatePending, RunAt: at(time.Second), CreatedAt: at(3)},
		{PublicID: "d", Kind: "k", Key: "x", State: queue.StateHeld, CreatedAt: at(4)},
		{PublicID: "e", Kind: "j", State: queue.StateDead, Attempt: 3, Failures: 3, LastError: "boom", CreatedAt: at(5), FinishedAt: at(6)},
		{PublicID: "f", Kind: "k", State: queue.StateDone, Attempt: 1, CreatedAt: at(6), FinishedAt: at(7)},
	}
	if err := d.Import(context.Background(), q, items); err != nil {
		t.Fatalf("import: %v", err)
	}
}

func testImport(t *testing.T, d queue.Driver, _ *gorm.DB) {
	ctx := context.Background()
	want := queue.Item{PublicID: "r", Kind: "k", Key: "x", Priority: 2, Payload: []byte(`{"n":1}`), Meta: []byte(`{"h":"v"}`),
		State: queue.StateRunning, Attempt: 2, Failures: 1, MaxAttempts: 5, LastError: "once", RunAt: t0.Add(time.Second),
		LeaseUntil: t0.Add(time.Minute), Owner: "p1", CreatedAt: t0, UpdatedAt: t0.Add(2 * time.Second),
		StartedAt: t0.Add(2 * time.Second)}
	if err := d.Import(ctx, q, []queue.Item{want}); err != nil {
		t.Fatalf("import: %v", err)
	}
	got := get(t, d, "r")
	if got.ID == 0 {
		t.Fatal("no id assigned")
	}
	want.ID, want.Queue = got.ID, q
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Fatalf("imported\n got %+v\nwant %+v", got, want)
	}
	for _, st := range queue.States() {
		if err := d.Import(ctx, q, []queue.Item{{PublicID: "s-" + string(st), Kind: "k", State: st}}); err != nil {
			t.Fatalf("import %s: %v", st, err)
		}
		if it := get(t, d, "s-"+string(st)); it.State != st || string(it.Payload) != "null" || string(it.Meta) != "{}" {
			t.Fatalf("imported %s as %s, payload %s, meta %s", st, it.State, it.Payload, it.Meta)
		}
	}
	for name, bad := range map[string]queue.Item{
		"no kind":  {PublicID: "z", State: queue.StateDone},
		"no id":    {Kind: "k", State: queue.StateDone},
		"no state": {PublicID: "z", Kind: "k"},
		"payload":  {PublicID: "z", Kind: "k", State: queue.StateDone, Payload: []byte("{")},
	} {
		if err := d.Import(ctx, q, []queue.Item{bad}); !errors.Is(err, queue.ErrInvalidItem) {
			t.Errorf("%s: %v, want ErrInvalidItem", name, err)
		}
	}
	// All or nothing: a duplicate public id undoes the items before it.
	err := d.Import(ctx, q, []queue.Item{{PublicID: "new", Kind: "k", State: queue.StateDone}, {PublicID: "r", Kind: "k", State: queue.StateDone}})
	if err == nil {
		t.Fatal("duplicate public id imported")
	}
	if _, err := d.Get(ctx, q, "new"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("the item before the duplicate: %v, want ErrNotFound", err)
	}
}

func testCountAndListFilters(t *testing.T, d queue.Driver, db *gorm.DB) {
	ctx := context.Background()
	fixture(t, d)
	yes, no := true, false
	pending := []queue.State{queue.StatePending}
	for _, tc := range []struct {
		name  string
		f     queue.Filter
		limit int64
		want  int64
		list  string // newest first
	}{
		{"queue", queue.Filter{Queue: q}, 100, 6, "[f e d c b a]"},
		{"capped", queue.Filter{Queue: q}, 3, 3, "[f e d]"},
		{"other queue", queue.Filter{Queue: "other"}, 100, 0, "[]"},
		{"states", queue.Filter{Queue: q, States: []queue.State{queue.StatePending, queue.StateHeld}}, 100, 4, "[d c b a]"},
		{"kind", queue.Filter{Queue: q, States: pending, Kind: "k"}, 100, 2, "[b a]"},
		{"priority", queue.Filter{Queue: q, Priorities: []int{1}}, 100, 2, "[c b]"},
		{"priorities", queue.Filter{Queue: q, Priorities: []int{0, 1}, States: pending}, 100, 3, "[c b a]"},
		{"priority 0", queue.Filter{Queue: q, Priorities: []int{0}, States: pending}, 100, 1, "[a]"},
		{"failed", queue.Filter{Queue: q, States: pending, Failed: &yes}, 100, 1, "[b]"},
		{"not failed", queue.Filter{Queue: q, States: pending, Failed: &no}, 100, 2, "[c a]"},
		{"due", queue.Filter{Queue: q, States: pending, DueBy: us(5 * time.Second)}, 100, 2, "[c a]"},
		{"later", queue.Filter{Queue: q, States: pending, DueAfter: us(5 * time.Second)}, 100, 1, "[b]"},
		{"due window", queue.Filter{Queue: q, DueAfter: us(0), DueBy: us(5 * time.Second)}, 100, 1, "[c]"},
	} {
		n, err := d.CountUpTo(ctx, nil, tc.f, tc.limit)
		if err != nil || n != tc.want {
			t.Errorf("%s: count %d, %v; want %d", tc.name, n, err, tc.want)
		}
		page, err := d.List(ctx, queue.ListQuery{Filter: tc.f, Limit: int(tc.limit)})
		if got := fmt.Sprint(publicIDs(page)); err != nil || got != tc.list {
			t.Errorf("%s: list %s, %v; want %s", tc.name, got, err, tc.list)
		}
	}
	if _, err := d.CountUpTo(ctx, nil, queue.Filter{Queue: q, States: []queue.State{"lost"}}, 10); !errors.Is(err, queue.ErrUnknownState) {
		t.Errorf("count of an unknown state: %v, want ErrUnknownState", err)
	}
	if _, err := d.List(ctx, queue.ListQuery{Filter: queue.Filter{Queue: q, States: []queue.State{"x' OR '1'='1"}}, Limit: 10}); !errors.Is(err, queue.ErrUnknownState) {
		t.Errorf("list of an unknown state: %v, want ErrUnknownState", err)
	}
	// Keyset: the page after c.
	c := get(t, d, "c")
	page, err := d.List(ctx, queue.ListQuery{Filter: queue.Filter{Queue: q, States: pending}, Before: c.ID, Limit: 10})
	if got := fmt.Sprint(publicIDs(page)); err != nil || got != "[b a]" {
		t.Fatalf("list before c: %s, %v", got, err)
	}
	// In the caller's transaction, its own uncommitted items count.
	err = db.Transaction(func(tx *gorm.DB) error {
		if _, err := queue.Insert(ctx, d, tx, q, t0, item("g", "")); err != nil {
			return err
		}
		n, err := d.CountUpTo(ctx, tx, queue.Filter{Queue: q, States: pending}, 100)
		if err != nil || n != 4 {
			return fmt.Errorf("count in tx: %d, %v; want 4", n, err)
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatal(err)
	}
	if n, err := d.CountUpTo(ctx, nil, queue.Filter{Queue: q, States: pending}, 100); err != nil || n != 3 {
		t.Fatalf("count after rollback: %d, %v; want 3", n, err)
	}
}

var errRollback = errors.New("rollback")

func testDropOldest(t *testing.T, d queue.Driver, db *gorm.DB) {
	ctx := context.Background()
	insert(t, d, db, item("k1", "x"), item("u1", ""), item("u2", ""), item("u3", ""))
	claim(t, d, "p", 1) // k1, the oldest, runs: the next drop is u1
	now := us(3 * time.Second)
	it, err := d.DropOldest(ctx, nil, q, "shed", now)
	if err != nil || it.PublicID != "u1" || it.State != queue.StateDropped || it.LastError != "shed" || queue.US(it.FinishedAt) != now {
		t.Fatalf("drop oldest: %+v, %v", it, err)
	}
	if got := get(t, d, "u1"); got.State != queue.StateDropped || got.LastError != "shed" || queue.US(got.UpdatedAt) != now {
		t.Fatalf("u1 stored as %s %q", got.State, got.LastError)
	}
	// In the caller's transaction: undone with it.
	err = db.Transaction(func(tx *gorm.DB) error {
		it, err := d.DropOldest(ctx, tx, q, "shed", now)
		if err != nil || it.PublicID != "u2" {
			return fmt.Errorf("drop in tx: %s, %v", it.PublicID, err)
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatal(err)
	}
	if got := get(t, d, "u2"); got.State != queue.StatePending {
		t.Fatalf("u2 after rollback: %s", got.State)
	}
	err = db.Transaction(func(tx *gorm.DB) error {
		_, err := d.DropOldest(ctx, tx, q, "shed", now)
		return err
	})
	if err != nil || get(t, d, "u2").State != queue.StateDropped {
		t.Fatalf("drop in tx, committed: %v, %s", err, get(t, d, "u2").State)
	}
	// A keyed pending item heads its key: never shed.
	insert(t, d, db, item("k2", "y"))
	if it, err := d.DropOldest(ctx, nil, q, "shed", now); err != nil || it.PublicID != "u3" {
		t.Fatalf("drop u3: %s, %v", it.PublicID, err)
	}
	if _, err := d.DropOldest(ctx, nil, q, "shed", now); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("nothing unkeyed left: %v, want ErrNotFound", err)
	}
	if got := get(t, d, "k2"); got.State != queue.StatePending {
		t.Fatalf("k2: %s", got.State)
	}
}

func testFinished(t *testing.T, d queue.Driver, _ *gorm.DB) {
	ctx := context.Background()
	var items []queue.Item
	for i, fin := range []time.Duration{time.Second, 2500 * time.Millisecond, 2900 * time.Millisecond, 9 * time.Second, 500 * time.Millisecond} {
		items = append(items, queue.Item{PublicID: fmt.Sprint("d", i), Kind: "k", State: queue.StateDone, CreatedAt: t0, FinishedAt: t0.Add(fin)})
	}
	items = append(items, queue.Item{PublicID: "x", Kind: "k", State: queue.StateDead, CreatedAt: t0, FinishedAt: t0.Add(2 * time.Second)})
	if err := d.Import(ctx, q, items); err != nil {
		t.Fatal(err)
	}
	done, dead := queue.Filter{Queue: q, States: []queue.State{queue.StateDone}}, queue.Filter{Queue: q, States: []queue.State{queue.StateDead}}
	for _, tc := range []struct {
		f    queue.Filter
		want string
	}{{done, "[1 2 0]"}, {dead, "[0 1 0]"}, {queue.Filter{Queue: q}, "[1 3 0]"}, {queue.Filter{Queue: "other"}, "[0 0 0]"}} {
		got, err := d.CountByFinish(ctx, tc.f, us(time.Second), time.Second.Microseconds(), 3)
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("%v: buckets %v, %v; want %s", tc.f.States, got, err, tc.want)
		}
	}
	if _, err := d.CountByFinish(ctx, done, us(0), 0, 3); err == nil {
		t.Error("a zero bucket width is accepted")
	}
	f := done
	f.FinishedFrom, f.FinishedBefore = us(time.Second), us(4*time.Second)
	got, err := d.LatestFinished(ctx, f, 2)
	if err != nil || fmt.Sprint(publicIDs(got)) != "[d2 d1]" {
		t.Fatalf("latest finished: %v, %v", publicIDs(got), err)
	}
	if got, _ := d.LatestFinished(ctx, done, 10); fmt.Sprint(publicIDs(got)) != "[d3 d2 d1 d0 d4]" {
		t.Fatalf("latest finished, all: %v", publicIDs(got))
	}
}
