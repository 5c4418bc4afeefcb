package server

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/canalhq/canal/jobs"
)

// Config is everything Canal reads at start. Flags win over environment
// variables, which win over defaults.
type Config struct {
	Addr            string
	DB              string
	Demo            bool
	Workers         int
	QueueCapacity   int    // bound of the waiting work items (the backlog)
	QueuePolicy     string // wait, drop-newest or drop-oldest
	WebhookURL      string
	NATSURL         string
	AllowedOrigins  []string
	ShutdownTimeout time.Duration
	LogLevel        string
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
	"allowed-origins":  "CANAL_ALLOWED_ORIGINS",
	"shutdown-timeout": "CANAL_SHUTDOWN_TIMEOUT",
	"log-level":        "CANAL_LOG_LEVEL",
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
	)
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "HTTP listen address (host:port; port 0 picks a free one)")
	fs.StringVar(&cfg.DB, "db", "canal.db", "database: a SQLite file path, a sqlite: URL, or a postgres:// URL")
	fs.BoolVar(&cfg.Demo, "demo", true, "run demo jobs, work and orders so the dashboard is alive")
	fs.IntVar(&cfg.Workers, "workers", 4, "work item worker pool size (1-1024)")
	fs.IntVar(&cfg.QueueCapacity, "queue-capacity", 1024, "work items that may wait in the backlog, in every process (1-100000)")
	fs.StringVar(&cfg.QueuePolicy, "queue-policy", "wait", "when a work queue is full: wait (then 503), drop-newest (503 at once) or drop-oldest (evicted items are recorded as dropped)")
	fs.StringVar(&cfg.WebhookURL, "webhook-url", "", "POST every outbox message to this http(s) URL")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "publish every outbox message to this NATS JetStream server (nats://host:port)")
	fs.StringVar(&origins, "allowed-origins", "", "comma-separated extra Origin hosts allowed on WebSockets (the server's own host always is)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown may take")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
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
	for _, o := range strings.Split(origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			cfg.AllowedOrigins = append(cfg.AllowedOrigins, o)
		}
	}
	return cfg, cfg.validate()
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
	if c.WebhookURL != "" {
		if u, err := url.Parse(c.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("-webhook-url %q: want an http:// or https:// URL", c.WebhookURL))
		}
	}
	if c.NATSURL != "" {
		if u, err := url.Parse(c.NATSURL); err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
			errs = append(errs, fmt.Errorf("-nats-url %q: want a nats://host:port URL", c.NATSURL))
		}
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("-shutdown-timeout %s: must be positive", c.ShutdownTimeout))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("-log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}
