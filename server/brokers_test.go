package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/server"
	"github.com/canalhq/canal/server/servertest"
	"github.com/canalhq/canal/testenv"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
)

func uniq(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// One order goes to RabbitMQ and Redis at once by its route, every other
// topic to Redis; the outbox page shows the routes beside the topics, and
// neither page nor logs show the broker URLs' secrets.
func TestRunRoutesTopicsToBrokers(t *testing.T) {
	amqpURL, redisURL := testenv.AMQPURL(t), testenv.RedisURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	exchange, prefix := uniq("canaltest.x."), uniq("canaltest:")+":"

	// A consumer of the exchange, bound before the order is placed.
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	defer ch.ExchangeDelete(exchange, false, false)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "order.placed", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	msgs, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := redis.ParseURL(redisURL)
	rc := redis.NewClient(opts)
	defer rc.Close()
	defer func() {
		keys, _ := rc.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			rc.Del(context.Background(), keys...)
		}
	}()

	dbPath := filepath.Join(t.TempDir(), "canal.db")
	inst := servertest.Start(t, map[string]string{"CANAL_AMQP_URL": amqpURL},
		"-demo=false", "-db", dbPath, "-amqp-exchange", exchange, "-redis-url", redisURL, "-redis-prefix", prefix,
		"-routes", "order.placed=amqp+redis,*=redis")
	// One order's message, committed by another program's transaction on
	// the same database (the demo's POST /api/orders exists only with the
	// demo, whose traffic would add more).
	db := testenv.SQLiteFile(t, dbPath)
	if err := db.Transaction(func(tx *gorm.DB) error {
		_, err := outbox.Add(ctx, tx, outbox.Message{Topic: "order.placed", Key: "ada", Payload: map[string]any{"customer": "ada", "amount": 12.50}})
		return err
	}); err != nil {
		t.Fatal(err)
	}

	var id string
	select {
	case m := <-msgs:
		id = m.MessageId
		if m.RoutingKey != "order.placed" || id == "" || m.DeliveryMode != amqp.Persistent {
			t.Errorf("RabbitMQ got key %q id %q mode %d", m.RoutingKey, id, m.DeliveryMode)
		}
	case <-ctx.Done():
		t.Fatal("no message reached RabbitMQ")
	}
	testenv.Eventually(t, 60*time.Second, "the order in the Redis stream", func() bool {
		es, err := rc.XRange(ctx, prefix+"order.placed", "-", "+").Result()
		return err == nil && len(es) == 1 && es[0].Values["id"] == id
	})

	code, body := get(t, inst.URL+"/outbox")
	if code != http.StatusOK {
		t.Fatalf("GET /outbox = %d", code)
	}
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]string{}
	doc.Find(`[data-testid="routes"] dt`).Each(func(_ int, s *goquery.Selection) {
		routes[s.Text()] = s.Next().Text()
	})
	u, err := url.Parse(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host
	if to := routes["order.placed"]; !strings.Contains(to, "RabbitMQ amqp://"+host+" exchange "+exchange) || !strings.Contains(to, "Redis redis://") {
		t.Errorf("route of order.placed shows %q", to)
	}
	if to := routes["every other topic"]; !strings.HasPrefix(to, "Redis redis://") {
		t.Errorf("default route shows %q", to)
	}
	if tag := doc.Find(`[data-testid="message"] [data-testid="route"]`).First().Text(); !strings.Contains(tag, "RabbitMQ") {
		t.Errorf("the message's topic shows route %q", tag)
	}
	for _, where := range []struct{ name, text string }{{"page", body}, {"logs", inst.Logs()}} {
		if strings.Contains(where.text, "guest:guest") || strings.Contains(where.text, "guest@") {
			t.Errorf("the %s show the AMQP URL's credentials", where.name)
		}
	}
}

// A broker that refuses the password stops the start with an error that
// names the host but not the password.
func TestRunBrokerStartErrorsHideSecrets(t *testing.T) {
	amqpURL, redisURL := testenv.AMQPURL(t), testenv.RedisURL(t)
	withPassword := func(raw, scheme string) string {
		rest := strings.TrimPrefix(raw, scheme+"://")
		if _, after, ok := strings.Cut(rest, "@"); ok {
			rest = after
		}
		return scheme + "://canal:hunter22secret@" + rest
	}
	for _, tc := range []struct{ flag, url, want string }{
		{"-amqp-url", withPassword(amqpURL, "amqp"), "RabbitMQ publisher: amqp connect amqp://127.0.0.1:5672"},
		{"-redis-url", withPassword(redisURL, "redis") + "?dial_timeout=hunter22secret", "Redis publisher"},
		{"-redis-url", withPassword(redisURL, "redis"), "Redis publisher: redis redis://127.0.0.1:6379"},
	} {
		var logs strings.Builder
		err := server.Run(context.Background(), []string{"canal", "-addr", "127.0.0.1:0", "-demo=false",
			"-db", t.TempDir() + "/c.db", tc.flag, tc.url}, func(string) string { return "" }, io.Discard, &logs)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Run = %v, want an error containing %q", tc.flag, err, tc.want)
			continue
		}
		t.Logf("%s: %v", tc.flag, err)
		if strings.Contains(err.Error()+logs.String(), "hunter22secret") {
			t.Errorf("%s: the password shows:\n%v\n%s", tc.flag, err, logs.String())
		}
	}
}
