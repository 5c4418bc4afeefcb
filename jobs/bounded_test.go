package jobs_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
)

func TestBoundedPolicies(t *testing.T) {
	tests := []struct {
		name        string
		policy      jobs.Policy
		wantErr     error // from the third Send into a channel of 2
		wantQueue   []int
		wantEvicted []int
		wantStats   jobs.ChanStats
	}{
		{"wait gives up at the deadline", jobs.Wait, context.DeadlineExceeded, []int{1, 2}, nil,
			jobs.ChanStats{Cap: 2, Policy: "wait", Sent: 2, Rejected: 1}},
		{"drop newest rejects the new item", jobs.DropNewest, jobs.ErrFull, []int{1, 2}, nil,
			jobs.ChanStats{Cap: 2, Policy: "drop-newest", Sent: 2, Rejected: 1}},
		{"drop oldest evicts the first item", jobs.DropOldest, nil, []int{2, 3}, []int{1},
			jobs.ChanStats{Cap: 2, Policy: "drop-oldest", Sent: 3, Evicted: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var evicted []int
			b := jobs.NewBounded(2, tc.policy, func(_ context.Context, v int) { evicted = append(evicted, v) })
			ctx := context.Background()
			for _, v := range []int{1, 2} {
				if err := b.Send(ctx, v); err != nil {
					t.Fatalf("Send(%d): %v", v, err)
				}
			}
			tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			err := b.Send(tctx, 3)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("third Send: got %v, want %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, jobs.ErrFull) {
				t.Errorf("a refused Send must be ErrFull, got %v", err)
			}
			st := b.Stats()
			var got []int
			for {
				v, ok := b.TryRecv()
				if !ok {
					break
				}
				got = append(got, v)
			}
			if !equal(got, tc.wantQueue) || !equal(evicted, tc.wantEvicted) {
				t.Errorf("queue %v evicted %v, want %v and %v", got, evicted, tc.wantQueue, tc.wantEvicted)
			}
			tc.wantStats.Len = 2
			if st != tc.wantStats {
				t.Errorf("stats %+v, want %+v", st, tc.wantStats)
			}
		})
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBoundedWaitUnblocksWhenReaderTakes(t *testing.T) {
	b := jobs.NewBounded[int](1, jobs.Wait, nil)
	if err := b.Send(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() { sent <- b.Send(context.Background(), 2) }()
	if v, err := b.Recv(context.Background()); err != nil || v != 1 {
		t.Fatalf("Recv = %d, %v", v, err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("waiting Send: %v", err)
	}
	if v, _ := b.TryRecv(); v != 2 {
		t.Fatalf("got %d, want 2", v)
	}
}

// Close is the tutorial's Complete(): every Send that returned nil, even
// one racing with Close, is still there for the reader to drain.
func TestBoundedCloseLosesNothingAccepted(t *testing.T) {
	for range 50 {
		b := jobs.NewBounded[int](64, jobs.Wait, nil)
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			accepted = map[int]bool{}
		)
		for s := range 8 {
			wg.Go(func() {
				for i := range 100 {
					v := s*1000 + i
					err := b.Send(context.Background(), v)
					if err == nil {
						mu.Lock()
						accepted[v] = true
						mu.Unlock()
						continue
					}
					if !errors.Is(err, jobs.ErrClosed) {
						t.Errorf("Send: %v", err)
					}
					return
				}
			})
		}
		got := map[int]bool{}
		go func() { // a reader that makes room while senders run
			for range 30 {
				if v, ok := b.TryRecv(); ok {
					mu.Lock()
					got[v] = true
					mu.Unlock()
				}
			}
			b.Close()
		}()
		<-b.Closed()
		for {
			v, ok := b.TryRecv()
			if !ok {
				break
			}
			mu.Lock()
			got[v] = true
			mu.Unlock()
		}
		wg.Wait()
		mu.Lock()
		for v := range accepted {
			if !got[v] {
				t.Fatalf("item %d was accepted but not drained", v)
			}
		}
		mu.Unlock()
		if err := b.Send(context.Background(), -1); !errors.Is(err, jobs.ErrClosed) {
			t.Fatalf("Send after Close = %v, want ErrClosed", err)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for _, s := range []string{"wait", "drop-newest", "drop-oldest"} {
		p, err := jobs.ParsePolicy(s)
		if err != nil || p.String() != s {
			t.Errorf("ParsePolicy(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := jobs.ParsePolicy("drop-all"); !errors.Is(err, jobs.ErrInvalidPolicy) {
		t.Errorf("ParsePolicy(drop-all) = %v", err)
	}
}
