package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/testenv"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// clusterReceiver is an idempotent webhook end: it keeps every arrival.
type clusterReceiver struct {
	mu       sync.Mutex
	arrivals map[string][]time.Time // by message id
	firsts   map[string][]int       // by key: n of each first arrival, in order
	unique   int
	// hook, if set, sees each arrival first (outside the lock).
	hook atomic.Pointer[func(id string)]
}

func (rc *clusterReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Key string `json:"key"`
		N   int    `json:"n"`
	}
	b, _ := io.ReadAll(r.Body)
	// The webhook sends the message's payload as the body.
	if err := json.Unmarshal(b, &body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.Header.Get("Idempotency-Key")
	if h := rc.hook.Load(); h != nil {
		(*h)(id)
	}
	rc.mu.Lock()
	if len(rc.arrivals[id]) == 0 {
		rc.firsts[body.Key] = append(rc.firsts[body.Key], body.N)
		rc.unique++
	}
	rc.arrivals[id] = append(rc.arrivals[id], time.Now())
	rc.mu.Unlock()
	time.Sleep(2 * time.Millisecond) // kills land in the middle of publishes
	w.WriteHeader(http.StatusNoContent)
}

func (rc *clusterReceiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.unique
}

// Three real Canal processes share one PostgreSQL schema while another
// client commits thousands of outbox messages over 40 keys; one process is
// SIGKILLed mid-run. Every message must reach the receiver, each key's
// messages first arrive in commit order across processes, only the dead
// process's cut messages are sent twice (no live process's claim is taken),
// and what the dead process held is delivered by the others within seconds
// of its lease expiring, not at a restart. Wake-ups come by LISTEN/NOTIFY:
// the committer runs no relay.
func TestThreeProcessesShareTheOutbox(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real program; skipped with -short")
	}
	t.Parallel() // waits on processes, browsers and timers, not the CPU
	url := testenv.PostgresSchemaURL(t)
	bin := buildCanal(t)
	rc := &clusterReceiver{arrivals: map[string][]time.Time{}, firsts: map[string][]int{}}
	hook := httptest.NewServer(rc)
	defer hook.Close()

	db, err := gorm.Open(postgres.Open(url), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
	}()
	ctx := context.Background()
	if err := outbox.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}

	type child struct {
		cmd    *exec.Cmd
		stderr *lockedBuffer
		done   chan error
	}
	start := func(i int) *child {
		cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-db", url, "-demo=false", "-webhook-url", hook.URL, "-log-level", "warn")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		c := &child{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan error, 1)}
		cmd.Stderr = c.stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() || !strings.HasPrefix(sc.Text(), "canal: listening on ") {
			_ = cmd.Process.Kill()
			t.Fatalf("process %d: no listening line; stderr:\n%s", i, c.stderr.String())
		}
		go func() { _, _ = io.Copy(io.Discard, stdout); c.done <- cmd.Wait() }()
		return c
	}
	var children []*child
	for i := range 3 {
		children = append(children, start(i))
	}
	defer func() {
		for _, c := range children {
			_ = c.cmd.Process.Kill()
		}
	}()

	const n, keys, perTx = 4000, 40, 50
	ids := make([]string, 0, n)
	next := make([]int, keys)
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		for len(ids) < n {
			err := db.Transaction(func(tx *gorm.DB) error {
				for range perTx {
					k := len(ids) % keys
					key := fmt.Sprintf("order-%d", k)
					id, err := outbox.Add(ctx, tx, outbox.Message{Topic: "orders", Key: key, Payload: map[string]any{"key": key, "n": next[k]}})
					if err != nil {
						return err
					}
					next[k]++
					ids = append(ids, id)
				}
				return nil
			})
			if err != nil {
				t.Errorf("commit: %v", err)
				return
			}
		}
	}()

	testenv.Eventually(t, 60*time.Second, "a quarter delivered", func() bool { return rc.count() >= n/4 })
	// The victim dies in the middle of one of its own publishes: the
	// receiver kills it when a message it holds (its owner id is
	// host/pid/random) arrives.
	victim := children[1]
	owner := fmt.Sprintf("%%/%d/%%", victim.cmd.Process.Pid)
	var once sync.Once
	killedAt := make(chan time.Time, 1)
	kill := func(id string) {
		var mine int64
		db.Raw(`SELECT count(*) FROM canal_queue_items WHERE public_id = ? AND owner LIKE ?`, id, owner).Scan(&mine)
		if mine > 0 {
			once.Do(func() {
				_ = victim.cmd.Process.Signal(syscall.SIGKILL)
				killedAt <- time.Now()
			})
		}
	}
	rc.hook.Store(&kill)
	var killed time.Time
	select {
	case killed = <-killedAt:
	case <-time.After(60 * time.Second):
		t.Fatal("the victim sent nothing in a minute")
	}
	rc.hook.Store(nil)
	<-victim.done
	<-committed
	testenv.Eventually(t, 90*time.Second, "every message delivered", func() bool { return rc.count() == n })
	t.Logf("all %d delivered %.1fs after the kill", n, time.Since(killed).Seconds())

	rc.mu.Lock()
	defer rc.mu.Unlock()
	for k, seq := range rc.firsts {
		for i, got := range seq {
			if got != i {
				t.Fatalf("key %s: message %d arrived first where %d was due (first arrivals %v)", k, got, i, seq)
			}
		}
	}
	// Only messages cut by the kill were sent again, and each reached the
	// receiver within seconds of the dead process's lease expiring.
	relay, err := outbox.New(db, outbox.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	const lease = 10 * time.Second // outbox.Config's default, which the program uses
	cut := 0
	for _, id := range ids {
		rec, err := relay.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		wasCut := false
		for _, a := range rec.AttemptLog {
			wasCut = wasCut || a.Unfinished
		}
		arr := rc.arrivals[id]
		if len(arr) > 1 && !wasCut {
			t.Errorf("message %s sent %d times with no cut attempt: a live process's claim was taken", id, len(arr))
		}
		if !wasCut {
			continue
		}
		cut++
		last := arr[len(arr)-1]
		if last.Before(killed) {
			t.Errorf("cut message %s never arrived after the kill", id)
		} else if d := last.Sub(killed); d > lease+30*time.Second { // a deadline: a loaded machine is slow
			t.Errorf("cut message %s arrived %.1fs after the kill: not taken over within seconds of its lease (%s)", id, d.Seconds(), lease)
		}
	}
	if cut == 0 {
		t.Error("the killed process held no message: the kill proved nothing")
	}
	if t.Failed() {
		for i, c := range children {
			t.Logf("process %d:\n%s", i, c.stderr.String())
		}
	}
	t.Logf("%d messages cut by the kill were taken over", cut)

	for _, c := range children {
		if c == victim {
			continue
		}
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-c.done:
			if err != nil {
				t.Errorf("survivor exit: %v\n%s", err, c.stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("survivor still running 30s after SIGTERM")
		}
	}
}
