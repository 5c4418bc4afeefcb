package outbox

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// RabbitMQ and Redis both routed, Redis cut (connections closed, new ones
// refused) while messages flow: RabbitMQ receives each message exactly once
// (no copy for each retry Redis's outage causes), and once Redis is back
// it receives each too, by itself, every key in commit order on both.
func TestFanoutRabbitMQAndRedisWithRedisCut(t *testing.T) {
	amqpURL, redisURL := testenv.AMQPURL(t), testenv.RedisURL(t)
	dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		const n, keys = 200, 10
		topic := uniqueName("canaltest.fanout.")
		msgs := amqpConsume(t, amqpURL, topic, "#")
		ap, err := DialAMQP(ctx, amqpURL, AMQPConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer ap.Close()
		prefix := uniqueName("canaltest:") + ":"
		rc := redisClient(t, redisURL, prefix)
		proxy := newTCPProxy(t, mustHost(t, redisURL))
		rp, err := DialRedisStreams(ctx, withHost(t, redisURL, proxy.Addr()), RedisStreamsConfig{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		defer rp.Close()

		cfg := testConfig()
		cfg.Workers = 16
		cfg.PublishTimeout, cfg.Lease = 2*time.Second, 10*time.Second
		cfg.BackoffBase, cfg.BackoffMax = 5*time.Millisecond, 100*time.Millisecond
		cfg.MaxAttempts = 2 // an outage must spend none
		cfg.BreakerFailures, cfg.BreakerOpen = 3, 100*time.Millisecond
		r := newRelay(t, db, cfg)
		r.Register(topic, Fanout(Named("amqp", ap), Named("redis", rp)))

		got := newConsumed()
		go func() {
			for {
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
		want := addKeyed(t, r, topic, keys, n/2)
		testenv.Eventually(t, 60*time.Second, "the first half on RabbitMQ", func() bool { return got.unique() >= n/2 })

		proxy.Down()
		more := addKeyed(t, r, topic, keys, n/2)
		for k, ids := range more {
			want[k] = append(want[k], ids...)
		}
		// RabbitMQ takes the heads of the keys; the rest of each key
		// waits for its head to reach Redis too.
		testenv.Eventually(t, 30*time.Second, "the redis breaker open", func() bool {
			for _, d := range r.Destinations() {
				if d.Name == "redis" && d.State == BreakerOpen {
					return true
				}
			}
			return false
		})
		time.Sleep(2 * time.Second) // many rounds of the breaker while Redis is away
		got.mu.Lock()
		copies, unique := got.copies, len(got.seen)
		got.mu.Unlock()
		if copies != unique {
			t.Fatalf("during the Redis cut RabbitMQ got %d copies of %d messages, want each once", copies, unique)
		}

		proxy.Up()
		testenv.Eventually(t, 60*time.Second, "every message on RabbitMQ", func() bool { return got.unique() == n })
		stream := rp.Stream(topic)
		testenv.Eventually(t, 60*time.Second, "every message in the Redis stream", func() bool { return rc.XLen(ctx, stream).Val() == n })
		if err := got.check(want); err != nil {
			t.Fatal(err)
		}
		if got.copies != n {
			t.Errorf("RabbitMQ received %d copies of %d messages, want each exactly once", got.copies, n)
		}
		entries, err := rc.XRange(ctx, stream, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		inRedis := map[string][]string{}
		for _, e := range entries {
			k, _ := e.Values["key"].(string)
			id, _ := e.Values["id"].(string)
			inRedis[k] = append(inRedis[k], id)
		}
		if fmt.Sprint(inRedis) != fmt.Sprint(want) {
			t.Errorf("the Redis stream per key is not every message once in commit order")
		}
		// Sent to both; the outcome of the last is written a moment later.
		testenv.Eventually(t, 30*time.Second, "every message dispatched", func() bool {
			for _, ids := range want {
				for _, id := range ids {
					if statusOf(t, r, id) != StatusDispatched {
						return false
					}
				}
			}
			return true
		})
		for _, ids := range want {
			for _, id := range ids {
				if rec := mustGet(t, r, id); rec.Failures != 0 {
					t.Fatalf("%s: %d failures, want none (an outage spends no attempt)", id, rec.Failures)
				}
			}
		}
	})
}
