package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// PGBinEnv names the directory of PostgreSQL's server programs (initdb,
// pg_ctl) for PrivatePostgres; unset, the newest /usr/lib/postgresql/*/bin.
const PGBinEnv = "CANAL_TEST_PG_BIN"

// PrivatePG is a PostgreSQL cluster of one test's own, on a port of its
// own, that the test may stop and start: database outages are tested on it,
// never on the shared server.
type PrivatePG struct {
	URL string // postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable

	t    testing.TB
	bin  string
	dir  string // owned by the server's user: data/, the socket, the log
	port int
	as   []string // runuser -u postgres -- when the test runs as root
}

// PrivatePostgres makes a cluster in a temporary directory (initdb; as user
// postgres when the test runs as root, since initdb refuses root), starts
// it on a free port of 127.0.0.1, and removes it when the test ends. It
// fails t when PostgreSQL's server programs are missing.
func PrivatePostgres(t testing.TB) *PrivatePG {
	t.Helper()
	bin := os.Getenv(PGBinEnv)
	if bin == "" {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		slices.SortFunc(dirs, func(a, b string) int { return pgVersion(b) - pgVersion(a) })
		if len(dirs) > 0 {
			bin = dirs[0]
		}
	}
	if _, err := os.Stat(filepath.Join(bin, "pg_ctl")); err != nil {
		t.Fatalf("testenv: no PostgreSQL server programs (initdb, pg_ctl): set %s or install Debian's postgresql: %v", PGBinEnv, err)
	}
	dir, err := os.MkdirTemp("", "canal-pg-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	p := &PrivatePG{t: t, bin: bin, dir: dir}
	t.Cleanup(func() {
		_ = p.ctl("stop", "-m", "immediate") // nothing to keep
		_ = os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("testenv: running as root, and initdb needs another user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		p.as = []string{"runuser", "-u", "postgres", "--"}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	p.port = ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	if out, err := p.run(filepath.Join(bin, "initdb"), "-D", p.data(), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		t.Fatalf("testenv: initdb: %v\n%s", err, out)
	}
	p.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
	p.Start()
	return p
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func (p *PrivatePG) data() string { return filepath.Join(p.dir, "data") }

func (p *PrivatePG) run(name string, args ...string) ([]byte, error) {
	argv := append(append(append([]string{}, p.as...), name), args...)
	return exec.Command(argv[0], argv[1:]...).CombinedOutput()
}

func (p *PrivatePG) ctl(args ...string) error {
	args = append(args, "-D", p.data(), "-w", "-t", "60")
	if out, err := p.run(filepath.Join(p.bin, "pg_ctl"), args...); err != nil {
		return fmt.Errorf("pg_ctl %s: %w\n%s", args[0], err, out)
	}
	return nil
}

// Start starts the server and waits until it accepts connections.
func (p *PrivatePG) Start() {
	p.t.Helper()
	// Sockets in its own directory; fsync off: a test's data need not
	// survive a power cut, and fast shutdowns still write everything.
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", p.port, p.dir)
	if err := p.ctl("start", "-l", filepath.Join(p.dir, "server.log"), "-o", opts); err != nil {
		p.t.Fatalf("testenv: %v", err)
	}
}

// Stop stops the server the way an operator's restart does (fast: open
// connections are terminated, transactions rolled back) and waits for it.
func (p *PrivatePG) Stop() {
	p.t.Helper()
	if err := p.ctl("stop", "-m", "fast"); err != nil {
		p.t.Fatalf("testenv: %v", err)
	}
}

// Restart stops and starts the server.
func (p *PrivatePG) Restart() {
	p.t.Helper()
	p.Stop()
	p.Start()
}
