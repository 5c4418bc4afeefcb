package outbox

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
)

// redisClient opens the shared test Redis and deletes every key under
// prefix when the test ends (never FLUSH: others use the server).
func redisClient(t testing.TB, rawURL, prefix string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		c.Close()
	})
	return c
}

func TestRedisStreamsPublisher(t *testing.T) {
	raw := testenv.RedisURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := uniqueName("canaltest:") + ":"
	c := redisClient(t, raw, prefix)
	p, err := DialRedisStreams(ctx, raw, RedisStreamsConfig{Prefix: prefix, MaxLen: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	d := Delivery{ID: "018f-one", Topic: "order.placed", Key: "order-7", Payload: []byte(`{"n":1}`),
		Headers: map[string]string{HeaderTraceparent: "00-x", "id": "a header named id"}}
	// A retry after a lost reply sends the same id again: one entry.
	for range 3 {
		if err := p.Publish(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	stream := p.Stream(d.Topic)
	entries, err := c.XRange(ctx, stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("%s holds %d entries after 3 sends of one id, want 1", stream, len(entries))
	}
	want := map[string]any{"id": d.ID, "topic": d.Topic, "key": "order-7", "payload": `{"n":1}`,
		HeaderTraceparent: "00-x", "header.id": "a header named id"}
	for k, v := range want {
		if entries[0].Values[k] != v {
			t.Errorf("field %s = %v, want %v", k, entries[0].Values[k], v)
		}
	}
	if len(entries[0].Values) != len(want) {
		t.Errorf("fields %v, want exactly %v", entries[0].Values, want)
	}
	guard, err := c.TTL(ctx, prefix+"sent:"+d.ID).Result()
	if err != nil || guard <= 0 || guard > DefaultDedupTTL {
		t.Errorf("guard key TTL = %v (%v), want within (0, %s]", guard, err, DefaultDedupTTL)
	}

	// MAXLEN ~ bounds the stream: Redis trims whole nodes, so "about".
	for i := range 1000 {
		if err := p.Publish(ctx, Delivery{ID: fmt.Sprintf("018f-%04d", i), Topic: "bounded", Payload: []byte(`1`)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.XLen(ctx, p.Stream("bounded")).Val(); n < 100 || n > 300 {
		t.Errorf("bounded stream holds %d entries after 1000 with MAXLEN ~100", n)
	}
}

// privateRedis runs a redis-server of the test's own (AOF on, flushed at shutdown,
// so a restart keeps what it acknowledged) that the test may stop and start.
type privateRedis struct {
	t    testing.TB
	dir  string
	port int
	cmd  *exec.Cmd
}

func startPrivateRedis(t testing.TB) *privateRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is not installed (Debian package redis-server): %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &privateRedis{t: t, dir: t.TempDir(), port: port}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *privateRedis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *privateRedis) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
		"--logfile", "redis.log")
	r.cmd.Stdout, r.cmd.Stderr = os.Stderr, os.Stderr
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	testenv.Eventually(r.t, 10*time.Second, "private redis-server answers", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// stop shuts the server down as a restart would (SIGTERM) and waits.
func (r *privateRedis) stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	_ = r.cmd.Wait()
	r.cmd = nil
}

// Thousands of messages through the relay reach the stream once each, in
// per-key order, although Redis restarts twice mid-run.
func TestRedisStreamsRelayAcrossRestarts(t *testing.T) {
	testenv.RedisURL(t) // the shared server is not used, but CI runs this with the others
	dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
		defer cancel()
		const n, keys = 3000, 100
		srv := startPrivateRedis(t)
		p, err := DialRedisStreams(ctx, srv.URL(), RedisStreamsConfig{MaxLen: 10 * n})
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
		topic := "orders"
		want := addKeyed(t, r, topic, keys, n)

		c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", srv.port)})
		defer c.Close()
		length := func() int64 { return c.XLen(ctx, p.Stream(topic)).Val() }
		began := time.Now()
		runRelay(t, r)
		for _, at := range []int64{n / 3, 2 * n / 3} {
			testenv.Eventually(t, 200*time.Second, "a third more in the stream", func() bool { return length() >= at })
			t.Logf("%s: %d in the stream, restarting", time.Since(began), length())
			srv.stop()
			time.Sleep(200 * time.Millisecond) // attempts fail meanwhile
			srv.start()
		}
		testenv.Eventually(t, 200*time.Second, "every message in the stream", func() bool {
			st, err := r.Stats(ctx)
			return err == nil && st.Dispatched == n
		})
		entries, err := c.XRange(ctx, p.Stream(topic), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		got := newConsumed()
		for _, e := range entries {
			got.add(e.Values["id"].(string), e.Values["key"].(string))
		}
		if err := got.check(want); err != nil {
			t.Fatal(err)
		}
		if got.copies != n {
			t.Errorf("stream holds %d entries for %d messages: the guard let a resend through", got.copies, n)
		}
		if !strings.HasPrefix(p.Stream(topic), DefaultStreamPrefix) {
			t.Errorf("stream %s lacks the default prefix", p.Stream(topic))
		}
	})
}

// The case the guard exists for: the script ran but its reply was lost (the
// connection cut while the answer was held back), so the attempt failed; the
// retry finds the guard and the stream keeps one entry.
func TestRedisStreamsResendAfterLostReplyAddsNothing(t *testing.T) {
	raw := testenv.RedisURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := uniqueName("canaltest:") + ":"
	c := redisClient(t, raw, prefix)
	opts, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, opts.Addr)
	p, err := DialRedisStreams(ctx, "redis://"+proxy.Addr()+"/"+strconv.Itoa(opts.DB), RedisStreamsConfig{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	d := Delivery{ID: "018f-lost-reply", Topic: "orders", Payload: []byte(`{}`)}
	// A first message loads the script (EVALSHA's NOSCRIPT answer must not
	// be the one held back).
	if err := p.Publish(ctx, Delivery{ID: "018f-warm", Topic: "warm", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}

	proxy.Pause()
	actx, acancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err = p.Publish(actx, d)
	acancel()
	if err == nil {
		t.Fatal("the attempt succeeded although its reply was held back")
	}
	testenv.Eventually(t, 5*time.Second, "the first attempt's entry in the stream", func() bool {
		return c.XLen(ctx, p.Stream(d.Topic)).Val() == 1
	})
	proxy.Cut() // the held reply is lost with its connection
	proxy.Resume()
	if err := p.Publish(ctx, d); err != nil {
		t.Fatalf("retry: %v", err)
	}
	entries, err := c.XRange(ctx, p.Stream(d.Topic), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Values["id"] != d.ID {
		t.Fatalf("stream holds %v after a lost reply and a retry, want one entry of %s", entries, d.ID)
	}
}
