package server

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/web/auth"
)

// Config is everything Canal reads at start. Flags win over environment
// variables, which win over defaults.
type Config struct {
	Addr          string
	DB            string
	Demo          bool
	Workers       int
	QueueCapacity int    // bound of the waiting work items (the backlog)
	QueuePolicy   string // wait, drop-newest or drop-oldest
	WebhookURL    string
	NATSURL       string
	AMQPURL       string
	AMQPExchange  string // "": an exchange per topic
	RedisURL      string
	RedisMaxLen   int64
	RedisPrefix   string
	// EventsNATSURL carries the dashboards' live events between processes
	// over NATS instead of PostgreSQL's NOTIFY ("": NOTIFY).
	EventsNATSURL string
	// Routes maps a topic ("*": every other topic) to the publishers that
	// receive it, by name (webhook, nats, amqp, redis). Topics with no
	// route and no "*" go to every configured publisher.
	Routes          map[string][]string
	AllowedOrigins  []string
	ShutdownTimeout time.Duration
	LogLevel        string
	LogFormat       string // json or text
	// Who may use the dashboard: with no token, nobody needs one, which is
	// allowed on a loopback address only (or with Insecure).
	OperatorToken string
	ViewerToken   string
	AllowedHosts  []string // Host names besides the loopback ones
	Insecure      bool     // listen beyond loopback without authentication
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client (login limit, audit, logs); none: the connection's
	// address.
	TrustedProxies []*net.IPNet
	// AuditRetention is how long audit entries are kept.
	AuditRetention time.Duration
	// DisplayTZ is the zone the dashboard shows times in ("" for each
	// viewer's own); Zone is it loaded.
	DisplayTZ string
	Zone      *time.Location

	timeouts httpTimeouts // the HTTP server's; zero: the defaults
}

// envName maps each flag to its environment fallback.
var envName = map[string]string{
	"addr":             "CANAL_ADDR",
	"db":               "CANAL_DB",
	"demo":             "CANAL_DEMO",
	"workers":          "CANAL_WORKERS",
	"queue-capacity":   "CANAL_QUEUE_CAPACITY",
	"queue-policy":     "CANAL_QUEUE_POLICY",
	"webhook-url":      "CANAL_WEBHOOK_URL",
	"nats-url":         "CANAL_NATS_URL",
	"amqp-url":         "CANAL_AMQP_URL",
	"amqp-exchange":    "CANAL_AMQP_EXCHANGE",
	"redis-url":        "CANAL_REDIS_URL",
	"redis-maxlen":     "CANAL_REDIS_MAXLEN",
	"redis-prefix":     "CANAL_REDIS_PREFIX",
	"routes":           "CANAL_ROUTES",
	"events-nats-url":  "CANAL_EVENTS_NATS_URL",
	"allowed-origins":  "CANAL_ALLOWED_ORIGINS",
	"shutdown-timeout": "CANAL_SHUTDOWN_TIMEOUT",
	"log-level":        "CANAL_LOG_LEVEL",
	"log-format":       "CANAL_LOG_FORMAT",
	"operator-token":   "CANAL_OPERATOR_TOKEN",
	"viewer-token":     "CANAL_VIEWER_TOKEN",
	"allowed-hosts":    "CANAL_ALLOWED_HOSTS",
	"trusted-proxies":  "CANAL_TRUSTED_PROXIES",
	"insecure":         "CANAL_INSECURE",
	"audit-retention":  "CANAL_AUDIT_RETENTION",
	"display-tz":       "CANAL_DISPLAY_TZ",
}

// errHelp is returned for -h so the caller exits 0 after the usage text.
var errHelp = flag.ErrHelp

