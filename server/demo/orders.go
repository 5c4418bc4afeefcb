// Package demo is the example domain of Canal's default demo: orders whose
// placement writes the order and its "order.placed" outbox message in one
// transaction, and a generator that places orders at a steady rate so the
// dashboard has something to show.
package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/canalhq/canal/internal/migratelock"
	"github.com/canalhq/canal/internal/outage"
	"github.com/canalhq/canal/outbox"
	"gorm.io/gorm"
)

// TopicOrderPlaced is the topic of the message every order implies.
const TopicOrderPlaced = "order.placed"

// ErrInvalidOrder is returned for an order that breaks the rules below.
var ErrInvalidOrder = errors.New("demo: invalid order")

// Order is a placed order. Amounts are in cents, never floats.
type Order struct {
	ID          string    `gorm:"column:id;size:36;primaryKey" json:"id"`
	Customer    string    `gorm:"column:customer;size:100;not null" json:"customer"`
	AmountCents int64     `gorm:"column:amount_cents;not null" json:"amountCents"`
	CreatedAt   time.Time `gorm:"column:created_at;not null" json:"createdAt"`
}

// TableName keeps the demo's table apart from the product's own.
func (Order) TableName() string { return "demo_orders" }

// OrderPlaced is the payload of an order.placed message.
type OrderPlaced struct {
	OrderID     string `json:"orderId"`
	Customer    string `json:"customer"`
	AmountCents int64  `json:"amountCents"`
}

// Migrate creates the orders table.
func Migrate(ctx context.Context, db *gorm.DB) error {
	err := migratelock.Do(ctx, db, func(ctx context.Context) error {
		return db.WithContext(ctx).AutoMigrate(&Order{})
	})
	if err != nil {
		return fmt.Errorf("demo migrate: %w", err)
	}
	return nil
}

// Transactor runs fn in a transaction that may add outbox messages and wakes
// the relay once it commits; *outbox.Relay is one.
type Transactor interface {
	Transaction(ctx context.Context, fn func(tx *gorm.DB) error) error
}

// Orders places orders.
type Orders struct {
	tx    Transactor
	clock func() time.Time
	log   *slog.Logger
}

// NewOrders returns the order service. clock may be nil for time.Now.
func NewOrders(tx Transactor, clock func() time.Time, log *slog.Logger) *Orders {
	if clock == nil {
		clock = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Orders{tx: tx, clock: clock, log: log}
}

// Limits of a valid order.
const (
	MaxCustomerLen = 100
	MaxAmountCents = 100_000_000 // one million
)

// PlaceOrder stores an order and its order.placed message in one
// transaction: both exist or neither does. The message is keyed by customer,
// so one customer's orders are announced in the order they were placed.
func (o *Orders) PlaceOrder(ctx context.Context, customer string, amountCents int64) (orderID, messageID string, err error) {
	customer, err = checkOrder(customer, amountCents)
	if err != nil {
		return "", "", err
	}
	err = o.tx.Transaction(ctx, func(tx *gorm.DB) error {
		orderID, messageID, err = o.place(ctx, tx, customer, amountCents)
		return err
	})
	if err != nil {
		return "", "", fmt.Errorf("place order: %w", err)
	}
	return orderID, messageID, nil
}

// PlaceOrderTx stores an order and its order.placed message in tx, a
// transaction of Transaction, so that the caller's own write (an
// Idempotency-Key's record) commits with them or not at all.
func (o *Orders) PlaceOrderTx(ctx context.Context, tx *gorm.DB, customer string, amountCents int64) (orderID, messageID string, err error) {
	customer, err = checkOrder(customer, amountCents)
	if err != nil {
		return "", "", err
	}
	orderID, messageID, err = o.place(ctx, tx, customer, amountCents)
	if err != nil {
		return "", "", fmt.Errorf("place order: %w", err)
	}
	return orderID, messageID, nil
}

// Transaction runs fn in a transaction of the orders' Transactor (the
// relay, which wakes once a message added in it commits).
func (o *Orders) Transaction(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return o.tx.Transaction(ctx, fn)
}

// checkOrder returns the customer trimmed, or ErrInvalidOrder.
func checkOrder(customer string, amountCents int64) (string, error) {
	customer = strings.TrimSpace(customer)
	switch {
	case customer == "":
		return "", fmt.Errorf("%w: customer is empty", ErrInvalidOrder)
	case len(customer) > MaxCustomerLen:
		return "", fmt.Errorf("%w: customer longer than %d bytes", ErrInvalidOrder, MaxCustomerLen)
	case !utf8.ValidString(customer) || strings.ContainsFunc(customer, unicode.IsControl):
		// PostgreSQL refuses NUL and invalid UTF-8 in text.
		return "", fmt.Errorf("%w: customer must be UTF-8 text without control characters", ErrInvalidOrder)
	case amountCents <= 0 || amountCents > MaxAmountCents:
		return "", fmt.Errorf("%w: amount must be above 0 and at most %d cents", ErrInvalidOrder, MaxAmountCents)
	}
	return customer, nil
}

// place writes a checked order and its message in tx.
func (o *Orders) place(ctx context.Context, tx *gorm.DB, customer string, amountCents int64) (orderID, messageID string, err error) {
	now := o.clock().UTC()
	order := Order{ID: outbox.NewID(now), Customer: customer, AmountCents: amountCents, CreatedAt: now}
	if err := tx.Create(&order).Error; err != nil {
		return "", "", fmt.Errorf("store order: %w", err)
	}
	messageID, err = outbox.Add(ctx, tx, outbox.Message{
		Topic:   TopicOrderPlaced,
		Key:     "customer:" + customer,
		Payload: OrderPlaced{OrderID: order.ID, Customer: customer, AmountCents: amountCents},
	})
	if err != nil {
		return "", "", err
	}
	return order.ID, messageID, nil
}

var customers = []string{"ada", "grace", "linus", "barbara", "ken", "margaret", "dennis", "frances"}

// Generate places an order every interval (with a random customer and
// amount) until ctx is cancelled. Its owner runs it in a goroutine and
// cancels ctx to stop it; a failed order is logged, not fatal.
func (o *Orders) Generate(ctx context.Context, interval time.Duration, rnd *rand.Rand) {
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		customer := customers[rnd.IntN(len(customers))]
		amount := 100 + rnd.Int64N(50_000)
		// While the database is away the outage monitor says so, once.
		if _, _, err := o.PlaceOrder(ctx, customer, amount); err != nil && ctx.Err() == nil && !outage.Unavailable(err) {
			o.log.Warn("demo order failed", "err", err)
		}
	}
}
