package outbox

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
	amqp "github.com/rabbitmq/amqp091-go"
	"gorm.io/gorm"
)

// BenchmarkPublisherThroughput drains a backlog of b.N committed messages
// (100 keys) through the relay to each publisher and reports messages per
// second, from the relay's start until the last one is sent: the no-op
// publisher is the relay's own ceiling, RabbitMQ (confirmed, persistent) and
// Redis Streams (XADD with the idempotence guard) are the real brokers.
// SQLite as the program opens it; default relay config (32 workers).
func BenchmarkPublisherThroughput(b *testing.B) {
	pubs := []struct {
		name string
		make func(b *testing.B, topic string) Publisher
	}{
		{"noop", func(*testing.B, string) Publisher {
			return PublisherFunc(func(context.Context, Delivery) error { return nil })
		}},
		{"amqp", func(b *testing.B, topic string) Publisher {
			raw := testenv.AMQPURL(b)
			// A durable queue holds what arrives, as a real consumer's
			// would; it is deleted with the exchange afterwards.
			conn, err := amqp.Dial(raw)
			if err != nil {
				b.Fatal(err)
			}
			ch, err := conn.Channel()
			if err != nil {
				b.Fatal(err)
			}
			if err := ch.ExchangeDeclare(topic, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
				b.Fatal(err)
			}
			q, err := ch.QueueDeclare(topic, true, false, false, false, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := ch.QueueBind(q.Name, "#", topic, false, nil); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				_, _ = ch.QueueDelete(q.Name, false, false, false)
				_ = ch.ExchangeDelete(topic, false, false)
				conn.Close()
			})
			p, err := DialAMQP(context.Background(), raw, AMQPConfig{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close() })
			return p
		}},
		{"redis", func(b *testing.B, topic string) Publisher {
			raw := testenv.RedisURL(b)
			prefix := uniqueName("canaltest:") + ":"
			redisClient(b, raw, prefix) // deletes the prefix's keys afterwards
			p, err := DialRedisStreams(context.Background(), raw, RedisStreamsConfig{Prefix: prefix})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close() })
			return p
		}},
	}
	for _, pc := range pubs {
		b.Run(pc.name, func(b *testing.B) {
			db := benchSQLite(b)
			if err := Migrate(context.Background(), db); err != nil {
				b.Fatal(err)
			}
			topic := uniqueName("canaltest.bench.")
			p := pc.make(b, topic)
			benchDrain(b, db, topic, p)
		})
	}
}

// benchDrain commits b.N messages, then times the relay delivering them all
// to p.
func benchDrain(b *testing.B, db *gorm.DB, topic string, p Publisher) {
	ctx := context.Background()
	r := newRelay(b, db, Config{Logger: quietLogger()})
	var sent atomic.Int64
	r.RegisterDefault(PublisherFunc(func(ctx context.Context, d Delivery) error {
		if err := p.Publish(ctx, d); err != nil {
			return err
		}
		sent.Add(1)
		return nil
	}))
	for done := 0; done < b.N; {
		err := db.Transaction(func(tx *gorm.DB) error {
			for range min(500, b.N-done) {
				if _, err := Add(ctx, tx, Message{Topic: topic, Key: fmt.Sprintf("k%d", done%100), Payload: map[string]int{"n": done}}); err != nil {
					return err
				}
				done++
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	stop := runRelay(b, r)
	for sent.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	stop()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