// parseConfig reads flags from args (args[0] is the program name) with
// environment fallbacks from getenv, and validates the result.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("canal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg     Config
		origins string
		routes  string
		hosts   string
		proxies string
	)
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "HTTP listen address (host:port; port 0 picks a free one)")
	fs.StringVar(&cfg.DB, "db", "canal.db", "database: a SQLite file path, a sqlite: URL, or a postgres:// URL")
	fs.BoolVar(&cfg.Demo, "demo", true, "run demo jobs, work and orders so the dashboard is alive")
	fs.IntVar(&cfg.Workers, "workers", 4, "work item worker pool size (1-1024)")
	fs.IntVar(&cfg.QueueCapacity, "queue-capacity", 1024, "work items that may wait in the backlog, in every process (1-100000)")
	fs.StringVar(&cfg.QueuePolicy, "queue-policy", "wait", "when a work queue is full: wait (then 503), drop-newest (503 at once) or drop-oldest (evicted items are recorded as dropped)")
	fs.StringVar(&cfg.WebhookURL, "webhook-url", "", "POST every outbox message to this http(s) URL")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "publish every outbox message to this NATS JetStream server (nats://host:port)")
	fs.StringVar(&cfg.AMQPURL, "amqp-url", "", "publish outbox messages to this RabbitMQ server (amqp://user:password@host:5672/vhost), with publisher confirms")
	fs.StringVar(&cfg.AMQPExchange, "amqp-exchange", "", "RabbitMQ exchange for every topic, the topic as routing key (empty: an exchange per topic, named after it)")
	fs.StringVar(&cfg.RedisURL, "redis-url", "", "append outbox messages to Redis Streams canal:<topic> on this server (redis://[:password@]host:6379/db)")
	fs.Int64Var(&cfg.RedisMaxLen, "redis-maxlen", outbox.DefaultStreamMaxLen, "about how many entries each Redis stream keeps (XADD MAXLEN ~)")
	fs.StringVar(&cfg.RedisPrefix, "redis-prefix", outbox.DefaultStreamPrefix, "Redis key prefix: streams <prefix><topic>, idempotence guards <prefix>sent:<id>")
	fs.StringVar(&cfg.EventsNATSURL, "events-nats-url", "", "carry the dashboards' live events between Canal processes over this NATS server (nats://host:port) instead of PostgreSQL NOTIFY")
	fs.StringVar(&routes, "routes", "", "which publishers get which topic: topic=publisher[+publisher],…; publishers webhook, nats, amqp, redis; topic * for every other (default: every topic to every configured publisher)")
	fs.StringVar(&origins, "allowed-origins", "", "comma-separated extra Origin hosts allowed on WebSockets (the server's own host always is)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown may take")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", "json", "log format: json (one object a line) or text")
	fs.StringVar(&cfg.OperatorToken, "operator-token", "", "token of the operator role (every page and command); prefer the environment variable, which ps does not show")
	fs.StringVar(&cfg.ViewerToken, "viewer-token", "", "token of the viewer role (pages, the wall and the read API)")
	fs.StringVar(&hosts, "allowed-hosts", "", "comma-separated Host names the dashboard answers to besides localhost, 127.0.0.1 and ::1 (* for any); others are refused, which stops DNS rebinding")
	fs.StringVar(&proxies, "trusted-proxies", "", "comma-separated addresses or CIDRs of the reverse proxies in front of Canal (e.g. 10.0.0.0/8): the client address of their requests, which the login limit counts, is read from X-Forwarded-For; empty: the connection's address, the header ignored")
	fs.DurationVar(&cfg.AuditRetention, "audit-retention", 90*24*time.Hour, "how long the audit log keeps who did what")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "allow a non-loopback -addr without any token: everyone who reaches it is an operator")
	fs.StringVar(&cfg.DisplayTZ, "display-tz", "", "show every time on the dashboard in this IANA zone (e.g. Europe/Paris, UTC); empty: each viewer's own zone")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: canal [flags]\n       canal bench outbox|work|latency [flags]   (benchmarks: canal bench -h)\n\nCanal: a live control room for background jobs and a transactional outbox.\n\nFlags (each falls back to the environment variable shown):\n")
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(fs.Output(), "  -%s (%s, default %q)\n    \t%s\n", f.Name, envName[f.Name], f.DefValue, f.Usage)
		})
	}

	// Environment values become the flags' defaults, so flags still win.
	var envErrs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName[f.Name]
		if v := getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil {
				envErrs = append(envErrs, fmt.Errorf("%s=%q: %v", name, v, err))
			}
		}
	})
	if err := errors.Join(envErrs...); err != nil {
		return Config{}, err
	}
	if len(args) == 0 {
		args = []string{"canal"}
	}
	if err := fs.Parse(args[1:]); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q (flags start with -; see canal -h)", fs.Arg(0))
	}
	var routeErr error
	cfg.Routes, routeErr = parseRoutes(routes)
	for _, o := range strings.Split(origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			cfg.AllowedOrigins = append(cfg.AllowedOrigins, o)
		}
	}
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.AllowedHosts = append(cfg.AllowedHosts, h)
		}
	}
	var proxyErr error
	cfg.TrustedProxies, proxyErr = parseProxies(proxies)
	if err := errors.Join(routeErr, proxyErr, cfg.validate()); err != nil {
		return cfg, err
	}
	if cfg.DisplayTZ != "" {
		cfg.Zone, _ = time.LoadLocation(cfg.DisplayTZ) // validated
	}
	return cfg, nil
}

