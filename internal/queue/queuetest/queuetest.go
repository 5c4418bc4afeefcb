// Package queuetest is the conformance suite of the queue engine's drivers:
// every driver (and any fake a test uses) must pass Run.
package queuetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"gorm.io/gorm"
)

// Open returns a migrated driver on a fresh database, and its gorm handle
// (for inserts in a caller's transaction).
type Open func(t *testing.T) (queue.Driver, *gorm.DB)

const q = "test"

// Run runs the whole contract.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		f    func(t *testing.T, d queue.Driver, db *gorm.DB)
	}{
		{"MigrateTwice", testMigrateTwice},
		{"ClaimBatch", testClaimBatch},
		{"InsertRollsBackWithCaller", testInsertRollback},
		{"RunAtInFuture", testRunAt},
		{"KeyOrder", testKeyOrder},
		{"DeadBlocksKeyUntilRetried", testDeadBlocks},
		{"DeadSetAside", testSetAside},
		{"DeleteDeadFreesKey", testDeleteDead},
		{"LostClaimNotWritten", testLostClaim},
		{"RescueAndSolo", testRescue},
		{"HeartbeatRenewsLease", testHeartbeat},
		{"PriorityShares", testPriorities},
		{"ConcurrentClaimersNeverShare", testConcurrentClaims},
		{"RetryDeadDropCountListCleanup", testAdmin},
		{"TimeToFinishAndKeyList", testTimeToFinish},
		{"ClientRunsEverything", testClient},
		{"ImportAnyState", testImport},
		{"CountAndListFilters", testCountAndListFilters},
		{"DropOldestUnkeyed", testDropOldest},
		{"CountByFinishAndLatest", testFinished},
		{"SuccessKeptInItemRow", testSuccessInRow},
		{"CompleteLargeBatch", testCompleteLargeBatch},
		{"RenewsOnlyLeasesNearTheirEnd", testRenewNearEnd},
		{"UniqueKey", testUniqueKey},
		{"UniqueInCallerTx", testUniqueInCallerTx},
		{"UniqueConcurrent", testUniqueConcurrent},
		{"UniqueRetry", testUniqueRetry},
		{"OutcomeSavesMeta", testOutcomeMeta},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, db := open(t)
			tc.f(t, d, db)
		})
	}
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func us(d time.Duration) int64 { return queue.US(t0.Add(d)) }

func insert(t *testing.T, d queue.Driver, db *gorm.DB, items ...queue.NewItem) []int64 {
	t.Helper()
	var ids []int64
	err := db.Transaction(func(tx *gorm.DB) error {
		var err error
		ids, err = queue.Insert(context.Background(), d, tx, q, t0, items...)
		return err
	})
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	return ids
}

func item(id, key string) queue.NewItem {
	return queue.NewItem{PublicID: id, Kind: "k", Key: key, Payload: []byte(`{"id":"` + id + `"}`)}
}

func claim(t *testing.T, d queue.Driver, owner string, limit int) []queue.Item {
	t.Helper()
	items, err := d.Claim(context.Background(), queue.ClaimRequest{Queue: q, Owner: owner, NowUS: us(time.Second), LeaseUS: us(time.Minute), Limit: limit})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return items
}

func publicIDs(items []queue.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.PublicID
	}
	return out
}

func complete(t *testing.T, d queue.Driver, it queue.Item, st queue.State, blocks bool) {
	t.Helper()
	o := queue.Outcome{ID: it.ID, Owner: it.Owner, Attempt: it.Attempt, Queue: it.Queue, Key: it.Key, State: st,
		Blocks: blocks, NowUS: us(2 * time.Second), StartedUS: us(time.Second), DurationUS: 10}
	if st == queue.StateDead {
		o.Failures, o.LastError, o.Error = it.Failures+1, "boom", "boom"
	}
	ok, err := d.Complete(context.Background(), []queue.Outcome{o})
	if err != nil || len(ok) != 1 || !ok[0] {
		t.Fatalf("complete %s: ok %v, %v", it.PublicID, ok, err)
	}
}

