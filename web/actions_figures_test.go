package web_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/templates"
	"github.com/canalhq/canal/testenv"
	"github.com/canalhq/canal/web"
	"gorm.io/gorm"
)

// TestActionsChangeEveryFigureAtOnce: a dead letter retried by hand leaves
// the failure count, the failure list and the dead count at once, on every
// view (they share the hub's view), not at the next re-read of the stored
// windows, which this hub does only every hour.
func TestActionsChangeEveryFigureAtOnce(t *testing.T) {
	ctx := context.Background()
	db := testenv.SQLite(t)
	if err := outbox.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	r, err := outbox.New(db, outbox.Config{PollInterval: 20 * time.Millisecond, MaxAttempts: 1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	var up atomic.Bool
	r.RegisterDefault(outbox.PublisherFunc(func(context.Context, outbox.Delivery) error {
		if up.Load() {
			return nil
		}
		return outbox.MessageError(errors.New("receiver down"))
	}))
	h := web.NewHub(web.HubConfig{OutboxEvents: r.Events(), OutboxHistory: r, ResyncEvery: time.Hour, Logger: log})
	runCtx, cancel := context.WithCancel(ctx)
	relayDone, hubDone := make(chan error, 1), make(chan struct{})
	go func() { relayDone <- r.Run(runCtx) }()
	go func() { h.Run(runCtx); close(hubDone) }()
	t.Cleanup(func() {
		cancel()
		<-hubDone
		<-relayDone
	})
	var id string
	if err := r.Transaction(ctx, func(tx *gorm.DB) error {
		id, err = outbox.Add(ctx, tx, outbox.Message{Topic: "order.placed", Payload: map[string]int{"n": 1}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	view := func() templates.View {
		v, err := h.View(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	testenv.Eventually(t, 60*time.Second, "the dead letter on every figure", func() bool {
		v := view()
		return v.FailureCount == 1 && len(v.Failures) == 1 && v.Outbox != nil && v.Outbox.Dead == 1
	})
	up.Store(true)
	if _, err := r.Retry(ctx, id); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "the retried letter gone from every figure", func() bool {
		v := view()
		return v.FailureCount == 0 && len(v.Failures) == 0 && v.Outbox != nil && v.Outbox.Dead == 0 &&
			v.Series.Totals.Failures == 0 && len(v.Alarms()) == 0
	})
}
