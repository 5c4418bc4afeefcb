package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/outbox"
	"gorm.io/gorm"
)

// newRelay builds the outbox relay, a client of the queue engine under proc,
// with the publishers the
// configuration names: a webhook, NATS JetStream, both (every message goes to
// each), or, in the demo, a simulated email sender. The returned func closes
// the publishers' connections.
func newRelay(ctx context.Context, db *gorm.DB, cfg Config, proc *queue.Process, log *slog.Logger) (*outbox.Relay, func(), error) {
	closeAll := func() {}
	relay, err := outbox.New(db, outbox.Config{Logger: log, Process: proc}) // it tags its own lines
	if err != nil {
		return nil, closeAll, fmt.Errorf("outbox: %w", err)
	}
	var pubs []outbox.Publisher
	if cfg.WebhookURL != "" {
		wh, err := outbox.NewWebhook(cfg.WebhookURL, nil)
		if err != nil {
			return nil, closeAll, fmt.Errorf("webhook publisher: %w", err)
		}
		pubs = append(pubs, wh)
	}
	if cfg.NATSURL != "" {
		js, err := outbox.DialJetStream(ctx, cfg.NATSURL, outbox.JetStreamConfig{})
		if err != nil {
			return nil, closeAll, fmt.Errorf("NATS publisher %s: %w", cfg.NATSURL, err)
		}
		closeAll = func() { _ = js.Close() }
		pubs = append(pubs, js)
	}
	switch {
	case len(pubs) == 1:
		relay.RegisterDefault(pubs[0])
	case len(pubs) > 1:
		relay.RegisterDefault(outbox.Fanout(pubs...))
	case cfg.Demo:
		relay.RegisterDefault(outbox.NewEmail(80*time.Millisecond, 0.05, nil, log.With("component", "email")))
	default:
		log.Warn("outbox: no publisher configured (-webhook-url, -nats-url): messages will wait, retry and then go dead")
	}
	return relay, closeAll, nil
}