// parseProxies reads comma-separated CIDRs or single addresses.
func parseProxies(s string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	var errs []error
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if ip := net.ParseIP(p); ip != nil {
			bits := 8 * net.IPv6len
			if ip4 := ip.To4(); ip4 != nil {
				ip, bits = ip4, 8*net.IPv4len
			}
			out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("-trusted-proxies %q: want an address or a CIDR such as 10.0.0.0/8", p))
			continue
		}
		out = append(out, n)
	}
	return out, errors.Join(errs...)
}

// publisherNames are the publishers a route may name.
var publisherNames = []string{"webhook", "nats", "amqp", "redis"}

// parseRoutes reads "topic=pub[+pub],…" into topic → publisher names.
func parseRoutes(s string) (map[string][]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	routes := map[string][]string{}
	var errs []error
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		topic, pubs, ok := strings.Cut(entry, "=")
		topic = strings.TrimSpace(topic)
		switch {
		case !ok || strings.TrimSpace(pubs) == "":
			errs = append(errs, fmt.Errorf("-routes %q: want topic=publisher, e.g. orders=amqp", entry))
			continue
		case topic != "*" && !outbox.ValidTopic(topic):
			errs = append(errs, fmt.Errorf("-routes %q: %q is not a topic (letters, digits, '.', '_', '-'; or * for every other topic)", entry, topic))
			continue
		case routes[topic] != nil:
			errs = append(errs, fmt.Errorf("-routes: topic %s is routed twice", topic))
			continue
		}
		for _, name := range strings.Split(pubs, "+") {
			name = strings.TrimSpace(name)
			if !slices.Contains(publisherNames, name) {
				errs = append(errs, fmt.Errorf("-routes %q: unknown publisher %q (want %s)", entry, name, strings.Join(publisherNames, ", ")))
				continue
			}
			if !slices.Contains(routes[topic], name) {
				routes[topic] = append(routes[topic], name)
			}
		}
	}
	return routes, errors.Join(errs...)
}

// publisherURLs gives each configured publisher's URL by name.
func (c Config) publisherURLs() map[string]string {
	m := map[string]string{}
	for name, u := range map[string]string{"webhook": c.WebhookURL, "nats": c.NATSURL, "amqp": c.AMQPURL, "redis": c.RedisURL} {
		if u != "" {
			m[name] = u
		}
	}
	return m
}

// Open reports whether no authentication is configured.
func (c Config) Open() bool { return c.OperatorToken == "" && c.ViewerToken == "" }

