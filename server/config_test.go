package server

import (
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, c Config)
		wantErr string // substring of the error; "" means no error
	}{
		{
			name: "defaults",
			check: func(t *testing.T, c Config) {
				if c.Addr != "127.0.0.1:8080" || c.DB != "canal.db" || !c.Demo || c.Workers != 4 || c.ShutdownTimeout != 10*time.Second {
					t.Errorf("defaults = %+v", c)
				}
			},
		},
		{
			name: "environment fallbacks",
			env:  map[string]string{"CANAL_ADDR": "127.0.0.1:9999", "CANAL_DB": "postgres://u@h/db", "CANAL_DEMO": "false", "CANAL_ALLOWED_ORIGINS": "a.example, b.example"},
			check: func(t *testing.T, c Config) {
				if c.Addr != "127.0.0.1:9999" || c.DB != "postgres://u@h/db" || c.Demo {
					t.Errorf("env not applied: %+v", c)
				}
				if strings.Join(c.AllowedOrigins, "|") != "a.example|b.example" {
					t.Errorf("origins = %q", c.AllowedOrigins)
				}
			},
		},
		{
			name: "flags win over environment",
			args: []string{"-addr", "127.0.0.1:7000", "-demo=true"},
			env:  map[string]string{"CANAL_ADDR": "127.0.0.1:9999", "CANAL_DEMO": "false"},
			check: func(t *testing.T, c Config) {
				if c.Addr != "127.0.0.1:7000" || !c.Demo {
					t.Errorf("flags did not win: %+v", c)
				}
			},
		},
		{name: "sqlite URL", args: []string{"-db", "sqlite:data/x.db"}},
		{name: "bad addr", args: []string{"-addr", "localhost"}, wantErr: `-addr "localhost": want host:port`},
		{name: "bad port", args: []string{"-addr", "127.0.0.1:99999"}, wantErr: "port must be a number from 0 to 65535"},
		{name: "unsupported database", args: []string{"-db", "mysql://root@localhost/x"}, wantErr: "unsupported scheme"},
		{name: "empty sqlite path", args: []string{"-db", "sqlite:"}, wantErr: "needs a file path"},
		{name: "bad env boolean", env: map[string]string{"CANAL_DEMO": "sometimes"}, wantErr: `CANAL_DEMO="sometimes"`},
		{name: "bad workers", args: []string{"-workers", "0"}, wantErr: "-workers 0: must be from 1 to 1024"},
		{name: "bad webhook", args: []string{"-webhook-url", "ftp://x"}, wantErr: "want an http:// or https:// URL"},
		{name: "bad nats", args: []string{"-nats-url", "127.0.0.1:4222"}, wantErr: "want a nats://host:port URL"},
		{name: "bad events nats", args: []string{"-events-nats-url", "127.0.0.1:4222"}, wantErr: "-events-nats-url (invalid URL): want a nats://host:port URL"},
		{
			name: "routes per topic",
			args: []string{"-amqp-url", "amqp://u:p@h:5672/", "-redis-url", "redis://h:6379/0", "-webhook-url", "http://h/x",
				"-routes", "order.placed=amqp+redis, billing=webhook ,*=redis"},
			check: func(t *testing.T, c Config) {
				want := map[string][]string{"order.placed": {"amqp", "redis"}, "billing": {"webhook"}, "*": {"redis"}}
				if !maps.EqualFunc(c.Routes, want, slices.Equal) {
					t.Errorf("routes = %v, want %v", c.Routes, want)
				}
				if c.RedisMaxLen != 100_000 || c.RedisPrefix != "canal:" || c.AMQPExchange != "" {
					t.Errorf("broker defaults = %d %q %q", c.RedisMaxLen, c.RedisPrefix, c.AMQPExchange)
				}
			},
		},
		{name: "routes from env", env: map[string]string{"CANAL_REDIS_URL": "redis://h/0", "CANAL_ROUTES": "a=redis"},
			check: func(t *testing.T, c Config) {
				if got := c.Routes["a"]; len(got) != 1 || got[0] != "redis" {
					t.Errorf("routes = %v", c.Routes)
				}
			}},
		{name: "route to an unknown publisher", args: []string{"-routes", "a=kafka"}, wantErr: `unknown publisher "kafka" (want webhook, nats, amqp, redis)`},
		{name: "route to an unconfigured publisher", args: []string{"-routes", "a=amqp"}, wantErr: "topic a goes to amqp, but -amqp-url is not set"},
		{name: "route without publisher", args: []string{"-routes", "a"}, wantErr: `-routes "a": want topic=publisher`},
		{name: "route of a bad topic", args: []string{"-redis-url", "redis://h/0", "-routes", "a b=redis"}, wantErr: `"a b" is not a topic`},
		{name: "topic routed twice", args: []string{"-redis-url", "redis://h/0", "-routes", "a=redis,a=redis"}, wantErr: "topic a is routed twice"},
		{name: "bad amqp URL hides its password", args: []string{"-amqp-url", "http://user:hunter22@mq.example:5672/"}, wantErr: "-amqp-url http://mq.example:5672: want amqp://"},
		{name: "bad redis URL hides its password", args: []string{"-redis-url", "tcp://:hunter22@r.example:6379?x=hunter22"}, wantErr: "-redis-url tcp://r.example:6379: want redis://"},
		{name: "bad webhook URL hides its secrets", args: []string{"-webhook-url", "ftp://u:hunter22@h.example/services/hunter22?token=hunter22"}, wantErr: "-webhook-url ftp://h.example: want an http://"},
		{name: "bad nats URL hides its token", args: []string{"-nats-url", "http://hunter22@n.example:4222"}, wantErr: "-nats-url http://n.example:4222: want a nats://"},
		{name: "bad redis maxlen", args: []string{"-redis-maxlen", "0"}, wantErr: "-redis-maxlen 0: must be at least 1"},
		{name: "bad amqp exchange", args: []string{"-amqp-exchange", "a b"}, wantErr: `-amqp-exchange "a b"`},
		{
			name: "trusted proxies",
			env:  map[string]string{"CANAL_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7,2001:db8::/32"},
			check: func(t *testing.T, c Config) {
				var got []string
				for _, n := range c.TrustedProxies {
					got = append(got, n.String())
				}
				if want := "10.0.0.0/8 192.0.2.7/32 2001:db8::/32"; strings.Join(got, " ") != want {
					t.Errorf("trusted proxies = %v, want %s", got, want)
				}
			},
		},
		{name: "no trusted proxy by default", check: func(t *testing.T, c Config) {
			if len(c.TrustedProxies) != 0 {
				t.Errorf("trusted proxies = %v, want none", c.TrustedProxies)
			}
		}},
		{name: "bad trusted proxy", args: []string{"-trusted-proxies", "10.0.0.0/33"}, wantErr: `-trusted-proxies "10.0.0.0/33": want an address or a CIDR`},
		{name: "bad log level", args: []string{"-log-level", "loud"}, wantErr: "want debug, info, warn or error"},
		{
			name: "display zone",
			args: []string{"-display-tz", "Asia/Tokyo"},
			check: func(t *testing.T, c Config) {
				if c.Zone == nil || c.Zone.String() != "Asia/Tokyo" {
					t.Errorf("zone = %v, want Asia/Tokyo", c.Zone)
				}
			},
		},
		{name: "bad display zone", args: []string{"-display-tz", "Mars/Olympus"}, wantErr: `-display-tz "Mars/Olympus": want an IANA zone name`},
		{name: "stray argument", args: []string{"serve"}, wantErr: `unexpected argument "serve"`},
		{name: "unknown flag", args: []string{"-port", "1"}, wantErr: "flag provided but not defined: -port"},
		{name: "every error at once", args: []string{"-addr", "x", "-workers", "0"}, wantErr: "-workers 0"},
		{name: "all interfaces without authentication", args: []string{"-addr", "0.0.0.0:8080"}, wantErr: "no authentication is configured"},
		{name: "every interface, the short way", args: []string{"-addr", ":0"}, wantErr: "pass -insecure"},
		{name: "a LAN address without authentication", args: []string{"-addr", "192.0.2.10:8080"}, wantErr: "set CANAL_OPERATOR_TOKEN"},
		{name: "all interfaces with -insecure", args: []string{"-addr", "0.0.0.0:8080", "-insecure"}},
		{name: "localhost needs nothing", args: []string{"-addr", "localhost:8080"}},
		{name: "IPv6 loopback needs nothing", args: []string{"-addr", "[::1]:8080"}},
		{
			name: "all interfaces with tokens",
			args: []string{"-addr", "0.0.0.0:8080", "-allowed-hosts", "canal.example, ops.example"},
			env:  map[string]string{"CANAL_OPERATOR_TOKEN": "op-0123456789abcdef", "CANAL_VIEWER_TOKEN": "view-0123456789abcdef"},
			check: func(t *testing.T, c Config) {
				if c.Open() || strings.Join(c.AllowedHosts, "|") != "canal.example|ops.example" {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{name: "short token", env: map[string]string{"CANAL_OPERATOR_TOKEN": "short"}, wantErr: "at least 16 characters"},
		{name: "same token twice", env: map[string]string{"CANAL_OPERATOR_TOKEN": "same-0123456789abcdef", "CANAL_VIEWER_TOKEN": "same-0123456789abcdef"}, wantErr: "must differ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			c, err := parseConfig(append([]string{"canal"}, tt.args...), getenv, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter22") {
					t.Errorf("error shows a password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestUsageListsEveryFlagWithItsVariable(t *testing.T) {
	var out strings.Builder
	_, err := parseConfig([]string{"canal", "-h"}, func(string) string { return "" }, &out)
	if err == nil {
		t.Fatal("-h: want flag.ErrHelp")
	}
	for flagName, env := range envName {
		if !strings.Contains(out.String(), "-"+flagName+" ("+env) {
			t.Errorf("usage does not list -%s with %s:\n%s", flagName, env, out.String())
		}
	}
}

func TestDialect(t *testing.T) {
	tests := []struct{ in, name, dsnPrefix string }{
		{"canal.db", "sqlite", "canal.db?_pragma=busy_timeout"},
		{"sqlite:/tmp/a.db", "sqlite", "/tmp/a.db?_pragma"},
		{"sqlite:///tmp/a.db", "sqlite", "/tmp/a.db?_pragma"},
		{"postgres://u@h:5432/db?sslmode=disable", "postgres", "postgres://u@h:5432/db?sslmode=disable"},
		{"postgresql://u@h/db", "postgres", "postgresql://u@h/db"},
	}
	for _, tt := range tests {
		name, dsn, err := dialect(tt.in)
		if err != nil || name != tt.name || !strings.HasPrefix(dsn, tt.dsnPrefix) {
			t.Errorf("dialect(%q) = %q, %q, %v; want %q, prefix %q", tt.in, name, dsn, err, tt.name, tt.dsnPrefix)
		}
	}
}
