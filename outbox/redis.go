package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis Streams defaults.
const (
	DefaultStreamPrefix = "canal:"
	DefaultStreamMaxLen = 100_000
	DefaultDedupTTL     = time.Hour
)

// RedisStreamsConfig names the streams; zero fields take the defaults.
type RedisStreamsConfig struct {
	Prefix string // canal: → stream canal:<topic>
	// MaxLen bounds each stream (XADD MAXLEN ~): about this many newest
	// entries are kept. 100 000.
	MaxLen int64
	// DedupTTL is how long a sent message's guard key lives: a resend of
	// the same id within it returns the first entry instead of adding a
	// second. It must outlast the relay's retries of one message (backoff
	// up to BackoffMax plus the lease): 1 h.
	DedupTTL time.Duration
}

// RedisStreams appends each message to the stream <prefix><topic> with
// XADD … MAXLEN ~ n, as the fields id, topic, key (when set), payload and one
// field per header (traceparent, …; a header named like one of those four
// goes as "header.<name>").
//
// Idempotence: one Lua script adds the entry and sets the guard key
// <prefix>sent:<id> to the new entry's id (SET … EX DedupTTL) atomically; a
// retry of a message whose first XADD succeeded but whose reply was lost
// finds the guard and adds nothing. Past DedupTTL a resend (a dead message
// retried by hand, say) adds a second entry with the same id field, which
// consumers drop.
type RedisStreams struct {
	client *redis.Client
	show   string
	raw    string // to redact from errors
	cfg    RedisStreamsConfig
	owned  bool
}

// xaddOnce: KEYS[1] stream, KEYS[2] guard; ARGV[1] maxlen, ARGV[2] guard
// TTL in seconds, ARGV[3…] field, value pairs.
var xaddOnce = redis.NewScript(`
local prev = redis.call('GET', KEYS[2])
if prev then return prev end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[2], id, 'EX', ARGV[2])
return id
`)

// DialRedisStreams connects to rawURL (redis:// or rediss://, as go-redis
// parses it) and checks that the server answers. go-redis reconnects by
// itself after a restart; attempts in between fail and are retried.
func DialRedisStreams(ctx context.Context, rawURL string, cfg RedisStreamsConfig) (*RedisStreams, error) {
	p, err := OpenRedisStreams(rawURL, cfg)
	if err != nil {
		return nil, err
	}
	if err := p.client.Ping(ctx).Err(); err != nil {
		p.client.Close()
		return nil, fmt.Errorf("redis %s: %w", p.show, redactError(err, rawURL))
	}
	return p, nil
}

// OpenRedisStreams is DialRedisStreams without the check: the client
// connects at its first Publish, so a server down at start is an outage
// like any other (see IsUnreachable). Close closes the client.
func OpenRedisStreams(rawURL string, cfg RedisStreamsConfig) (*RedisStreams, error) {
	show := RedactURL(rawURL)
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: Redis URL %s: %w", ErrInvalidConfig, show, redactError(err, rawURL))
	}
	opts.ClientName = "canal-outbox"
	// The relay retries; a retry inside go-redis would only hide the
	// failure from the attempt history.
	opts.MaxRetries = -1
	c := redis.NewClient(opts)
	p := NewRedisStreams(c, cfg)
	p.show, p.raw, p.owned = show, rawURL, true
	return p, nil
}

// NewRedisStreams returns a publisher on c, which the caller keeps and
// closes.
func NewRedisStreams(c *redis.Client, cfg RedisStreamsConfig) *RedisStreams {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultStreamPrefix
	}
	if cfg.MaxLen <= 0 {
		cfg.MaxLen = DefaultStreamMaxLen
	}
	if cfg.DedupTTL <= 0 {
		cfg.DedupTTL = DefaultDedupTTL
	}
	return &RedisStreams{client: c, cfg: cfg, show: "redis://" + c.Options().Addr}
}

// Stream returns the stream a topic is appended to.
func (p *RedisStreams) Stream(topic string) string { return p.cfg.Prefix + topic }

// String describes the publisher without secrets.
func (p *RedisStreams) String() string {
	return fmt.Sprintf("Redis %s streams %s<topic> (MAXLEN ~%d)", p.show, p.cfg.Prefix, p.cfg.MaxLen)
}

// Publish appends d to its topic's stream once. Any failure is the
// server's (a destination error: the message waits, see Named).
func (p *RedisStreams) Publish(ctx context.Context, d Delivery) error {
	ttl := max(1, int64(p.cfg.DedupTTL/time.Second))
	args := []any{p.cfg.MaxLen, ttl, "id", d.ID, "topic", d.Topic}
	if d.Key != "" {
		args = append(args, "key", d.Key)
	}
	args = append(args, "payload", []byte(d.Payload))
	for k, v := range d.Headers {
		switch k {
		case "id", "topic", "key", "payload":
			k = "header." + k
		}
		args = append(args, k, v)
	}
	stream := p.Stream(d.Topic)
	keys := []string{stream, p.cfg.Prefix + "sent:" + d.ID}
	if err := xaddOnce.Run(ctx, p.client, keys, args...).Err(); err != nil {
		return fmt.Errorf("redis %s: XADD %s: %w", p.show, stream, redactError(err, p.raw))
	}
	return nil
}

// Close closes the client if DialRedisStreams opened it.
func (p *RedisStreams) Close() error {
	if !p.owned {
		return nil
	}
	return p.client.Close()
}