// loopback reports whether addr's host is this machine only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c Config) validate() error {
	var errs []error
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("-addr %q: want host:port, e.g. 127.0.0.1:8080", c.Addr))
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		errs = append(errs, fmt.Errorf("-addr %q: port must be a number from 0 to 65535", c.Addr))
	}
	if _, _, err := dialect(c.DB); err != nil {
		errs = append(errs, fmt.Errorf("-db: %w", err))
	}
	if c.Workers < 1 || c.Workers > 1024 {
		errs = append(errs, fmt.Errorf("-workers %d: must be from 1 to 1024", c.Workers))
	}
	if c.QueueCapacity < 1 || c.QueueCapacity > 100000 {
		errs = append(errs, fmt.Errorf("-queue-capacity %d: must be from 1 to 100000", c.QueueCapacity))
	}
	if _, err := jobs.ParsePolicy(c.QueuePolicy); err != nil {
		errs = append(errs, fmt.Errorf("-queue-policy: %w", err))
	}
	// Publisher URLs carry passwords and tokens (a webhook's in its path or
	// query): errors show only scheme and host.
	if c.WebhookURL != "" {
		if u, err := url.Parse(c.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("-webhook-url %s: want an http:// or https:// URL", outbox.RedactURL(c.WebhookURL)))
		}
	}
	if c.EventsNATSURL != "" {
		if u, err := url.Parse(c.EventsNATSURL); err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
			errs = append(errs, fmt.Errorf("-events-nats-url %s: want a nats://host:port URL", outbox.RedactURL(c.EventsNATSURL)))
		}
	}
	if c.NATSURL != "" {
		if u, err := url.Parse(c.NATSURL); err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
			errs = append(errs, fmt.Errorf("-nats-url %s: want a nats://host:port URL", outbox.RedactURL(c.NATSURL)))
		}
	}
	if c.AMQPURL != "" {
		if u, err := url.Parse(c.AMQPURL); err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
			errs = append(errs, fmt.Errorf("-amqp-url %s: want amqp://user:password@host:port/vhost (or amqps://)", outbox.RedactURL(c.AMQPURL)))
		}
	}
	if c.AMQPExchange != "" && !outbox.ValidTopic(c.AMQPExchange) {
		errs = append(errs, fmt.Errorf("-amqp-exchange %q: letters, digits, '.', '_' and '-' only", c.AMQPExchange))
	}
	if c.RedisURL != "" {
		if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			errs = append(errs, fmt.Errorf("-redis-url %s: want redis://[:password@]host:port/db (or rediss://)", outbox.RedactURL(c.RedisURL)))
		}
	}
	if c.RedisPrefix == "" {
		errs = append(errs, errors.New("-redis-prefix: must not be empty"))
	}
	if c.RedisMaxLen < 1 {
		errs = append(errs, fmt.Errorf("-redis-maxlen %d: must be at least 1", c.RedisMaxLen))
	}
	configured := c.publisherURLs()
	for _, topic := range slices.Sorted(maps.Keys(c.Routes)) {
		for _, name := range c.Routes[topic] {
			if configured[name] == "" {
				errs = append(errs, fmt.Errorf("-routes: topic %s goes to %s, but -%s-url is not set", topic, name, name))
			}
		}
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("-shutdown-timeout %s: must be positive", c.ShutdownTimeout))
	}
	if c.Open() && !c.Insecure && !loopback(c.Addr) {
		errs = append(errs, fmt.Errorf("-addr %q listens beyond this machine, but no authentication is configured: "+
			"set CANAL_OPERATOR_TOKEN (and CANAL_VIEWER_TOKEN for read-only users), or pass -insecure to let anyone who reaches it operate Canal", c.Addr))
	}
	if !c.Open() {
		if _, err := auth.NewTokens(c.OperatorToken, c.ViewerToken, 0); err != nil {
			errs = append(errs, fmt.Errorf("tokens: %w", err))
		}
	}
	if c.AuditRetention < time.Hour {
		errs = append(errs, fmt.Errorf("-audit-retention %s: must be at least 1h", c.AuditRetention))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("-log-format %q: want json or text", c.LogFormat))
	}
	if c.DisplayTZ != "" {
		if _, err := time.LoadLocation(c.DisplayTZ); err != nil || strings.EqualFold(c.DisplayTZ, "local") {
			errs = append(errs, fmt.Errorf("-display-tz %q: want an IANA zone name such as Europe/Paris or UTC", c.DisplayTZ))
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("-log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}
