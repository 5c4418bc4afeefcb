package outbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrUnroutable is the error of a message RabbitMQ returned because no
// queue is bound to receive it (a mandatory publish that went nowhere).
var ErrUnroutable = errors.New("amqp: message unroutable")

// ErrNoConfirm is the error of a publish the broker did not confirm in
// time; the message may or may not have arrived, so it is sent again.
var ErrNoConfirm = errors.New("amqp: no publisher confirm")

// AMQPConfig says where messages go. With Exchange empty each topic is its
// own exchange (named after the topic); otherwise every message goes to
// Exchange with its topic as the routing key.
type AMQPConfig struct {
	Exchange     string // "": an exchange per topic
	ExchangeKind string // kind of the exchanges declared: "topic"
	// NoDeclare skips declaring exchanges (durable, of ExchangeKind) when
	// they are managed elsewhere.
	NoDeclare bool
	// ConfirmTimeout bounds the wait for the broker's confirm (the relay's
	// PublishTimeout bounds it too): 5 s. A confirm that does not come is a
	// failed attempt, and the connection is dropped so the next attempt
	// starts on a fresh one.
	ConfirmTimeout time.Duration
	DialTimeout    time.Duration // 5 s
	Heartbeat      time.Duration // 10 s: how soon a dead peer is noticed
}

// AMQP publishes to RabbitMQ (AMQP 0-9-1) with publisher confirms: a message
// counts as sent only when the broker has confirmed it, and a mandatory
// publish that no queue receives is a failure naming the exchange and routing
// key. Messages are persistent; message_id is the outbox id (for consumer
// de-duplication) and the message's headers (traceparent among them) travel
// as AMQP headers with Canal-Topic and Canal-Key.
//
// It holds one connection and one confirming channel, dialled on first use
// and again after the broker closes them (a restart, a cut connection): the
// attempt that meets a dead connection fails and the relay's retry dials
// anew, so the relay's backoff covers the gap.
type AMQP struct {
	url  string
	show string // the URL as it may be shown
	cfg  AMQPConfig

	// sem guards sess and closed: a one-slot lock that a waiting Publish
	// can abandon when its ctx ends (dialling can take a while).
	sem    chan struct{}
	sess   *amqpSession
	closed bool // by Close: no more dialling
}

