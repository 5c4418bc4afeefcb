package outbox

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
	amqp "github.com/rabbitmq/amqp091-go"
	"gorm.io/gorm"
)

// amqpConsume binds a private queue to exchange (declared as the publisher
// declares it) and returns what arrives. Exchange and queue are deleted when
// the test ends: the broker is shared.
func amqpConsume(t testing.TB, rawURL, exchange, bindKey string) <-chan amqp.Delivery {
	t.Helper()
	conn, err := amqp.Dial(rawURL)
	if err != nil {
		t.Fatalf("consumer dial: %v", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare(uniqueName("canaltest.q."), false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, bindKey, exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	msgs, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ch.ExchangeDelete(exchange, false, false)
		conn.Close()
	})
	return msgs
}

// deleteExchange removes an exchange the publisher declared.
func deleteExchange(t testing.TB, rawURL, exchange string) {
	t.Cleanup(func() {
		conn, err := amqp.Dial(rawURL)
		if err != nil {
			return
		}
		defer conn.Close()
		if ch, err := conn.Channel(); err == nil {
			_ = ch.ExchangeDelete(exchange, false, false)
		}
	})
}

func withHost(t testing.TB, raw, host string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = host
	return u.String()
}

func receive(t testing.TB, msgs <-chan amqp.Delivery) amqp.Delivery {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message arrived within 10s")
		return amqp.Delivery{}
	}
}

func TestAMQPPublisher(t *testing.T) {
	raw := testenv.AMQPURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	single := uniqueName("canaltest.x.")
	for _, tc := range []struct {
		name     string
		cfg      AMQPConfig
		exchange func(topic string) string
	}{
		{"exchange per topic", AMQPConfig{}, func(topic string) string { return topic }},
		{"one exchange", AMQPConfig{Exchange: single}, func(string) string { return single }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := uniqueName("canaltest.order.")
			msgs := amqpConsume(t, raw, tc.exchange(topic), "#")
			p, err := DialAMQP(ctx, raw, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			d := Delivery{ID: "018f-one", Topic: topic, Key: "order-7", Payload: []byte(`{"n":1}`),
				Headers:   map[string]string{HeaderTraceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
				CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
			if err := p.Publish(ctx, d); err != nil {
				t.Fatal(err)
			}
			m := receive(t, msgs)
			checks := []struct {
				what      string
				got, want any
			}{
				{"exchange", m.Exchange, tc.exchange(topic)},
				{"routing key", m.RoutingKey, topic},
				{"message_id", m.MessageId, d.ID},
				{"delivery mode", m.DeliveryMode, amqp.Persistent},
				{"content type", m.ContentType, "application/json"},
				{"body", string(m.Body), `{"n":1}`},
				{"traceparent", m.Headers[HeaderTraceparent], d.Headers[HeaderTraceparent]},
				{"Canal-Key", m.Headers["Canal-Key"], "order-7"},
				{"Canal-Topic", m.Headers["Canal-Topic"], topic},
				{"timestamp", m.Timestamp.UTC(), d.CreatedAt},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
				}
			}
		})
	}
}

// An unroutable message fails its attempt with an error naming the exchange
// and routing key, in the attempt history as well.
func TestAMQPUnroutable(t *testing.T) {
	raw := testenv.AMQPURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exchange := uniqueName("canaltest.x.")
	deleteExchange(t, raw, exchange)
	p, err := DialAMQP(ctx, raw, AMQPConfig{Exchange: exchange})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	err = p.Publish(ctx, Delivery{ID: "018f-lost", Topic: "nobody.listens", Payload: []byte(`{}`)})
	if !errors.Is(err, ErrUnroutable) {
		t.Fatalf("err = %v, want ErrUnroutable", err)
	}
	for _, part := range []string{`exchange "` + exchange + `"`, `routing key "nobody.listens"`, "NO_ROUTE"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not name %s", err, part)
		}
	}

	db := testenv.SQLite(t)
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.MaxAttempts = 2
	r := newRelay(t, db, cfg)
	r.RegisterDefault(p)
	ids := addKeyed(t, r, "nobody.listens", 1, 1)["k000"]
	runRelay(t, r)
	testenv.Eventually(t, 15*time.Second, "message dead after 2 unroutable attempts", func() bool {
		return statusOf(t, r, ids[0]) == StatusDead
	})
	rec := mustGet(t, r, ids[0])
	if len(rec.AttemptLog) != 2 {
		t.Fatalf("attempt log has %d attempts, want 2", len(rec.AttemptLog))
	}
	userinfo := "@"
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		userinfo = u.User.String()
	}
	for _, a := range rec.AttemptLog {
		if !strings.Contains(a.Error, `exchange "`+exchange+`" routing key "nobody.listens"`) {
			t.Errorf("attempt %d error %q does not name the exchange and routing key", a.Number, a.Error)
		}
		if strings.Contains(a.Error, userinfo) {
			t.Errorf("attempt %d error %q shows the URL's credentials", a.Number, a.Error)
		}
	}
}

