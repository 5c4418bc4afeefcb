package bench_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/canalhq/canal/internal/bench"
	"github.com/canalhq/canal/server"
	"github.com/canalhq/canal/testenv"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// TestMain lets the test binary stand in for the canal binary: `latency
// -procs 2` starts its consumer as os.Executable() bench latency ..., and
// TestExitCode runs it as a user would.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "bench" {
		args := append([]string{"canal"}, os.Args[1:]...)
		if err := server.Run(context.Background(), args, os.Getenv, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "canal:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// run runs `canal bench args...` in-process and parses its output.
func run(t *testing.T, args ...string) (map[string]string, []string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := server.Run(t.Context(), append([]string{"canal", "bench"}, args...), os.Getenv, &stdout, &stderr)
	if err != nil {
		t.Logf("stderr: %s", stderr.String())
	}
	figures, names := parse(t, stdout.String())
	return figures, names, err
}

// parse reads name=value lines; anything else fails t.
func parse(t *testing.T, out string) (map[string]string, []string) {
	t.Helper()
	figures := map[string]string{}
	var names []string
	for line := range strings.Lines(out) {
		name, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			t.Fatalf("output line %q is not name=value; output:\n%s", line, out)
		}
		if _, dup := figures[name]; dup {
			t.Fatalf("figure %s printed twice; output:\n%s", name, out)
		}
		figures[name] = v
		names = append(names, name)
	}
	return figures, names
}

func number(t *testing.T, figures map[string]string, name string) float64 {
	t.Helper()
	v, ok := figures[name]
	if !ok {
		t.Fatalf("no %s in the output: %v", name, figures)
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatalf("%s=%q is not a number", name, v)
	}
	return f
}

// dbFor gives the -db value of a test on dialect: a new SQLite file, or
// the test PostgreSQL server (bench makes its own schema there).
func dbFor(t *testing.T, dialect string) string {
	if dialect == "postgres" {
		return testenv.PostgresURL(t)
	}
	return filepath.Join(t.TempDir(), "bench.db")
}

func TestThroughput(t *testing.T) {
	cases := []struct {
		bench, last, count string
	}{
		{"outbox", "relay_msgs_per_s", "published"},
		{"work", "work_items_per_s", "ran"},
	}
	for _, dialect := range []string{"sqlite", "postgres"} {
		for _, c := range cases {
			t.Run(dialect+"/"+c.bench, func(t *testing.T) {
				const n = 300
				db := dbFor(t, dialect)
				figures, names, err := run(t, c.bench, "-db", db, "-n", strconv.Itoa(n))
				if err != nil {
					t.Fatal(err)
				}
				if got := names[len(names)-1]; got != c.last {
					t.Errorf("last line is %s, want %s", got, c.last)
				}
				if got := figures["dialect"]; got != dialect {
					t.Errorf("dialect=%s, want %s", got, dialect)
				}
				if got := number(t, figures, c.count); got != n {
					t.Errorf("%s=%v, want every one of %d", c.count, got, n)
				}
				if got := number(t, figures, "duplicates"); got != 0 {
					t.Errorf("duplicates=%v", got)
				}
				if rate := number(t, figures, c.last); rate <= 0 {
					t.Errorf("%s=%v, want a positive rate", c.last, rate)
				}
				// What bench made is gone: the file here (the schema in TestSchemaCleanup).
				if dialect == "sqlite" {
					if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("the benchmark's file is still there: %v", err)
					}
				}
			})
		}
	}
}

func TestLatency(t *testing.T) {
	cases := []struct {
		name, dialect, procs string
	}{
		{"sqlite", "sqlite", "1"},
		{"postgres", "postgres", "1"},
		{"postgres-two-processes", "postgres", "2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db := dbFor(t, c.dialect)
			figures, names, err := run(t, "latency", "-db", db, "-rate", "50", "-d", "600ms", "-procs", c.procs)
			if err != nil {
				t.Fatal(err)
			}
			if got := names[len(names)-1]; got != "latency_p99_ms" {
				t.Errorf("last line is %s, want latency_p99_ms", got)
			}
			sent := number(t, figures, "sent")
			if sent < 20 {
				t.Errorf("sent=%v, want about 30 (50/s for 600ms)", sent)
			}
			if got := number(t, figures, "received"); got != sent {
				t.Errorf("received=%v, want sent=%v", got, sent)
			}
			if got := number(t, figures, "procs"); strconv.Itoa(int(got)) != c.procs {
				t.Errorf("procs=%v, want %s", got, c.procs)
			}
			p50, p99 := number(t, figures, "latency_p50_ms"), number(t, figures, "latency_p99_ms")
			if p50 <= 0 || p99 < p50 || number(t, figures, "latency_max_ms") < p99 {
				t.Errorf("latencies out of order: %v", figures)
			}
		})
	}
}

