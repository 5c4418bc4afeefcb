// Package testenv gives tests the real services of this machine: a private
// PostgreSQL schema, a SQLite file, and the path of a Chromium binary. Each is
// named by an environment variable; when it is unset, the conventional local
// service is used if it answers (PostgreSQL 127.0.0.1:5432 database test as
// postgres, NATS 127.0.0.1:4222, chromium on PATH). A test whose service is
// neither set nor found skips with a reason that names the variable; .ci/run
// sets them all and fails on any skip.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libtnb/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Environment variables that point tests at real services.
const (
	PostgresEnv = "CANAL_TEST_POSTGRES" // e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable
	NATSEnv     = "CANAL_TEST_NATS"     // e.g. nats://127.0.0.1:4222
	ChromiumEnv = "CANAL_TEST_CHROMIUM" // e.g. /usr/bin/chromium
	AMQPEnv     = "CANAL_TEST_AMQP"     // e.g. amqp://guest:guest@127.0.0.1:5672/
	RedisEnv    = "CANAL_TEST_REDIS"    // e.g. redis://127.0.0.1:6379/0
)

// AMQPURL returns the URL of the test RabbitMQ server or skips t. The server
// is shared: tests use exchanges and queues of their own names.
func AMQPURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(AMQPEnv)
	if u == "" {
		t.Skipf("%s is not set: set it to an amqp:// URL to run this test against RabbitMQ", AMQPEnv)
	}
	return u
}

// RedisURL returns the URL of the test Redis server or skips t. The server
// is shared: tests use keys of their own names and never flush it.
func RedisURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(RedisEnv)
	if u == "" {
		t.Skipf("%s is not set: set it to a redis:// URL to run this test against Redis", RedisEnv)
	}
	return u
}

// The conventional local services, used when their variable is unset: a
// fresh machine with them running tests everything without configuration.
const (
	LocalPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&connect_timeout=2"
	LocalNATS     = "nats://127.0.0.1:4222"
)

// localChromiums are where Chromium usually is.
var localChromiums = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "/usr/bin/chromium"}

var (
	probeOnce                       sync.Once
	localPG, localNATS, localChrome string
)

// probeLocal looks once for the conventional local services.
func probeLocal() {
	probeOnce.Do(func() {
		if db, err := gorm.Open(postgres.Open(LocalPostgres), quiet()); err == nil {
			if sqlDB, err := db.DB(); err == nil {
				if sqlDB.Ping() == nil {
					localPG = LocalPostgres
				}
				_ = sqlDB.Close()
			}
		}
		if c, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second); err == nil {
			_ = c.Close()
			localNATS = LocalNATS
		}
		for _, name := range localChromiums {
			if p, err := exec.LookPath(name); err == nil {
				localChrome = p
				break
			}
		}
	})
}

// service is the variable's value, else what the probe found, else "".
func service(env string, local *string) string {
	if u := os.Getenv(env); u != "" {
		return u
	}
	probeLocal()
	return *local
}

// PostgresURL returns the base URL of the test PostgreSQL server: the
// variable's, else the conventional local one if it answers, else it skips t.
func PostgresURL(t testing.TB) string {
	t.Helper()
	u := service(PostgresEnv, &localPG)
	if u == "" {
		t.Skipf("%s is not set and no PostgreSQL answers at %s: set it to a postgres:// URL to run this test against PostgreSQL", PostgresEnv, LocalPostgres)
	}
	return u
}

// Postgres opens a gorm connection whose search_path is a fresh schema that is
// dropped when the test ends, so tests can run in parallel on one database.
func Postgres(t testing.TB) *gorm.DB {
	t.Helper()
	base := PostgresURL(t)
	schema := "t_" + randomHex(6)
	admin, err := gorm.Open(postgres.Open(base), quiet())
	if err != nil {
		t.Fatalf("testenv: open postgres: %v", err)
	}
	if err := admin.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Fatalf("testenv: create schema: %v", err)
	}
	db, err := gorm.Open(postgres.Open(WithSearchPath(base, schema)), quiet())
	if err != nil {
		t.Fatalf("testenv: open postgres schema: %v", err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
		_ = admin.Exec("DROP SCHEMA " + schema + " CASCADE").Error
		if sqlDB, err := admin.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	return db
}

// PostgresSchemaURL creates a fresh schema like Postgres does and returns a URL
// whose connections use it, for tests that start the whole program.
func PostgresSchemaURL(t testing.TB) string {
	t.Helper()
	base := PostgresURL(t)
	schema := "t_" + randomHex(6)
	admin, err := gorm.Open(postgres.Open(base), quiet())
	if err != nil {
		t.Fatalf("testenv: open postgres: %v", err)
	}
	if err := admin.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Fatalf("testenv: create schema: %v", err)
	}
	t.Cleanup(func() {
		_ = admin.Exec("DROP SCHEMA " + schema + " CASCADE").Error
		if sqlDB, err := admin.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	return WithSearchPath(base, schema)
}

// WithSearchPath adds search_path=schema to a postgres:// URL.
func WithSearchPath(base, schema string) string {
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

// SQLite opens a SQLite file in t's temporary directory.
func SQLite(t testing.TB) *gorm.DB {
	t.Helper()
	// Not t.TempDir: SQLite may still remove its -wal and -shm files while
	// the last connection closes, and t.TempDir fails a test whose directory
	// changes under its removal. The files are the test's own; a late one is
	// removed on a second try.
	dir, err := os.MkdirTemp("", "canal-sqlite-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	// Registered first, so it runs after SQLiteFile's close.
	t.Cleanup(func() {
		for try := 0; ; try++ {
			err := os.RemoveAll(dir)
			if err == nil {
				return
			}
			if try == 20 {
				t.Logf("testenv: remove %s: %v", dir, err)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	return SQLiteFile(t, filepath.Join(dir, "canal.db"))
}

// SQLiteFile opens the SQLite file at path (one a program under test also
// uses, say), closed when the test ends.
func SQLiteFile(t testing.TB, path string) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(sqlite.Open(path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"), quiet())
	if err != nil {
		t.Fatalf("testenv: open sqlite: %v", err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	return db
}

// NATSURL returns the URL of the machine's NATS JetStream server or skips t.
func NATSURL(t testing.TB) string {
	t.Helper()
	u := service(NATSEnv, &localNATS)
	if u == "" {
		t.Skipf("%s is not set and no NATS answers at %s: set it to a nats:// URL to run this test against NATS JetStream", NATSEnv, LocalNATS)
	}
	return u
}

// Chromium returns the path of a Chromium binary or skips t.
func Chromium(t testing.TB) string {
	t.Helper()
	p := service(ChromiumEnv, &localChrome)
	if p == "" {
		t.Skipf("%s is not set and no Chromium is on PATH: set it to a Chromium binary (Debian: apt-get install chromium; /usr/bin/chromium) to run browser tests", ChromiumEnv)
	}
	if _, err := exec.LookPath(p); err != nil {
		t.Fatalf("testenv: %s=%q is not runnable: %v", ChromiumEnv, p, err)
	}
	return p
}

// Eventually polls cond every 20ms until it holds or d passes; it fails t with
// msg if it never holds. Tests wait for a condition, not for a fixed time.
func Eventually(t testing.TB, d time.Duration, msg string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("condition not met within %s: %s", d, msg)
		case <-tick.C:
		}
	}
}

func quiet() *gorm.Config { return &gorm.Config{Logger: logger.Discard} }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}
