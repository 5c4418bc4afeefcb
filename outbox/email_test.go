package outbox

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func TestEmailFailsAtItsRate(t *testing.T) {
	tests := []struct {
		rate     float64
		min, max int // failures out of 1000
	}{
		{0, 0, 0},
		{1, 1000, 1000},
		{0.1, 60, 140},
	}
	for _, tc := range tests {
		e := NewEmail(0, tc.rate, rand.New(rand.NewPCG(1, 2)), quietLogger())
		fails := 0
		for range 1000 {
			if err := e.Publish(context.Background(), Delivery{ID: "x"}); errors.Is(err, ErrSimulated) {
				fails++
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if fails < tc.min || fails > tc.max {
			t.Errorf("rate %.1f: %d failures of 1000, want %d..%d", tc.rate, fails, tc.min, tc.max)
		}
	}
}

func TestEmailHonoursContext(t *testing.T) {
	e := NewEmail(time.Hour, 0, rand.New(rand.NewPCG(1, 2)), quietLogger())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Publish(ctx, Delivery{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestFanoutFailsIfAnyFails(t *testing.T) {
	ok1, ok2 := &recorder{}, &recorder{}
	bad := PublisherFunc(func(context.Context, Delivery) error { return ErrSimulated })
	if err := Fanout(ok1, ok2).Publish(context.Background(), Delivery{ID: "a"}); err != nil || ok1.count() != 1 || ok2.count() != 1 {
		t.Fatalf("all ok: err %v, counts %d %d", err, ok1.count(), ok2.count())
	}
	if err := Fanout(ok1, bad, ok2).Publish(context.Background(), Delivery{ID: "b"}); !errors.Is(err, ErrSimulated) || ok2.count() != 2 {
		t.Fatalf("one bad: err %v, later publisher count %d", err, ok2.count())
	}
}