// TestSchemaCleanup: bench drops the schema it made, and refuses to use (or
// drop) one that exists.
func TestSchemaCleanup(t *testing.T) {
	base := testenv.PostgresURL(t)
	admin, err := gorm.Open(postgres.Open(base), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if sqlDB, err := admin.DB(); err == nil {
			sqlDB.Close()
		}
	})
	exists := func(schema string) bool {
		var ok bool
		if err := admin.Raw("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = ?)", schema).Scan(&ok).Error; err != nil {
			t.Fatal(err)
		}
		return ok
	}
	fresh := "canal_bench_test_" + strconv.Itoa(os.Getpid())
	if _, _, err := run(t, "outbox", "-db", base, "-n", "10", "-schema", fresh); err != nil {
		t.Fatal(err)
	}
	if exists(fresh) {
		t.Errorf("schema %s is still there after the benchmark", fresh)
	}

	mine := "user_owned_" + strconv.Itoa(os.Getpid())
	if err := admin.Exec("CREATE SCHEMA " + mine).Error; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("DROP SCHEMA " + mine + " CASCADE") })
	_, _, err = run(t, "outbox", "-db", base, "-n", "10", "-schema", mine)
	if !errors.Is(err, bench.ErrUsage) || !strings.Contains(err.Error(), "-schema "+mine) {
		t.Errorf("an existing schema gave %v, want a usage error naming -schema", err)
	}
	if !exists(mine) {
		t.Errorf("bench dropped the user's schema %s", mine)
	}
}

func TestBadFlags(t *testing.T) {
	existing := filepath.Join(t.TempDir(), "mine.db")
	if err := os.WriteFile(existing, []byte("not bench's"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string // the message names the flag or the problem
	}{
		{nil, "name a benchmark"},
		{[]string{"fast"}, `unknown benchmark "fast"`},
		{[]string{"outbox", "-n", "0"}, "-n 0"},
		{[]string{"outbox", "-n", "many"}, "-n"},
		{[]string{"work", "-n", "2000000"}, "-n 2000000"},
		{[]string{"outbox", "-workers", "-1"}, "-workers -1"},
		{[]string{"outbox", "-bogus"}, "-bogus"},
		{[]string{"outbox", "extra"}, `unexpected argument "extra"`},
		{[]string{"outbox", "-db", "mysql://x"}, "-db"},
		{[]string{"outbox", "-db", existing}, "the file exists"},
		{[]string{"outbox", "-schema", "s"}, "-schema \"s\": only for a postgres"},
		{[]string{"outbox", "-db", "postgres://127.0.0.1/x", "-schema", "Bad-Name"}, "-schema \"Bad-Name\""},
		{[]string{"outbox", "-log-level", "loud"}, "-log-level"},
		{[]string{"latency", "-rate", "0"}, "-rate 0"},
		{[]string{"latency", "-d", "1ns"}, "-d 1ns"},
		{[]string{"latency", "-procs", "3"}, "-procs 3"},
		{[]string{"latency", "-role", "boss"}, "-role"},
		{[]string{"latency", "-role", "consumer"}, "-role consumer: needs the -db"},
		{[]string{"work", "-rate", "5"}, "-rate"},                // latency's flag
		{[]string{"latency", "-memprofile", "m"}, "-memprofile"}, // the drains' flag
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			_, _, err := run(t, c.args...)
			if !errors.Is(err, bench.ErrUsage) {
				t.Fatalf("got %v, want a usage error", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
	data, err := os.ReadFile(existing)
	if err != nil || string(data) != "not bench's" {
		t.Errorf("the existing file was touched: %q %v", data, err)
	}
}

// TestMemProfile: -memprofile writes the allocations of the run and of the
// backlog's load, two profiles pprof reads.
func TestMemProfile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "allocs.prof")
	if _, _, err := run(t, "outbox", "-db", filepath.Join(dir, "b.db"), "-n", "200", "-memprofile", file); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{file, file + ".load"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// A pprof profile is gzipped protobuf.
		if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
			t.Errorf("%s is not a gzipped profile (%d bytes)", f, len(data))
		}
	}
}

// TestExitCode runs the binary as a user would: a bad flag exits non-zero
// with a message naming it, and -h exits 0.
func TestExitCode(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(exe, "bench", "outbox", "-n", "-5").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("exit: %v, want a non-zero exit code; output: %s", err, out)
	}
	if !strings.Contains(string(out), "-n -5: must be from 1 to 1000000") {
		t.Errorf("output does not name the flag: %s", out)
	}
	if out, err := exec.Command(exe, "bench", "outbox", "-h").CombinedOutput(); err != nil || !strings.Contains(string(out), "-n int") {
		t.Errorf("-h: %v, output: %s", err, out)
	}
}

// TestSoakRuns: a short soak samples, prints its table and a verdict.
func TestSoakRuns(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := server.Run(t.Context(), []string{"canal", "bench", "soak", "-duration", "3s", "-sample", "500ms", "-warmup", "1s", "-max-growth-mb", "1000", "-producers", "1"},
		os.Getenv, &stdout, &stderr)
	if err != nil {
		t.Fatalf("soak: %v\nstderr: %s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"rss_mb", "wal_mb", "fds", "\nverdict=FLAT\n", "rss_growth_mb=", "wal_growth_mb="} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^orders=[1-9]`).MatchString(out) || !regexp.MustCompile(`(?m)^work=[1-9]`).MatchString(out) {
		t.Errorf("no orders or no work committed:\n%s", out)
	}
}
