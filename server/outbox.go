package server

import (
	"context"
	"fmt"
	"github.com/redis/go-redis/v9"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/tracing"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/templates"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"
)

// newRelay migrates the outbox and builds its relay, a client of the queue
// engine under proc, with the publishers the configuration names (webhook,
// NATS JetStream, RabbitMQ, Redis Streams), routed per topic by cfg.Routes: a topic with no route of its own goes to
// the "*" route, or else to every configured publisher. In the demo with no
// publisher, a simulated email sender gets everything. It returns the
// routing table as the dashboard shows it (URLs without secrets) and a func
// that closes the publishers' connections. Every dispatch is a span linked
// to the request that added the message (tracing.Publisher).
func newRelay(ctx context.Context, db *gorm.DB, cfg Config, proc *queue.Process, log *slog.Logger, tp trace.TracerProvider) (*outbox.Relay, []templates.Route, func(), error) {
	var closers []io.Closer
	closeAll := func() {
		for _, c := range slices.Backward(closers) {
			_ = c.Close()
		}
	}
	fail := func(err error) (*outbox.Relay, []templates.Route, func(), error) {
		closeAll()
		return nil, nil, func() {}, err
	}
	if err := outbox.Migrate(ctx, db); err != nil {
		return fail(err)
	}
	// With no publisher and no demo, this process is a dashboard only: it
	// leaves the messages to the processes that can send them.
	watchOnly := !cfg.Demo && cfg.WebhookURL == "" && cfg.NATSURL == "" && cfg.AMQPURL == "" && cfg.RedisURL == ""
	relay, err := outbox.New(db, outbox.Config{Logger: log.With("component", "outbox"), Process: proc, WatchOnly: watchOnly})
	if err != nil {
		return fail(fmt.Errorf("outbox: %w", err))
	}

	// Each configured publisher once, by the name routes use: also its
	// destination name (its breaker, and what a fan-out message records as
	// delivered, so a retry skips it).
	pubs := map[string]outbox.Publisher{}
	shown := map[string]string{}
	if cfg.WebhookURL != "" {
		wh, err := outbox.NewWebhook(cfg.WebhookURL, nil)
		if err != nil {
			return fail(fmt.Errorf("webhook publisher: %w", err))
		}
		pubs["webhook"], shown["webhook"] = outbox.Named("webhook", wh), "webhook "+outbox.RedactURL(cfg.WebhookURL)
	}
	if cfg.NATSURL != "" {
		js, err := outbox.DialJetStream(ctx, cfg.NATSURL, outbox.JetStreamConfig{})
		if outbox.IsUnreachable(err) {
			brokerDown(log, "nats", err)
			js, err = outbox.OpenJetStream(cfg.NATSURL, outbox.JetStreamConfig{})
		}
		if err != nil {
			return fail(fmt.Errorf("NATS publisher %s: %w", outbox.RedactURL(cfg.NATSURL), err))
		}
		closers = append(closers, js)
		pubs["nats"], shown["nats"] = outbox.Named("nats", js), "NATS JetStream "+outbox.RedactURL(cfg.NATSURL)
	}
	if cfg.AMQPURL != "" {
		p, err := outbox.DialAMQP(ctx, cfg.AMQPURL, outbox.AMQPConfig{Exchange: cfg.AMQPExchange})
		if outbox.IsUnreachable(err) {
			brokerDown(log, "amqp", err)
			p, err = outbox.OpenAMQP(cfg.AMQPURL, outbox.AMQPConfig{Exchange: cfg.AMQPExchange})
		}
		if err != nil {
			return fail(fmt.Errorf("RabbitMQ publisher: %w", err))
		}
		closers = append(closers, p)
		pubs["amqp"], shown["amqp"] = outbox.Named("amqp", p), p.String()
	}
	if cfg.RedisURL != "" {
		// go-redis writes its own plain-text lines (a failed dial) to
		// stderr through a package-wide logger: the process's JSON log
		// takes them instead. The process owns stderr, so Run sets it.
		redis.SetLogger(redisLogger{log.With("component", "redis")})
		redisCfg := outbox.RedisStreamsConfig{Prefix: cfg.RedisPrefix, MaxLen: cfg.RedisMaxLen}
		p, err := outbox.DialRedisStreams(ctx, cfg.RedisURL, redisCfg)
		if outbox.IsUnreachable(err) {
			brokerDown(log, "redis", err)
			p, err = outbox.OpenRedisStreams(cfg.RedisURL, redisCfg)
		}
		if err != nil {
			return fail(fmt.Errorf("Redis publisher: %w", err))
		}
		closers = append(closers, p)
		pubs["redis"], shown["redis"] = outbox.Named("redis", p), p.String()
	}

	// pick joins the named publishers: one, or a fan-out to each.
	pick := func(names []string) (outbox.Publisher, string) {
		ps := make([]outbox.Publisher, 0, len(names))
		ds := make([]string, 0, len(names))
		for _, n := range names {
			ps = append(ps, pubs[n])
			ds = append(ds, shown[n])
		}
		if len(ps) == 1 {
			return ps[0], ds[0]
		}
		return outbox.Fanout(ps...), strings.Join(ds, " + ")
	}
	var routes []templates.Route
	for _, topic := range slices.Sorted(maps.Keys(cfg.Routes)) {
		if topic == "*" {
			continue
		}
		p, desc := pick(cfg.Routes[topic])
		relay.Register(topic, tracing.Publisher(tp, p))
		routes = append(routes, templates.Route{Topic: topic, To: desc})
	}
	defaults := cfg.Routes["*"]
	if defaults == nil {
		defaults = slices.Sorted(maps.Keys(pubs))
	}
	switch {
	case len(defaults) > 0:
		p, desc := pick(defaults)
		relay.RegisterDefault(tracing.Publisher(tp, p))
		routes = append(routes, templates.Route{Topic: "*", To: desc})
	case cfg.Demo:
		relay.RegisterDefault(tracing.Publisher(tp, outbox.Named("email", outbox.NewEmail(80*time.Millisecond, 0.05, nil, log.With("component", "email")))))
		routes = append(routes, templates.Route{Topic: "*", To: "simulated email (demo)"})
	default:
		log.Warn("outbox: no publisher configured (-webhook-url, -nats-url, -amqp-url, -redis-url): this process sends no message; " +
			"they wait for a Canal process that has a publisher")
	}
	for _, r := range routes {
		log.Info("outbox route", "topic", r.Topic, "to", r.To)
	}
	return relay, routes, closeAll, nil
}

// brokerDown logs a broker that did not answer at start. Canal starts all
// the same: the broker's messages wait for it as in any outage, and its
// breaker shows it down. A refused login or a bad URL still stops the
// start, as no wait fixes those.
func brokerDown(log *slog.Logger, name string, err error) {
	log.Warn("outbox: broker unreachable at start: its messages wait until it answers", "component", "outbox", "destination", name, "err", err)
}

// redisLogger is go-redis's logger over slog: one warning per line it
// writes (it logs only trouble: failed dials, pool errors).
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
}
