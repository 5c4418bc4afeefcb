package clusterevents

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/nats-io/nats.go"
)

// NATS carries events on one core NATS subject (no stream: a live view
// needs no history).
type NATS struct {
	nc      *nats.Conn
	subject string
}

// NewNATS returns the NATS transport on subject over nc, which its owner
// closes after the bridge stops.
func NewNATS(nc *nats.Conn, subject string) *NATS { return &NATS{nc: nc, subject: subject} }

// Subject is the events' subject of the Canal system named by scope (for
// example its database and schema): canal.events.<scope>, with every
// character a subject may not hold replaced by '_'.
func Subject(scope string) string {
	return "canal.events." + unsafeSubject.ReplaceAllString(scope, "_")
}

var unsafeSubject = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// Publish sends payload on the subject.
func (n *NATS) Publish(_ context.Context, payload []byte) error {
	if err := n.nc.Publish(n.subject, payload); err != nil {
		return fmt.Errorf("nats publish: %w", err)
	}
	return nil
}

// Listen subscribes to the subject and delivers every payload until ctx
// ends. NATS itself reconnects; a message it drops for a slow reader is
// lost (a live view resyncs from the database).
func (n *NATS) Listen(ctx context.Context, deliver func([]byte)) error {
	ch := make(chan *nats.Msg, 1024)
	sub, err := n.nc.ChanSubscribe(n.subject, ch)
	if err != nil {
		return fmt.Errorf("nats subscribe: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// The subscription is in place once the server has it.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a deadline is required
	err = n.nc.FlushWithContext(fctx)
	cancel()
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("nats subscribe: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			deliver(m.Data)
		}
	}
}