// DialAMQP returns a publisher to rawURL (amqp:// or amqps://) after
// checking that the broker answers. Close closes its connection.
func DialAMQP(ctx context.Context, rawURL string, cfg AMQPConfig) (*AMQP, error) {
	p, err := OpenAMQP(rawURL, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := p.session(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// OpenAMQP returns a publisher to rawURL without connecting: it connects
// at its first Publish, and again after any loss. A broker that is down
// at start is then an outage like any other (see IsUnreachable).
func OpenAMQP(rawURL string, cfg AMQPConfig) (*AMQP, error) {
	if cfg.ExchangeKind == "" {
		cfg.ExchangeKind = amqp.ExchangeTopic
	}
	if cfg.ConfirmTimeout <= 0 {
		cfg.ConfirmTimeout = 5 * time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
		return nil, fmt.Errorf("%w: AMQP URL %s: want amqp://user:password@host:port/vhost", ErrInvalidConfig, RedactURL(rawURL))
	}
	return &AMQP{url: rawURL, show: RedactURL(rawURL), cfg: cfg, sem: make(chan struct{}, 1)}, nil
}

// Target returns where a topic's messages go: exchange and routing key.
func (p *AMQP) Target(topic string) (exchange, routingKey string) {
	if p.cfg.Exchange != "" {
		return p.cfg.Exchange, topic
	}
	return topic, topic
}

// String describes the publisher without secrets.
func (p *AMQP) String() string {
	if p.cfg.Exchange != "" {
		return fmt.Sprintf("RabbitMQ %s exchange %s", p.show, p.cfg.Exchange)
	}
	return fmt.Sprintf("RabbitMQ %s exchange per topic", p.show)
}

// Publish sends d and waits for the broker's confirm. A message no queue
// takes (ErrUnroutable) is a MessageError; any other failure is the
// broker's (a destination error: the message waits, see Named).
func (p *AMQP) Publish(ctx context.Context, d Delivery) error {
	exchange, key := p.Target(d.Topic)
	s, err := p.session(ctx)
	if err != nil {
		return err
	}
	if err := s.declare(ctx, p, exchange); err != nil {
		p.drop(s)
		return fmt.Errorf("amqp %s: declare exchange %q: %w", p.show, exchange, redactError(err, p.url))
	}
	headers := amqp.Table{"Canal-Topic": d.Topic}
	if d.Key != "" {
		headers["Canal-Key"] = d.Key
	}
	for k, v := range d.Headers {
		headers[k] = v
	}
	msg := amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    d.ID,
		Timestamp:    d.CreatedAt,
		Type:         d.Topic,
		AppId:        "canal",
		Headers:      headers,
		Body:         d.Payload,
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, p.cfg.ConfirmTimeout)
	defer cancel()
	dc, err := s.ch.PublishWithDeferredConfirmWithContext(wctx, exchange, key, true, false, msg)
	if err != nil {
		p.drop(s)
		return fmt.Errorf("amqp %s: publish to exchange %q: %w", p.show, exchange, redactError(err, p.url))
	}
	acked, err := dc.WaitContext(wctx)
	if err != nil {
		// No confirm: the channel may be wedged (a broker that stopped
		// answering); a fresh connection is the only way to know.
		lost := s.closed()
		p.drop(s)
		if lost {
			return fmt.Errorf("amqp %s: connection lost before the confirm of message %s: %w", p.show, d.ID, ErrNoConfirm)
		}
		return fmt.Errorf("amqp %s: message %s to exchange %q: %w after %s", p.show, d.ID, exchange, ErrNoConfirm, time.Since(start).Round(time.Millisecond))
	}
	if !acked {
		// amqp091 also resolves pending confirms as nacks when the
		// channel closes: tell the two apart for whoever reads the error.
		if s.closed() {
			p.drop(s)
			return fmt.Errorf("amqp %s: connection lost before the confirm of message %s: %w", p.show, d.ID, ErrNoConfirm)
		}
		return fmt.Errorf("amqp %s: broker refused (nack) message %s to exchange %q", p.show, d.ID, exchange)
	}
	// The broker sends basic.return before the ack of the same message.
	r, ok, err := s.returned(d.ID)
	if err != nil {
		return fmt.Errorf("amqp %s: message %s: %w", p.show, d.ID, err)
	}
	if ok {
		// The broker is up and no queue takes the topic: a failed
		// attempt of the message (MessageError), not an outage.
		return MessageError(fmt.Errorf("%w: exchange %q routing key %q: %d %s (bind a queue to receive topic %s)",
			ErrUnroutable, r.Exchange, r.RoutingKey, r.ReplyCode, r.ReplyText, d.Topic))
	}
	return nil
}

// Close closes the connection; a Publish after it fails with amqp.ErrClosed.
func (p *AMQP) Close() error {
	p.sem <- struct{}{}
	defer func() { <-p.sem }()
	p.closed = true
	if p.sess == nil {
		return nil
	}
	err := p.sess.close()
	p.sess = nil
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}

// session returns the live session, dialling one if there is none.
func (p *AMQP) session(ctx context.Context) (*amqpSession, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("amqp %s: waiting for the connection: %w", p.show, ctx.Err())
	}
	defer func() { <-p.sem }()
	if p.closed {
		// A late Publish must not dial a connection no one would close.
		return nil, fmt.Errorf("amqp %s: publisher closed: %w", p.show, amqp.ErrClosed)
	}
	if p.sess != nil && !p.sess.closed() {
		return p.sess, nil
	}
	if p.sess != nil {
		_ = p.sess.close()
		p.sess = nil
	}
	s, err := dialAMQPSession(ctx, p.url, p.cfg)
	if err != nil {
		return nil, fmt.Errorf("amqp connect %s: %w", p.show, redactError(err, p.url))
	}
	p.sess = s
	return s, nil
}

// drop closes s so that the next Publish dials again, unless a newer
// session already replaced it.
func (p *AMQP) drop(s *amqpSession) {
	p.sem <- struct{}{}
	if p.sess == s {
		p.sess = nil
	}
	<-p.sem
	_ = s.close()
}

// amqpSession is one connection and its confirming channel, with the
// goroutine that owns the record of returned messages.
type amqpSession struct {
	conn *amqp.Connection
	ch   *amqp.Channel

	declMu   sync.Mutex
	declared map[string]bool

	ask  chan amqpAsk  // to the returns goroutine
	done chan struct{} // closed when the returns goroutine ends
}

// amqpAsk asks the returns goroutine whether message id was returned.
type amqpAsk struct {
	id    string
	reply chan amqpReturn
}

type amqpReturn struct {
	amqp.Return
	ok bool
}

func dialAMQPSession(ctx context.Context, rawURL string, cfg AMQPConfig) (*amqpSession, error) {
	dialCfg := amqp.Config{
		Heartbeat: cfg.Heartbeat,
		Locale:    "en_US",
		Properties: amqp.Table{
			"connection_name": "canal-outbox",
		},
		// The dial honours both ctx and DialTimeout.
		Dial: func(network, addr string) (net.Conn, error) {
			dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
			defer cancel()
			var d net.Dialer
			c, err := d.DialContext(dctx, network, addr)
			if err != nil {
				return nil, err
			}
			// The handshake is bounded too; amqp091 clears the deadline
			// once the connection is open.
			if err := c.SetDeadline(time.Now().Add(cfg.DialTimeout)); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
	}
	conn, err := amqp.DialConfig(rawURL, dialCfg)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		conn.Close()
		return nil, fmt.Errorf("enable publisher confirms: %w", err)
	}
	s := &amqpSession{
		conn:     conn,
		ch:       ch,
		declared: map[string]bool{},
		ask:      make(chan amqpAsk),
		done:     make(chan struct{}),
	}
	// Unbuffered: amqp091 hands over a return before it reads the ack that
	// follows it, so once a publish is acked its return (if any) is already
	// in the goroutine's hands and the ask that follows sees it.
	returns := ch.NotifyReturn(make(chan amqp.Return))
	go s.ownReturns(returns)
	return s, nil
}

// ownReturns keeps the returned messages until their publisher asks, and
// ends when the channel closes (amqp091 closes returns then).
func (s *amqpSession) ownReturns(returns <-chan amqp.Return) {
	defer close(s.done)
	got := map[string]amqp.Return{}
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				return
			}
			got[r.MessageId] = r
		case a := <-s.ask:
			r, ok := got[a.id]
			delete(got, a.id)
			a.reply <- amqpReturn{Return: r, ok: ok}
		}
	}
}