func get(t *testing.T, d queue.Driver, id string) queue.Item {
	t.Helper()
	it, err := d.Get(context.Background(), q, id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return it
}

func wantIDs(t *testing.T, got []queue.Item, want ...string) {
	t.Helper()
	if fmt.Sprint(publicIDs(got)) != fmt.Sprint(want) {
		t.Fatalf("claimed %v, want %v", publicIDs(got), want)
	}
}

func testMigrateTwice(t *testing.T, d queue.Driver, _ *gorm.DB) {
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
}

func testClaimBatch(t *testing.T, d queue.Driver, db *gorm.DB) {
	insert(t, d, db, item("a", ""), item("b", ""), item("c", ""))
	got := claim(t, d, "p1", 2)
	wantIDs(t, got, "a", "b")
	for _, it := range got {
		if it.State != queue.StateRunning || it.Attempt != 1 || it.Owner != "p1" || !it.LeaseUntil.Equal(t0.Add(time.Minute)) {
			t.Fatalf("claimed item %+v", it)
		}
		if string(it.Payload) != `{"id":"`+it.PublicID+`"}` {
			t.Fatalf("payload %s", it.Payload)
		}
	}
	wantIDs(t, claim(t, d, "p2", 10), "c")
	wantIDs(t, claim(t, d, "p2", 10))
}

func testInsertRollback(t *testing.T, d queue.Driver, db *gorm.DB) {
	boom := errors.New("business write failed")
	err := db.Transaction(func(tx *gorm.DB) error {
		if _, err := queue.Insert(context.Background(), d, tx, q, t0, item("x", "k")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("transaction: %v", err)
	}
	if _, err := d.Get(context.Background(), q, "x"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("rolled back item: %v, want ErrNotFound", err)
	}
	wantIDs(t, claim(t, d, "p", 10))
	if _, err := queue.Insert(context.Background(), d, db, q, t0, queue.NewItem{PublicID: "bad", Kind: "k", Payload: []byte("{")}); !errors.Is(err, queue.ErrInvalidItem) {
		t.Fatalf("invalid payload: %v", err)
	}
}

func testRunAt(t *testing.T, d queue.Driver, db *gorm.DB) {
	later := item("later", "")
	later.RunAt = t0.Add(time.Hour)
	insert(t, d, db, later, item("now", ""))
	wantIDs(t, claim(t, d, "p", 10), "now")
}

func testKeyOrder(t *testing.T, d queue.Driver, db *gorm.DB) {
	insert(t, d, db, item("k1", "K"), item("k2", "K"))
	insert(t, d, db, item("k3", "K"), item("free", ""))
	if st := get(t, d, "k2").State; st != queue.StateHeld {
		t.Fatalf("second of key: %s, want held", st)
	}
	got := claim(t, d, "p", 10)
	wantIDs(t, got, "k1", "free")
	wantIDs(t, claim(t, d, "p", 10))
	// A retry keeps the head: the key waits for it.
	o := queue.Outcome{ID: got[0].ID, Owner: "p", Attempt: 1, Queue: q, Key: "K", State: queue.StatePending, Failures: 1, NowUS: us(2 * time.Second)}
	if ok, err := d.Complete(context.Background(), []queue.Outcome{o}); err != nil || !ok[0] {
		t.Fatalf("retry: %v %v", ok, err)
	}
	got = claim(t, d, "p", 10)
	wantIDs(t, got, "k1")
	complete(t, d, got[0], queue.StateDone, false)
	got = claim(t, d, "p", 10)
	wantIDs(t, got, "k2")
	complete(t, d, got[0], queue.StateDone, false)
	wantIDs(t, claim(t, d, "p", 10), "k3")
	atts, err := d.Attempts(context.Background(), get(t, d, "k1").ID)
	if err != nil || len(atts) != 2 || atts[0].Number != 1 || atts[1].Number != 2 || atts[1].Duration != 10*time.Microsecond {
		t.Fatalf("attempts of k1: %+v %v (want the failed one and the done one)", atts, err)
	}
}

func testDeadBlocks(t *testing.T, d queue.Driver, db *gorm.DB) {
	insert(t, d, db, item("a", "K"), item("b", "K"))
	complete(t, d, claim(t, d, "p", 10)[0], queue.StateDead, true)
	wantIDs(t, claim(t, d, "p", 10))
	it, err := d.Retry(context.Background(), q, "a", us(3*time.Second))
	if err != nil || it.State != queue.StatePending || it.Failures != 0 {
		t.Fatalf("retry: %+v %v", it, err)
	}
	got := claim(t, d, "p", 10)
	wantIDs(t, got, "a")
	complete(t, d, got[0], queue.StateDone, false)
	wantIDs(t, claim(t, d, "p", 10), "b")
}

func testSetAside(t *testing.T, d queue.Driver, db *gorm.DB) {
	insert(t, d, db, item("a", "K"), item("b", "K"), item("c", "K"))
	complete(t, d, claim(t, d, "p", 10)[0], queue.StateDead, false)
	got := claim(t, d, "p", 10)
	wantIDs(t, got, "b")
	// Retried while b is out: a goes behind it, before c.
	if it, err := d.Retry(context.Background(), q, "a", us(3*time.Second)); err != nil || it.State != queue.StateHeld {
		t.Fatalf("retry set-aside: %+v %v", it, err)
	}
	wantIDs(t, claim(t, d, "p", 10))
	complete(t, d, got[0], queue.StateDone, false)
	wantIDs(t, claim(t, d, "p", 10), "a")
}

func testDeleteDead(t *testing.T, d queue.Driver, db *gorm.DB) {
	insert(t, d, db, item("a", "K"), item("b", "K"))
	if _, err := d.Delete(context.Background(), q, "a", []queue.State{queue.StateDead}); !errors.Is(err, queue.ErrState) {
		t.Fatalf("delete pending: %v, want ErrState", err)
	}
	complete(t, d, claim(t, d, "p", 10)[0], queue.StateDead, true)
	if _, err := d.Delete(context.Background(), q, "a", []queue.State{queue.StateDead}); err != nil {
		t.Fatalf("delete dead: %v", err)
	}
	if _, err := d.Delete(context.Background(), q, "a", []queue.State{queue.StateDead}); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("delete again: %v, want ErrNotFound", err)
	}
	wantIDs(t, claim(t, d, "p", 10), "b")
}

func testLostClaim(t *testing.T, d queue.Driver, db *gorm.DB) {
	insert(t, d, db, item("a", ""))
	it := claim(t, d, "p", 1)[0]
	o := queue.Outcome{ID: it.ID, Owner: "other", Attempt: it.Attempt, Queue: q, State: queue.StateDone, NowUS: us(time.Second)}
	ok, err := d.Complete(context.Background(), []queue.Outcome{o})
	if err != nil || ok[0] {
		t.Fatalf("complete by another owner: %v %v, want not ok", ok, err)
	}
	if get(t, d, "a").State != queue.StateRunning {
		t.Fatal("a lost claim was written")
	}
}

func testRescue(t *testing.T, d queue.Driver, db *gorm.DB) {
	ctx := context.Background()
	insert(t, d, db, item("a", "K"), item("b", "K"), item("c", ""))
	claim(t, d, "dead-process", 10)
	if n, err := d.Rescue(ctx, us(30*time.Second), 100); err != nil || n != 0 {
		t.Fatalf("rescue of live leases: %d %v", n, err)
	}
	if n, err := d.Rescue(ctx, us(2*time.Minute), 100); err != nil || n != 2 {
		t.Fatalf("rescue: %d %v, want 2", n, err)
	}
	a := get(t, d, "a")
	if a.State != queue.StateRescued || a.Failures != 0 || a.Owner != "" {
		t.Fatalf("rescued a: %+v (a cut beside others counts nothing)", a)
	}
	if has, err := d.HasRescued(ctx, q); err != nil || !has {
		t.Fatalf("HasRescued: %v %v", has, err)
	}
	wantIDs(t, claim(t, d, "p", 10)) // the key waits for its suspect; c is a suspect too
	req := queue.ClaimRequest{Queue: q, Owner: "p", NowUS: us(3 * time.Minute), LeaseUS: us(4 * time.Minute), Limit: 1}
	got, err := d.ClaimRescued(ctx, req)
	if err != nil || len(got) != 1 || got[0].PublicID != "a" || got[0].Attempt != 2 {
		t.Fatalf("claim rescued: %+v %v", got, err)
	}
	// Cut again while alone: that one counts.
	if n, err := d.Rescue(ctx, us(5*time.Minute), 100); err != nil || n != 1 {
		t.Fatalf("rescue solo: %d %v", n, err)
	}
	a = get(t, d, "a")
	if a.Failures != 1 || a.LastError != queue.CutShort {
		t.Fatalf("solo cut: failures %d, error %q", a.Failures, a.LastError)
	}
}

func testHeartbeat(t *testing.T, d queue.Driver, db *gorm.DB) {
	ctx := context.Background()
	insert(t, d, db, item("a", ""), item("b", ""))
	got := claim(t, d, "p", 10)
	p := queue.ProcessRow{ID: "p", Host: "h", PID: 1, StartedUS: us(0), HeartbeatUS: us(time.Second), Version: "v1.2.3"}
	if err := d.Heartbeat(ctx, p, []int64{got[0].ID}, us(10*time.Minute)); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	p.HeartbeatUS = us(2 * time.Second)
	if err := d.Heartbeat(ctx, p, nil, 0); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if ps, err := d.Processes(ctx, 10); err != nil || len(ps) != 1 || ps[0] != p {
		t.Fatalf("processes: %+v %v, want [%+v]", ps, err, p)
	}
	if n, err := d.Rescue(ctx, us(2*time.Minute), 100); err != nil || n != 1 {
		t.Fatalf("rescue after renewal: %d %v, want only the unrenewed one", n, err)
	}
	if get(t, d, "a").State != queue.StateRunning {
		t.Fatal("renewed lease was rescued")
	}
	if err := d.Forget(ctx, "p"); err != nil {
		t.Fatalf("forget: %v", err)
	}
	if ps, err := d.Processes(ctx, 10); err != nil || len(ps) != 0 {
		t.Fatalf("processes after forget: %+v %v, want none", ps, err)
	}
}

func testPriorities(t *testing.T, d queue.Driver, db *gorm.DB) {
	var items []queue.NewItem
	for p := range 4 {
		for i := range 20 {
			it := item(fmt.Sprintf("p%d-%02d", p, i), "")
			it.Priority = p
			items = append(items, it)
		}
	}
	insert(t, d, db, items...)
	got, err := d.Claim(context.Background(), queue.ClaimRequest{Queue: q, Owner: "p", NowUS: us(time.Second), LeaseUS: us(time.Minute), Limit: 15, Weights: []int{8, 4, 2, 1}})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	per := make([]int, 4)
	for _, it := range got {
		per[it.Priority]++
	}
	if fmt.Sprint(per) != "[8 4 2 1]" {
		t.Fatalf("per priority %v, want [8 4 2 1]", per)
	}
	// With the urgent levels empty, the low one takes the whole batch.
	for range 10 {
		if len(claim(t, d, "p", 0)) != 0 {
			break
		}
	}
}

func testConcurrentClaims(t *testing.T, d queue.Driver, db *gorm.DB) {
	var items []queue.NewItem
	for i := range 400 {
		items = append(items, item(fmt.Sprintf("i%03d", i), fmt.Sprintf("k%d", i%7)))
	}
	insert(t, d, db, items...)
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	for w := range 4 {
		owner := fmt.Sprintf("w%d", w)
		wg.Go(func() {
			for idle := 0; idle < 50; {
				got, err := d.Claim(context.Background(), queue.ClaimRequest{Queue: q, Owner: owner, NowUS: us(time.Second), LeaseUS: us(time.Hour), Limit: 16})
				if err != nil {
					t.Errorf("claim: %v", err)
					return
				}
				if len(got) == 0 {
					idle++
					time.Sleep(time.Millisecond)
					continue
				}
				mu.Lock()
				for _, it := range got {
					if prev, dup := seen[it.PublicID]; dup {
						t.Errorf("%s claimed by %s and %s", it.PublicID, prev, owner)
					}
					seen[it.PublicID] = owner
				}
				mu.Unlock()
				outs := make([]queue.Outcome, len(got))
				for i, it := range got {
					outs[i] = queue.Outcome{ID: it.ID, Owner: owner, Attempt: it.Attempt, Queue: q, Key: it.Key, State: queue.StateDone, NowUS: us(time.Second)}
				}
				if _, err := d.Complete(context.Background(), outs); err != nil {
					t.Errorf("complete: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != 400 {
		t.Fatalf("%d of 400 items claimed", len(seen))
	}
}

func testAdmin(t *testing.T, d queue.Driver, db *gorm.DB) {
	ctx := context.Background()
	insert(t, d, db, item("a", ""), item("b", ""), item("c", ""), item("d", ""))
	got := claim(t, d, "p", 2)
	complete(t, d, got[0], queue.StateDead, true)
	complete(t, d, got[1], queue.StateDone, false)
	if it, err := d.Drop(ctx, q, "c", queue.StateCancelled, "no longer wanted", us(3*time.Second)); err != nil || it.State != queue.StateCancelled {
		t.Fatalf("drop: %+v %v", it, err)
	}
	if _, err := d.Drop(ctx, q, "b", queue.StateCancelled, "", us(3*time.Second)); !errors.Is(err, queue.ErrState) {
		t.Fatalf("drop of a done item: %v", err)
	}
	counts, err := d.Count(ctx, q, "", 100)
	if err != nil || counts[queue.StateDead] != 1 || counts[queue.StateDone] != 1 || counts[queue.StatePending] != 1 || counts[queue.StateCancelled] != 1 {
		t.Fatalf("counts %v %v", counts, err)
	}
	if c, _ := d.Count(ctx, q, "", 0); c[queue.StatePending] != 0 {
		t.Fatalf("count capped at 0: %v", c)
	}
	page, err := d.List(ctx, queue.ListQuery{Filter: queue.Filter{Queue: q}, Limit: 2})
	if err != nil || fmt.Sprint(publicIDs(page)) != "[d c]" {
		t.Fatalf("list: %v %v", publicIDs(page), err)
	}
	page, err = d.List(ctx, queue.ListQuery{Filter: queue.Filter{Queue: q, States: []queue.State{queue.StateDead}}, Limit: 10, Before: page[1].ID})
	if err != nil || fmt.Sprint(publicIDs(page)) != "[a]" {
		t.Fatalf("list dead: %v %v", publicIDs(page), err)
	}
	if n, err := d.RetryDead(ctx, q, "", us(4*time.Second)); err != nil || n != 1 {
		t.Fatalf("retry dead: %d %v", n, err)
	}
	if oldest, err := d.OldestOpen(ctx, q); err != nil || oldest != us(0) {
		t.Fatalf("oldest open: %d %v", oldest, err)
	}
	if _, err := d.Drop(ctx, q, "d", queue.StateDropped, "shed", us(3*time.Second)); err != nil {
		t.Fatalf("drop: %v", err)
	}
	// Done and dropped items go; cancelled ones stay.
	if n, err := d.Cleanup(ctx, q, us(time.Hour), 10); err != nil || n != 2 {
		t.Fatalf("cleanup: %d %v", n, err)
	}
	for _, id := range []string{"b", "d"} {
		if _, err := d.Get(ctx, q, id); !errors.Is(err, queue.ErrNotFound) {
			t.Fatalf("cleaned item %s: %v", id, err)
		}
	}
	if _, err := d.Get(ctx, q, "c"); err != nil {
		t.Fatalf("cancelled item: %v", err)
	}
	// A dropped item can be retried by hand; a done one cannot.
	insert(t, d, db, item("e", ""))
	if _, err := d.Drop(ctx, q, "e", queue.StateDropped, "shed", us(5*time.Second)); err != nil {
		t.Fatalf("drop e: %v", err)
	}
	if it, err := d.Retry(ctx, q, "e", us(6*time.Second)); err != nil || it.State != queue.StatePending || !it.FinishedAt.IsZero() {
		t.Fatalf("retry dropped: %+v %v", it, err)
	}
}

// testTimeToFinish reads the finished items' times to finish, latest first,
// and lists one key's items.
func testTimeToFinish(t *testing.T, d queue.Driver, db *gorm.DB) {
	ctx := context.Background()
	insert(t, d, db, item("a", "x"), item("b", "y"), item("c", ""), item("d", ""), item("e", ""))
	got := claim(t, d, "p", 5)
	if len(got) != 5 {
		t.Fatalf("claimed %v", publicIDs(got))
	}
	at := map[string]struct {
		st  queue.State
		sec time.Duration
	}{"a": {queue.StateDone, 1}, "b": {queue.StateDone, 6}, "c": {queue.StateDead, 7}, "d": {queue.StateDone, 12}}
	for _, it := range got {
		f, ok := at[it.PublicID]
		if !ok {
			continue // e stays running
		}
		o := queue.Outcome{ID: it.ID, Owner: it.Owner, Attempt: it.Attempt, Queue: it.Queue, Key: it.Key, State: f.st,
			NowUS: us(f.sec * time.Second), StartedUS: us(time.Second), DurationUS: 10}
		if ok, err := d.Complete(ctx, []queue.Outcome{o}); err != nil || !ok[0] {
			t.Fatalf("complete %s: %v %v", it.PublicID, ok, err)
		}
	}
	done := queue.Filter{Queue: q, States: []queue.State{queue.StateDone}, FinishedFrom: us(0), FinishedBefore: us(15 * time.Second)}
	if ds, err := d.TimeToFinish(ctx, done, 10); err != nil || fmt.Sprint(ds) != "[12s 6s 1s]" {
		t.Errorf("times to finish: %v %v, want [12s 6s 1s]", ds, err)
	}
	for key, want := range map[string]string{"x": "[a]", "y": "[b]", "z": "[]"} {
		if page, err := d.List(ctx, queue.ListQuery{Filter: queue.Filter{Queue: q, Key: key}, Limit: 10}); err != nil || fmt.Sprint(publicIDs(page)) != want {
			t.Errorf("list key %s: %v %v, want %s", key, publicIDs(page), err, want)
		}
	}
}

func testClient(t *testing.T, d queue.Driver, db *gorm.DB) {
	ctx := context.Background()
	var mu sync.Mutex
	runs := map[string]int{}
	var order []string
	done := make(chan string, 100)
	h := queue.HandlerFunc(func(ctx context.Context, it *queue.Item) error {
		mu.Lock()
		runs[it.PublicID]++
		n := runs[it.PublicID]
		if it.Key != "" {
			order = append(order, it.PublicID)
		}
		mu.Unlock()
		switch {
		case it.PublicID == "flaky" && n < 3:
			return errors.New("not yet")
		case it.PublicID == "snooze" && n == 1:
			return queue.Snooze(time.Millisecond)
		case it.PublicID == "perm":
			return queue.Permanent(errors.New("never"))
		}
		return nil
	})
	proc := queue.NewProcess(d, queue.ProcessConfig{Heartbeat: 20 * time.Millisecond, RescueInterval: 20 * time.Millisecond})
	c, err := queue.NewClient(d, proc, queue.Config{
		Queue: q, Workers: 4, Handler: h, PollInterval: 10 * time.Millisecond,
		Retry:   queue.RetryPolicy{Base: time.Millisecond, Max: 2 * time.Millisecond},
		OnEvent: func(ev queue.Event) { done <- ev.Type + ":" + ev.Item.PublicID },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var items []queue.NewItem
	for i := range 20 {
		items = append(items, item(fmt.Sprintf("o%02d", i), "K"))
	}
	items = append(items, item("flaky", ""), item("snooze", ""), item("perm", ""))
	err = db.Transaction(func(tx *gorm.DB) error {
		_, err := queue.Insert(ctx, d, tx, q, time.Now(), items...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Wake()
	want := map[string]bool{"dead:perm": true, "done:flaky": true, "done:snooze": true}
	for i := range 20 {
		want[fmt.Sprintf("done:o%02d", i)] = true
	}
	timeout := time.After(20 * time.Second)
	for len(want) > 0 {
		select {
		case ev := <-done:
			delete(want, ev)
		case <-timeout:
			t.Fatalf("still waiting for %v", want)
		}
	}
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	if err := proc.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, id := range order {
		if id != fmt.Sprintf("o%02d", i) {
			t.Fatalf("key order broken: %v", order)
		}
	}
	if runs["flaky"] != 3 || runs["snooze"] != 2 || runs["perm"] != 1 {
		t.Fatalf("runs %v", runs)
	}
	f := get(t, d, "flaky")
	if f.State != queue.StateDone || f.Attempt != 3 || f.Failures != 2 {
		t.Fatalf("flaky: %+v", f)
	}
	if s := get(t, d, "snooze"); s.Attempt != 1 {
		t.Fatalf("snoozed attempt counted: %+v", s)
	}
}

// testSuccessInRow: a success writes no attempts row (the item's own row
// holds it) and still reads back as the item's last attempt, once, after
// the failures that are rows.
func testSuccessInRow(t *testing.T, d queue.Driver, db *gorm.DB) {
	ctx := context.Background()
	insert(t, d, db, item("ok", ""), item("twice", ""))
	for _, it := range claim(t, d, "p", 10) {
		if it.PublicID == "twice" {
			o := queue.Outcome{ID: it.ID, Owner: "p", Attempt: it.Attempt, Queue: q, State: queue.StatePending,
				Failures: 1, LastError: "boom", Error: "boom", NowUS: us(time.Second), StartedUS: us(0), DurationUS: 7}
			if ok, err := d.Complete(ctx, []queue.Outcome{o}); err != nil || !ok[0] {
				t.Fatalf("fail twice: %v %v", ok, err)
			}
			continue
		}
		complete(t, d, it, queue.StateDone, false)
	}
	complete(t, d, claim(t, d, "p", 10)[0], queue.StateDone, false)
	for _, tc := range []struct {
		id   string
		rows int64
		want []queue.Attempt
	}{
		{"ok", 0, []queue.Attempt{{Number: 1, Started: queue.FromUS(us(time.Second)), Duration: 10 * time.Microsecond}}},
		{"twice", 1, []queue.Attempt{
			{Number: 1, Started: queue.FromUS(us(0)), Duration: 7 * time.Microsecond, Error: "boom"},
			{Number: 2, Started: queue.FromUS(us(time.Second)), Duration: 10 * time.Microsecond},
		}},
	} {
		it := get(t, d, tc.id)
		var rows int64
		if err := db.Raw(`SELECT COUNT(*) FROM canal_queue_attempts WHERE item_id = ?`, it.ID).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		if rows != tc.rows {
			t.Errorf("%s: %d attempt rows, want %d", tc.id, rows, tc.rows)
		}
		atts, err := d.Attempts(ctx, it.ID)
		if err != nil {
			t.Fatal(err)
		}
		for i := range atts {
			atts[i].ItemID = 0
			atts[i].Started = atts[i].Started.UTC()
		}
		for i := range tc.want {
			tc.want[i].Started = tc.want[i].Started.UTC()
		}
		if !slices.EqualFunc(atts, tc.want, func(a, b queue.Attempt) bool { return a == b }) {
			t.Errorf("%s: attempts %+v, want %+v", tc.id, atts, tc.want)
		}
	}
}

// testCompleteLargeBatch completes, in one call, more outcomes than any one
// statement of a driver takes (SQLite binds them in statements of 256, 64,
// 16, 4 and 1), mixing lost claims, retries and dead ones: each outcome is
// written, or reported lost, as if it came alone.
func testCompleteLargeBatch(t *testing.T, d queue.Driver, db *gorm.DB) {
	const n = 256 + 64 + 16 + 4 + 1 + 256 // every statement size, and a second pass
	items := make([]queue.NewItem, n)
	for i := range items {
		items[i] = item(fmt.Sprintf("i%03d", i), "")
	}
	insert(t, d, db, items...)
	got := claim(t, d, "p", n)
	if len(got) != n {
		t.Fatalf("claimed %d, want %d", len(got), n)
	}
	outs := make([]queue.Outcome, n)
	for i, it := range got {
		o := queue.Outcome{ID: it.ID, Owner: it.Owner, Attempt: it.Attempt, Queue: q, State: queue.StateDone,
			NowUS: us(2*time.Second) + int64(i), StartedUS: us(time.Second), DurationUS: int64(i)}
		switch i % 7 {
		case 3:
			o.Owner = "other" // a lost claim
		case 5:
			o.State, o.RunAtUS, o.Failures, o.LastError, o.Error = queue.StatePending, us(time.Hour), 1, "e"+it.PublicID, "e"+it.PublicID
		case 6:
			o.State, o.Failures, o.LastError, o.Error = queue.StateDead, 1, "dead", "dead"
		}
		outs[i] = o
	}
	ok, err := d.Complete(context.Background(), outs)
	if err != nil || len(ok) != n {
		t.Fatalf("complete: %d answers, %v", len(ok), err)
	}
	for i, it := range got {
		o, now := outs[i], get(t, d, it.PublicID)
		if ok[i] != (o.Owner == it.Owner) {
			t.Fatalf("%s: ok %v, owner %q of %q", it.PublicID, ok[i], o.Owner, it.Owner)
		}
		want := o.State
		if !ok[i] {
			want = queue.StateRunning
		}
		if now.State != want || ok[i] && (now.LastError != o.LastError || now.Failures != o.Failures || queue.US(now.UpdatedAt) != o.NowUS) {
			t.Fatalf("%s after its outcome %+v: %+v", it.PublicID, o, now)
		}
		if ok[i] && o.State == queue.StatePending && queue.US(now.RunAt) != o.RunAtUS {
			t.Fatalf("%s: run at %v, want %d", it.PublicID, now.RunAt, o.RunAtUS)
		}
	}
}

// testRenewNearEnd: the heartbeat leaves a fresh claim's lease as it is and
// renews it once it nears its end (a row version per renewal is a write
// the claim would otherwise pay every beat).
func testRenewNearEnd(t *testing.T, d queue.Driver, db *gorm.DB) {
	ctx := context.Background()
	started, release := make(chan struct{}), make(chan struct{})
	h := queue.HandlerFunc(func(ctx context.Context, it *queue.Item) error {
		close(started)
		<-release
		return nil
	})
	const lease, beat = 4 * time.Second, 50 * time.Millisecond
	proc := queue.NewProcess(d, queue.ProcessConfig{Heartbeat: beat, RescueInterval: time.Hour})
	c, err := queue.NewClient(d, proc, queue.Config{Queue: q, Workers: 1, Handler: h, Lease: lease, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = proc.Stop(ctx) }()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Stop(ctx) }()
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free() // before Stop, which waits for the attempt
	insert(t, d, db, item("long", ""))
	c.Wake()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the item did not start")
	}
	first := get(t, d, "long").LeaseUntil
	// Several beats while more than half the lease is left: not renewed.
	time.Sleep(6 * beat)
	if now := get(t, d, "long"); !now.LeaseUntil.Equal(first) {
		t.Fatalf("a fresh lease was renewed: %v, then %v", first, now.LeaseUntil)
	}
	// Once within half the lease of its end, a beat renews it.
	deadline := time.Now().Add(lease + 5*time.Second)
	for get(t, d, "long").LeaseUntil.Equal(first) {
		if time.Now().After(deadline) {
			t.Fatalf("the lease (until %v) was never renewed", first)
		}
		time.Sleep(beat)
	}
	if renewed := get(t, d, "long").LeaseUntil; !renewed.After(first) {
		t.Fatalf("renewed to %v, before the first lease %v", renewed, first)
	}
}

// An outcome may carry the item's new metadata (a fan-out's delivered
// destinations): a retry and a give-back save it, in a batch where another
// outcome leaves its item's metadata as it was.
func testOutcomeMeta(t *testing.T, d queue.Driver, db *gorm.DB) {
	a, b, c := item("a", ""), item("b", ""), item("c", "")
	a.Meta, b.Meta, c.Meta = []byte(`{"h":"1"}`), []byte(`{"h":"2"}`), []byte(`{"h":"3"}`)
	insert(t, d, db, a, b, c)
	got := claim(t, d, "p", 3)
	wantIDs(t, got, "a", "b", "c")
	outs := []queue.Outcome{
		{ID: got[0].ID, Owner: "p", Attempt: got[0].Attempt, Queue: q, State: queue.StatePending, RunAtUS: us(time.Minute),
			Failures: 1, LastError: "boom", Error: "boom", NowUS: us(2 * time.Second), Meta: []byte(`{"h":"1","done":"x"}`)},
		{ID: got[1].ID, Owner: "p", Attempt: got[1].Attempt, Queue: q, State: queue.StatePending, RunAtUS: us(time.Minute),
			GiveBack: true, NowUS: us(2 * time.Second), Meta: []byte(`{"h":"2","done":"y"}`)},
		{ID: got[2].ID, Owner: "p", Attempt: got[2].Attempt, Queue: q, State: queue.StatePending, RunAtUS: us(time.Minute),
			Failures: 1, LastError: "boom", Error: "boom", NowUS: us(2 * time.Second)},
	}
	if ok, err := d.Complete(context.Background(), outs); err != nil || !ok[0] || !ok[1] || !ok[2] {
		t.Fatalf("complete: %v %v", ok, err)
	}
	for id, want := range map[string]string{"a": `{"h":"1","done":"x"}`, "b": `{"h":"2","done":"y"}`, "c": `{"h":"3"}`} {
		it := get(t, d, id)
		if string(it.Meta) != want || it.State != queue.StatePending {
			t.Errorf("%s: meta %s state %s, want %s pending", id, it.Meta, it.State, want)
		}
	}
	if it := get(t, d, "b"); it.Attempt != 0 || it.Failures != 0 {
		t.Errorf("b given back: attempt %d failures %d, want 0 0", it.Attempt, it.Failures)
	}
}