// A confirm that never comes (the broker's answers held back) fails the
// attempt; once answers flow again the retry delivers the message.
func TestAMQPConfirmNeverComes(t *testing.T) {
	raw := testenv.AMQPURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := uniqueName("canaltest.confirm.")
	msgs := amqpConsume(t, raw, topic, "#")
	proxy := newTCPProxy(t, mustHost(t, raw))
	p, err := DialAMQP(ctx, withHost(t, raw, proxy.Addr()), AMQPConfig{ConfirmTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	db := testenv.SQLite(t)
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.MaxAttempts = 100
	cfg.BackoffBase, cfg.BackoffMax = 50*time.Millisecond, 200*time.Millisecond
	r := newRelay(t, db, cfg)
	r.RegisterDefault(p)
	runRelay(t, r)
	// A first message declares the exchange while answers flow.
	first := addKeyed(t, r, topic, 1, 1)["k000"][0]
	if m := receive(t, msgs); m.MessageId != first {
		t.Fatalf("got %s, want %s", m.MessageId, first)
	}
	testenv.Eventually(t, 10*time.Second, "first message dispatched", func() bool {
		return statusOf(t, r, first) == StatusDispatched
	})

	proxy.Pause()
	id := addKeyed(t, r, topic, 1, 1)["k000"][0]
	// A broker that does not answer is down, not the message: it waits
	// with the cause recorded and no failure counted.
	testenv.Eventually(t, 20*time.Second, "the message waits for the confirm", func() bool {
		return strings.Contains(mustGet(t, r, id).LastError, ErrNoConfirm.Error())
	})
	time.Sleep(time.Second) // more tries while answers are held
	rec := mustGet(t, r, id)
	if rec.Status == StatusDispatched {
		t.Fatal("dispatched without a confirm")
	}
	if rec.Failures != 0 {
		t.Errorf("failures = %d while the broker did not answer, want 0 (a destination error spends no attempt)", rec.Failures)
	}
	proxy.Resume()
	testenv.Eventually(t, 20*time.Second, "message dispatched once answers flow", func() bool {
		return statusOf(t, r, id) == StatusDispatched
	})
	// The broker may have routed the unconfirmed copy too; the consumer
	// tells copies apart by message_id.
	seen := map[string]bool{}
	for !seen[id] {
		seen[receive(t, msgs).MessageId] = true
	}
}

func mustHost(t testing.TB, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// Thousands of messages through the relay reach a de-duplicating consumer
// once each, in per-key order, although the connection is cut twice.
func TestAMQPRelayDeliversAllAcrossCuts(t *testing.T) {
	raw := testenv.AMQPURL(t)
	dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
		defer cancel()
		const n, keys = 3000, 100
		topic := uniqueName("canaltest.relay.")
		msgs := amqpConsume(t, raw, topic, "#")
		proxy := newTCPProxy(t, mustHost(t, raw))
		p, err := DialAMQP(ctx, withHost(t, raw, proxy.Addr()), AMQPConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()

		cfg := testConfig()
		cfg.Workers = 32
		cfg.MaxAttempts = 1000
		cfg.BackoffBase, cfg.BackoffMax = 5*time.Millisecond, 100*time.Millisecond
		r := newRelay(t, db, cfg)
		r.RegisterDefault(p)
		want := addKeyed(t, r, topic, keys, n)

		got := newConsumed()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for got.unique() < n {
				select {
				case m := <-msgs:
					key, _ := m.Headers["Canal-Key"].(string)
					got.add(m.MessageId, key)
				case <-ctx.Done():
					return
				}
			}
		}()
		runRelay(t, r)
		for _, at := range []int{n / 3, 2 * n / 3} {
			testenv.Eventually(t, 200*time.Second, "consumer got a third more", func() bool { return got.unique() >= at })
			proxy.Cut()
		}
		<-done
		if err := got.check(want); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d messages, %d copies arrived (duplicates from cut connections are dropped by id)", n, got.copies)
	})
}

// A publish after Close fails instead of dialling a new connection that no
// one would close (the relay may still be publishing when its owner gives up
// waiting at shutdown and closes the publishers).
func TestAMQPPublishAfterCloseDoesNotReconnect(t *testing.T) {
	raw := testenv.AMQPURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exchange := uniqueName("canaltest.x.")
	deleteExchange(t, raw, exchange)
	p, err := DialAMQP(ctx, raw, AMQPConfig{Exchange: exchange})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	err = p.Publish(ctx, Delivery{ID: "018f-late", Topic: "late", Payload: []byte(`{}`)})
	if !errors.Is(err, amqp.ErrClosed) {
		t.Errorf("Publish after Close = %v, want amqp.ErrClosed", err)
	}
	if p.sess != nil {
		p.sess.close()
		t.Error("Publish after Close opened a new connection")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// Many publishes share the one confirming channel at once, half of them to a
// routing key no queue is bound to: each learns its own fate (confirms and
// returns matched to the right message), and the consumer gets exactly the
// routable half.
func TestAMQPConcurrentConfirmsAndReturnsMatchTheirMessage(t *testing.T) {
	raw := testenv.AMQPURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	exchange := uniqueName("canaltest.x.")
	msgs := amqpConsume(t, raw, exchange, "bound.#")
	p, err := DialAMQP(ctx, raw, AMQPConfig{Exchange: exchange})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	const n = 400
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		topic := "bound.t"
		if i%2 == 1 {
			topic = "unbound.t"
		}
		wg.Go(func() {
			errs[i] = p.Publish(ctx, Delivery{ID: fmt.Sprintf("018f-%04d", i), Topic: topic, Payload: []byte(`{}`)})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 0 && err != nil {
			t.Errorf("routable message %d: %v", i, err)
		}
		if i%2 == 1 && !errors.Is(err, ErrUnroutable) {
			t.Errorf("unroutable message %d: err = %v, want ErrUnroutable", i, err)
		}
	}
	got := map[string]bool{}
	for len(got) < n/2 {
		m := receive(t, msgs)
		var i int
		if _, err := fmt.Sscanf(m.MessageId, "018f-%04d", &i); err != nil || i%2 == 1 {
			t.Fatalf("consumer got %q, which is not a routable message", m.MessageId)
		}
		got[m.MessageId] = true
	}
}
