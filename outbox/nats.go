package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream defaults.
const (
	DefaultStream        = "CANAL"
	DefaultSubjectPrefix = "canal"
)

// JetStream publishes each message to the subject <prefix>.<topic> of a
// JetStream stream, with the message id as Nats-Msg-Id: JetStream drops a
// second copy of an id within the stream's duplicate window, so the relay's
// at-least-once redeliveries become exactly-once in the stream.
type JetStream struct {
	js     jetstream.JetStream
	prefix string
	cfg    JetStreamConfig
	nc     *nats.Conn // closed by Close when DialJetStream opened it
	// ready: the stream is known to exist. OpenJetStream leaves it to the
	// first Publish the server answers.
	mu    sync.Mutex
	ready atomic.Bool
}

// JetStreamConfig names the stream; zero fields take the defaults.
type JetStreamConfig struct {
	Stream          string        // CANAL
	SubjectPrefix   string        // canal: subjects canal.<topic>, stream on canal.>
	DuplicateWindow time.Duration // 2 min, JetStream's default
}

// NewJetStream returns a publisher on nc, creating or updating the stream.
func NewJetStream(ctx context.Context, nc *nats.Conn, cfg JetStreamConfig) (*JetStream, error) {
	p, err := newJetStream(nc, cfg)
	if err != nil {
		return nil, err
	}
	if err := p.ensure(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

func newJetStream(nc *nats.Conn, cfg JetStreamConfig) (*JetStream, error) {
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = DefaultSubjectPrefix
	}
	if cfg.DuplicateWindow == 0 {
		cfg.DuplicateWindow = 2 * time.Minute
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &JetStream{js: js, prefix: cfg.SubjectPrefix, cfg: cfg}, nil
}

// ensure creates or updates the stream once.
func (p *JetStream) ensure(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready.Load() {
		return nil
	}
	_, err := p.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       p.cfg.Stream,
		Subjects:   []string{p.cfg.SubjectPrefix + ".>"},
		Duplicates: p.cfg.DuplicateWindow,
		Storage:    jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("jetstream: ensure stream %s: %w", p.cfg.Stream, err)
	}
	p.ready.Store(true)
	return nil
}

// DialJetStream connects to url and returns a publisher that owns the
// connection: Close closes it.
func DialJetStream(ctx context.Context, url string, cfg JetStreamConfig) (*JetStream, error) {
	return dialJetStream(ctx, url, cfg, false)
}

// OpenJetStream is DialJetStream without waiting for the server: the
// connection keeps trying in the background and the stream is made at the
// first Publish the server answers, so a server down at start is an outage
// like any other (see IsUnreachable).
func OpenJetStream(url string, cfg JetStreamConfig) (*JetStream, error) {
	return dialJetStream(context.Background(), url, cfg, true)
}

func dialJetStream(ctx context.Context, url string, cfg JetStreamConfig, lazy bool) (*JetStream, error) {
	nc, err := nats.Connect(url, nats.Name("canal-outbox"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(lazy))
	if err != nil {
		err = fmt.Errorf("nats connect %s: %w", RedactURL(url), err)
		// A server list is comma separated; the client may quote any of it.
		for _, part := range strings.Split(url, ",") {
			err = redactError(err, strings.TrimSpace(part))
		}
		return nil, err
	}
	p, err := newJetStream(nc, cfg)
	if err == nil && !lazy {
		err = p.ensure(ctx)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	p.nc = nc
	return p, nil
}

// Subject returns the subject a topic is published to.
func (p *JetStream) Subject(topic string) string { return p.prefix + "." + topic }

// Publish sends d and waits for the stream's acknowledgement.
func (p *JetStream) Publish(ctx context.Context, d Delivery) error {
	if !p.ready.Load() {
		if err := p.ensure(ctx); err != nil {
			return err
		}
	}
	m := nats.NewMsg(p.Subject(d.Topic))
	m.Data = d.Payload
	for k, v := range d.Headers {
		m.Header.Set(k, v)
	}
	m.Header.Set("Canal-Topic", d.Topic)
	if _, err := p.js.PublishMsg(ctx, m, jetstream.WithMsgID(d.ID)); err != nil {
		err = fmt.Errorf("jetstream publish %s: %w", m.Subject, err)
		// Too big, or a subject the server refuses: this
		// message never goes; anything else is the server's (see Named).
		if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) {
			return MessageError(err)
		}
		return err
	}
	return nil
}

// Close closes the connection if DialJetStream opened it.
func (p *JetStream) Close() error {
	if p.nc == nil {
		return nil
	}
	err := p.nc.Drain()
	if errors.Is(err, nats.ErrConnectionReconnecting) {
		p.nc.Close() // never reached the server (OpenJetStream): nothing to drain
		return nil
	}
	if errors.Is(err, nats.ErrConnectionClosed) {
		return nil
	}
	return err
}
