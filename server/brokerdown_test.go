package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/server/servertest"
	"github.com/canalhq/canal/testenv"
	"github.com/redis/go-redis/v9"
)

// closedAddr is a loopback address nothing listens on (for now).
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// proxyOn forwards connections on addr to target until the test ends.
func proxyOn(t *testing.T, addr, target string) {
	t.Helper()
	var l net.Listener
	var err error
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if l, err = net.Listen("tcp", addr); err == nil || time.Now().After(end) {
			break
		}
	}
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close() // the client may still hold them: end both copies
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			track(c)
			wg.Go(func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				track(u)
				defer u.Close()
				wg.Go(func() { _, _ = io.Copy(u, c); u.Close() })
				_, _ = io.Copy(c, u)
			})
		}
	})
}

// Brokers that are down when Canal starts are an outage, not a failed
// start: the process serves, their messages wait with their breakers
// open, and a broker that comes up gets them all by itself.
func TestRunStartsWithBrokersDown(t *testing.T) {
	redisURL := testenv.RedisURL(t)
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	redisAddr, amqpAddr, natsAddr := closedAddr(t), closedAddr(t), closedAddr(t)
	prefix := uniq("canaltest:") + ":"
	rc := redis.NewClient(opts)
	defer rc.Close()
	defer func() {
		keys, _ := rc.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			rc.Del(context.Background(), keys...)
		}
	}()
	inst := servertest.Start(t, nil,
		"-redis-url", "redis://"+redisAddr+"/0", "-redis-prefix", prefix,
		"-amqp-url", "amqp://guest:guest@"+amqpAddr+"/", "-nats-url", "nats://"+natsAddr,
		"-routes", "order.placed=redis+amqp+nats,*=redis")
	const orders = 5
	for range orders {
		resp, err := http.Post(inst.URL+"/api/orders", "application/json", strings.NewReader(`{"customer":"ada","amount":12.5}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST /api/orders = %d", resp.StatusCode)
		}
	}
	state := func(dest string) (float64, bool) {
		return value(scrape(t, inst.URL), "canal_outbox_breaker_state", map[string]string{"destination": dest})
	}
	testenv.Eventually(t, 60*time.Second, "the brokers' breakers open", func() bool {
		r, ok1 := state("redis")
		a, ok2 := state("amqp")
		return ok1 && ok2 && r == 2 && a == 2
	})

	proxyOn(t, redisAddr, opts.Addr) // Redis comes up
	testenv.Eventually(t, 60*time.Second, "every order in the Redis stream, its breaker closed", func() bool {
		n, err := rc.XLen(context.Background(), prefix+"order.placed").Result()
		r, ok := state("redis")
		return err == nil && n >= orders && ok && r == 0
	})
	if a, ok := state("amqp"); !ok || a == 0 {
		t.Errorf("amqp breaker = %v (%v), want it open or probing: RabbitMQ is still down", a, ok)
	}
	// go-redis's own complaints (its failed dials) are lines of the JSON
	// log, not plain text on stderr.
	redisLines := 0
	for _, l := range testenv.LogLines(t, []byte(inst.Logs())) {
		if l["msg"] == "redis client" {
			redisLines++
		}
	}
	if redisLines == 0 {
		t.Error("no go-redis line in the process's log while Redis was down")
	}
}
