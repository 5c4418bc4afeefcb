package demo

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

func setup(t *testing.T) (*gorm.DB, *outbox.Relay, *Orders) {
	t.Helper()
	ctx := context.Background()
	db := testenv.SQLite(t)
	if err := outbox.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	r, err := outbox.New(db, outbox.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return db, r, NewOrders(r, nil, slog.New(slog.DiscardHandler))
}

func TestPlaceOrderWritesOrderAndMessageTogether(t *testing.T) {
	db, r, o := setup(t)
	ctx := context.Background()
	orderID, msgID, err := o.PlaceOrder(ctx, "  ada ", 1250)
	if err != nil {
		t.Fatal(err)
	}
	var order Order
	if err := db.Take(&order, "id = ?", orderID).Error; err != nil {
		t.Fatal(err)
	}
	if order.Customer != "ada" || order.AmountCents != 1250 {
		t.Errorf("order = %+v", order)
	}
	rec, err := r.Get(ctx, msgID)
	if err != nil {
		t.Fatal(err)
	}
	var p OrderPlaced
	if err := json.Unmarshal(rec.Payload, &p); err != nil {
		t.Fatal(err)
	}
	if rec.Topic != TopicOrderPlaced || rec.Key != "customer:ada" || p.OrderID != orderID || p.AmountCents != 1250 {
		t.Errorf("message = %+v, payload %+v", rec, p)
	}
}

func TestPlaceOrderRejectsBadInputAndWritesNothing(t *testing.T) {
	tests := []struct {
		name     string
		customer string
		amount   int64
	}{
		{"empty customer", "  ", 100},
		{"long customer", strings.Repeat("x", MaxCustomerLen+1), 100},
		{"zero amount", "ada", 0},
		{"negative amount", "ada", -5},
		{"huge amount", "ada", MaxAmountCents + 1},
		// PostgreSQL refuses NUL and invalid UTF-8 in text: a driver error
		// (500) instead of a bad-order error.
		{"NUL in customer", "a\x00b", 100},
		{"invalid UTF-8 customer", "a\xffb", 100},
		{"control character", "a\nb", 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, _, o := setup(t)
			if _, _, err := o.PlaceOrder(context.Background(), tc.customer, tc.amount); !errors.Is(err, ErrInvalidOrder) {
				t.Fatalf("err = %v, want ErrInvalidOrder", err)
			}
			var n int64
			db.Model(&Order{}).Count(&n)
			if n != 0 {
				t.Errorf("%d orders written", n)
			}
		})
	}
}

// When the message cannot be added the order is rolled back with it.
func TestPlaceOrderIsAtomic(t *testing.T) {
	db, _, o := setup(t)
	// Outbox messages live in the queue engine's table.
	if err := db.Migrator().DropTable("canal_queue_items"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := o.PlaceOrder(context.Background(), "ada", 100); err == nil {
		t.Fatal("no error with the outbox table gone")
	}
	var n int64
	db.Model(&Order{}).Count(&n)
	if n != 0 {
		t.Errorf("order kept without its message: %d", n)
	}
}

func TestGeneratePlacesOrdersUntilStopped(t *testing.T) {
	db, _, o := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Generate(ctx, 5*time.Millisecond, rand.New(rand.NewPCG(1, 2))); close(done) }()
	count := func() int64 {
		var n int64
		db.Model(&Order{}).Count(&n)
		return n
	}
	testenv.Eventually(t, 60*time.Second, "orders placed", func() bool { return count() >= 3 })
	cancel()
	<-done
}