// returned reports whether the broker returned message id.
func (s *amqpSession) returned(id string) (amqp.Return, bool, error) {
	a := amqpAsk{id: id, reply: make(chan amqpReturn, 1)}
	select {
	case s.ask <- a:
		r := <-a.reply
		return r.Return, r.ok, nil
	case <-s.done:
		// The channel closed right after the ack and its record of
		// returns went with it: whether the message was routed is
		// unknown, so the relay sends it again.
		return amqp.Return{}, false, fmt.Errorf("%w: channel closed before routing could be checked", ErrNoConfirm)
	}
}

// declare declares exchange once per session. amqp091's declare takes no
// context, so it runs aside: when ctx ends first the caller drops the
// session, which ends the declare too.
func (s *amqpSession) declare(ctx context.Context, p *AMQP, exchange string) error {
	if p.cfg.NoDeclare || exchange == "" {
		return nil
	}
	s.declMu.Lock()
	defer s.declMu.Unlock()
	if s.declared[exchange] {
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		errc <- s.ch.ExchangeDeclare(exchange, p.cfg.ExchangeKind, true, false, false, false, nil)
	}()
	select {
	case err := <-errc:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	s.declared[exchange] = true
	return nil
}

func (s *amqpSession) closed() bool { return s.conn.IsClosed() || s.ch.IsClosed() }

// close asks the broker to close the connection but waits at most a second
// for its answer: a broker that stopped answering is why we close.
func (s *amqpSession) close() error { return s.conn.CloseDeadline(time.Now().Add(time.Second)) }
