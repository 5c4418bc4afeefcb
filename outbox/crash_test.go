package outbox

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
	"github.com/libtnb/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Environment of the child relay process that TestMain runs instead of the
// tests (see crashChild).
const (
	crashChildDB   = "CANAL_OUTBOX_CRASH_CHILD_DB"
	crashChildHook = "CANAL_OUTBOX_CRASH_CHILD_HOOK"
	// Optional: the child's lease (a duration) and MaxAttempts.
	crashChildLease = "CANAL_OUTBOX_CRASH_CHILD_LEASE"
	crashChildMax   = "CANAL_OUTBOX_CRASH_CHILD_MAX_ATTEMPTS"
)

func TestMain(m *testing.M) {
	if db := os.Getenv(crashChildDB); db != "" {
		os.Exit(crashChild(db, os.Getenv(crashChildHook)))
	}
	os.Exit(m.Run())
}

// crashChild is a minimal program running Canal's relay on a SQLite file
// towards a webhook, until it is killed.
func crashChild(dbPath, hook string) int {
	db, err := openSQLiteFile(dbPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	if err := Migrate(ctx, db); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := Config{Lease: 3 * time.Second}
	if v := os.Getenv(crashChildLease); v != "" {
		if cfg.Lease, err = time.ParseDuration(v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	cfg.PublishTimeout = cfg.Lease * 2 / 3
	if v := os.Getenv(crashChildMax); v != "" {
		if cfg.MaxAttempts, err = strconv.Atoi(v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	r, err := New(db, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	wh, err := NewWebhook(hook, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r.RegisterDefault(wh)
	if err := r.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func openSQLiteFile(path string) (*gorm.DB, error) {
	return gorm.Open(sqlite.Open(path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"),
		&gorm.Config{Logger: logger.Discard})
}

// TestCrashRealProgram builds Canal itself and kills it with SIGKILL at
// random moments while it relays thousands of messages to a webhook; every
// committed message must still arrive.
func TestCrashRealProgram(t *testing.T) {
	program := testenv.NewProgram("github.com/canalhq/canal")
	defer program.Remove()
	bin := program.Path(t)
	crashTest(t, 10000, func(dbPath, hook string) *exec.Cmd {
		return exec.Command(bin, "-db", dbPath, "-addr", "127.0.0.1:0", "-demo=false", "-webhook-url", hook)
	})
}

// TestCrashChildRelay runs the same crash test on this package alone: the
// child is this test binary running a bare relay (see TestMain).
func TestCrashChildRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: kills child processes; skipped with -short")
	}
	crashTest(t, 10000, func(dbPath, hook string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildDB+"="+dbPath, crashChildHook+"="+hook)
		return cmd
	})
}

// receiver is the webhook end: it counts deliveries per Idempotency-Key.
type receiver struct {
	mu   sync.Mutex
	seen map[string]int
	rnd  *rand.Rand
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("Idempotency-Key")
	rc.mu.Lock()
	rc.seen[id]++
	delay := time.Duration(rc.rnd.IntN(3)) * time.Millisecond
	rc.mu.Unlock()
	// A little latency so that kills land in the middle of publishes.
	time.Sleep(delay)
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) stats(ids []string) (missing, unique, dups int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, id := range ids {
		if n := rc.seen[id]; n == 0 {
			missing++
		} else {
			unique++
			dups += n - 1
		}
	}
	return missing, unique, dups
}

func crashTest(t *testing.T, n int, child func(dbPath, hook string) *exec.Cmd) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "canal.db")
	db, err := openSQLiteFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if s, err := db.DB(); err == nil {
			s.Close()
		}
	}()
	ctx := context.Background()
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	// Commit the messages before the first start: 100 per transaction,
	// over 50 keys, as a busy service would.
	ids := make([]string, 0, n)
	for len(ids) < n {
		err := db.Transaction(func(tx *gorm.DB) error {
			for range min(100, n-len(ids)) {
				id, err := Add(ctx, tx, Message{Topic: "crash.test", Key: fmt.Sprintf("k%d", len(ids)%50), Payload: map[string]int{"n": len(ids)}})
				if err != nil {
					return err
				}
				ids = append(ids, id)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	rc := &receiver{seen: map[string]int{}, rnd: rand.New(rand.NewPCG(seed, 1))}
	hook := httptest.NewServer(rc)
	defer hook.Close()

	logs := filepath.Join(dir, "child.log")
	logf, err := os.Create(logs)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	start := func() *exec.Cmd {
		cmd := child(dbPath, hook.URL+"/hook")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	dump := func() {
		b, _ := os.ReadFile(logs)
		s := string(b)
		if len(s) > 4000 {
			s = s[len(s)-4000:]
		}
		t.Logf("child output (tail):\n%s", s)
	}

	const kills = 5
	done := 0
	for done < kills {
		if missing, _, _ := rc.stats(ids); missing == 0 {
			break // all delivered already: more kills would prove nothing
		}
		cmd := start()
		// Kill at a random moment shortly after the child has started to
		// deliver, so that each kill lands while messages are in flight.
		_, before, _ := rc.stats(ids)
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if _, got, dups := rc.stats(ids); got > before || dups > 0 {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		wait := time.Duration(10+rnd.IntN(240)) * time.Millisecond
		time.Sleep(wait)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		done++
		missing, unique, dups := rc.stats(ids)
		t.Logf("kill %d, %s into delivery: %d delivered, %d missing, %d duplicates", done, wait, unique, missing, dups)
		if unique == before && dups == 0 {
			dump()
			t.Fatalf("the child delivered nothing in a minute before kill %d", done)
		}
	}
	if done < 3 {
		t.Errorf("only %d kills landed before everything was delivered: make the backlog bigger", done)
	}

	// The last run must deliver everything left, including the messages
	// whose leases the killed processes held.
	cmd := start()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}()
	ok := false
	testenv.Eventually(t, 5*time.Minute, "every committed message delivered, or the child gone", func() bool {
		missing, _, _ := rc.stats(ids)
		ok = missing == 0
		select {
		case <-exited:
			return true
		default:
			return ok
		}
	})
	missing, unique, dups := rc.stats(ids)
	if !ok {
		dump()
		t.Fatalf("%d of %d committed messages never arrived", missing, n)
	}
	rc.mu.Lock()
	strays := len(rc.seen) - unique
	rc.mu.Unlock()
	if strays != 0 {
		t.Errorf("%d deliveries with an unknown id", strays)
	}
	t.Logf("all %d messages arrived after %d SIGKILLs; %d duplicates (%.2f%%), dropped by id at the receiver", n, done, dups, 100*float64(dups)/float64(n))
}

// TestPoisonMessageThatKillsTheProcessGoesDead: the receiver kills the
// relay's process whenever one message arrives, as a payload that crashes a
// publisher would. Each life of the process sends it once: first with the
// other message, then alone. After MaxAttempts cuts while alone the next
// life makes it dead unsent, and the other message, out with it at the
// first crash, is delivered with no failure counted against it.
func TestPoisonMessageThatKillsTheProcessGoesDead(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: kills child processes; skipped with -short")
	}
	dbPath := filepath.Join(t.TempDir(), "canal.db")
	db, err := openSQLiteFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.MaxAttempts = 3
	admin := newRelay(t, db, cfg) // never run: adds and reads only
	poison := addN(t, admin, "poison", nil, 1)[0]
	fine := addN(t, admin, "fine", nil, 1)[0]

	var mu sync.Mutex
	var child *exec.Cmd
	poisonSends := 0
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Idempotency-Key") != poison {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		mu.Lock()
		poisonSends++
		_ = child.Process.Signal(syscall.SIGKILL)
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable) // nobody is left to read it
	}))
	defer hook.Close()

	for life := 1; statusOf(t, admin, poison) != StatusDead; life++ {
		if life > 8 {
			t.Fatalf("the poison message is %s after %d lives of the process", statusOf(t, admin, poison), life-1)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildDB+"="+dbPath, crashChildHook+"="+hook.URL,
			crashChildLease+"=1s", crashChildMax+"=3")
		mu.Lock()
		child = cmd
		if err := cmd.Start(); err != nil {
			mu.Unlock()
			t.Fatal(err)
		}
		mu.Unlock()
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		// This life ends when the receiver kills it, or gives up the
		// message without sending it (then it is stopped here).
		testenv.Eventually(t, 30*time.Second, "the process dies or the message goes dead", func() bool {
			select {
			case <-exited:
				return true
			default:
				return statusOf(t, admin, poison) == StatusDead
			}
		})
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}

	mu.Lock()
	sends := poisonSends
	mu.Unlock()
	if sends != 4 {
		t.Errorf("the poison message was sent %d times, want 1 + MaxAttempts (3)", sends)
	}
	rec := mustGet(t, admin, poison)
	if rec.Failures != 3 || rec.LastError != unfinishedText || len(rec.AttemptLog) != 4 {
		t.Errorf("poison: %d failures, last error %q, %d logged attempts; want 3, the lease's, 4", rec.Failures, rec.LastError, len(rec.AttemptLog))
	}
	if f := mustGet(t, admin, fine); f.Status != StatusDispatched || f.Failures != 0 {
		t.Errorf("the other message is %s with %d failures, want dispatched with none", f.Status, f.Failures)
	}
}
