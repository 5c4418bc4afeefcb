package jobs_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
)

// mpEnv makes the test binary one of the Canal processes of
// TestThreeProcessesOneKilled; mpName and mpItems say which and how many
// items it enqueues.
const (
	mpEnv   = "CANAL_JOBS_TEST_MP_DB"
	mpName  = "CANAL_JOBS_TEST_MP_NAME"
	mpItems = "CANAL_JOBS_TEST_MP_ITEMS"
	// mpLease is the children's lease and the heartbeat renews it every
	// second: a killed child's claims expire between mpLease-1s and
	// mpLease after the kill.
	mpLease = 3 * time.Second
)

// mpChild is one Canal process: it runs work items of kind "count", whose
// handler records each run (process, start) in mp_runs, enqueues its
// share of items from 4 goroutines, reports each accepted id on stdout, and
// runs until killed.
func mpChild(db string) int {
	ctx := context.Background()
	name := os.Getenv(mpName)
	n, _ := strconv.Atoi(os.Getenv(mpItems))
	// p0, the one to be killed, is slower, so it always has items out.
	sleep := 2 * time.Millisecond
	if name == "p0" {
		sleep = 20 * time.Millisecond
	}
	gdb, err := openDB(db)
	var s jobs.Store
	if err == nil {
		s, err = jobs.NewStore(gdb)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if sqlDB, err := gdb.DB(); err == nil {
		sqlDB.SetMaxOpenConns(16)
		sqlDB.SetMaxIdleConns(16)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("process", name)
	p := jobs.NewProcessor(jobs.Config{Store: s, Workers: 8, WorkLease: mpLease, WorkCapacity: 100000, Logger: log})
	err = p.RegisterKind("count", func(ctx context.Context, w jobs.WorkItem) error {
		// Recorded as it starts, so that a run the kill cuts is seen.
		err := gdb.WithContext(ctx).Exec(`INSERT INTO mp_runs (item_id, process, started_us) VALUES (?, ?, ?)`,
			w.ID, name, time.Now().UnixMicro()).Error
		time.Sleep(sleep)
		return err
	}, jobs.KindOptions{BreakerFailures: -1})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() { _ = p.Run(ctx) }()
	var out sync.Mutex
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < n; i += 4 {
				it, err := p.Enqueue(ctx, jobs.NewWork{Kind: "count", Priority: jobs.Priority(i % 4)})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				out.Lock()
				fmt.Println("accepted", it.ID)
				out.Unlock()
			}
		})
	}
	wg.Wait()
	out.Lock()
	fmt.Println("enqueued")
	out.Unlock()
	select {} // until killed
}

type mpRun struct {
	ItemID    string `gorm:"column:item_id"`
	Process   string `gorm:"column:process"`
	StartedUS int64  `gorm:"column:started_us"`
}

// Three Canal processes (real child processes) share one PostgreSQL schema
// and enqueue thousands of items; one is SIGKILLed mid-run. The two others
// take its items over once its leases expired, without a restart: every
// item ends done, no item runs twice in live processes, and an item re-runs
// only if the dead process had started it, and only after its lease ended.
func TestThreeProcessesOneKilled(t *testing.T) {
	if testenv.PostgresURL(t) == "" {
		return // PostgresURL skipped the test, naming the variable
	}
	const perChild = 1500
	db := testenv.PostgresSchemaURL(t)
	gdb, err := openDB(db)
	must(t, err)
	t.Cleanup(func() {
		if sqlDB, err := gdb.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	must(t, jobs.Migrate(context.Background(), gdb))
	must(t, gdb.Exec(`CREATE TABLE mp_runs (id BIGSERIAL PRIMARY KEY, item_id TEXT NOT NULL, process TEXT NOT NULL,
  started_us BIGINT NOT NULL)`).Error)
	s, err := jobs.NewStore(gdb)
	must(t, err)

	type child struct {
		cmd      *exec.Cmd
		accepted chan string
		enqueued chan struct{}
	}
	var children []*child
	for i := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), mpEnv+"="+db, mpName+"=p"+strconv.Itoa(i), mpItems+"="+strconv.Itoa(perChild))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		must(t, err)
		must(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		c := &child{cmd: cmd, accepted: make(chan string, perChild), enqueued: make(chan struct{})}
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if id, ok := strings.CutPrefix(sc.Text(), "accepted "); ok {
					c.accepted <- id
				} else if sc.Text() == "enqueued" {
					close(c.enqueued)
				}
			}
			close(c.accepted)
		}()
		children = append(children, c)
	}

	// Kill p0 mid-run: once it has accepted a third of its items and run
	// some of everyone's.
	accepted := map[string]bool{}
	for range perChild / 3 {
		id, ok := <-children[0].accepted
		if !ok {
			t.Fatal("p0 stopped early")
		}
		accepted[id] = true
	}
	testenv.Eventually(t, wait, "p0 has run items", func() bool {
		var n int64
		return gdb.Raw(`SELECT COUNT(*) FROM mp_runs WHERE process = 'p0'`).Scan(&n).Error == nil && n > 0
	})
	// What p0 holds (claimed or running) as it is killed: its handler
	// takes 20 ms, so what it held just before is mostly still out.
	var held []string
	testenv.Eventually(t, wait, "p0 holds items", func() bool {
		held = nil
		err := gdb.Raw(`SELECT public_id FROM canal_queue_items WHERE queue = 'work' AND state = 'running' AND owner LIKE ?`,
			"%/"+strconv.Itoa(children[0].cmd.Process.Pid)+"/%").Scan(&held).Error
		return err == nil && len(held) >= 5
	})
	killed := time.Now()
	must(t, children[0].cmd.Process.Signal(syscall.SIGKILL))
	_ = children[0].cmd.Wait()
	for id := range children[0].accepted { // what it printed before dying
		accepted[id] = true
	}
	for _, c := range children[1:] {
		select {
		case <-c.enqueued:
		case <-time.After(2 * time.Minute):
			t.Fatal("a live child did not finish enqueuing")
		}
		for len(c.accepted) > 0 {
			accepted[<-c.accepted] = true
		}
	}
	if len(accepted) < 2*perChild+perChild/3 {
		t.Fatalf("%d items accepted", len(accepted))
	}

	// Every item in the table (p0 may have inserted some it never
	// reported) ends done, with the two live processes only.
	var total int64
	testenv.Eventually(t, 2*time.Minute, "every item done", func() bool {
		var open int64
		_ = gdb.Raw(`SELECT COUNT(*) FROM canal_queue_items WHERE queue = 'work' AND state <> 'done'`).Scan(&open).Error
		_ = gdb.Raw(`SELECT COUNT(*) FROM canal_queue_items WHERE queue = 'work'`).Scan(&total).Error
		return open == 0 && total >= int64(len(accepted))
	})
	for id := range accepted {
		if w := state(t, s, id); w.State != jobs.WorkDone {
			t.Fatalf("accepted item %s is %s", id, w.State)
		}
	}

	var runs []mpRun
	must(t, gdb.Raw(`SELECT item_id, process, started_us FROM mp_runs ORDER BY started_us`).Scan(&runs).Error)
	byItem := map[string][]mpRun{}
	for _, r := range runs {
		byItem[r.ItemID] = append(byItem[r.ItemID], r)
	}
	if int64(len(byItem)) != total {
		t.Fatalf("%d items ran, %d in the table", len(byItem), total)
	}
	leaseEnd := killed.Add(mpLease - time.Second).UnixMicro() // the earliest its leases could end
	var reruns int
	var lastTakeover time.Duration
	for id, rs := range byItem {
		live := 0
		for _, r := range rs {
			if r.Process != "p0" {
				live++
			}
		}
		if live > 1 {
			t.Errorf("item %s ran %d times in live processes: %+v", id, live, rs)
		}
		if len(rs) == 1 {
			continue
		}
		// A second run: only of an item the dead process had started,
		// and only once its lease was over.
		reruns++
		first, again := rs[0], rs[len(rs)-1]
		if first.Process != "p0" || again.Process == "p0" || len(rs) > 2 {
			t.Errorf("item %s ran %d times: %+v", id, len(rs), rs)
		}
		if again.StartedUS < leaseEnd {
			t.Errorf("item %s re-ran %s after the kill, before p0's lease could end", id, time.Duration(again.StartedUS-killed.UnixMicro())*time.Microsecond)
		}
		lastTakeover = max(lastTakeover, time.Duration(again.StartedUS-killed.UnixMicro())*time.Microsecond)
	}
	// The items p0 held when it died: taken over by the live processes,
	// each only once p0's lease could have ended.
	takenOver := 0
	for _, id := range held {
		for _, r := range byItem[id] {
			if r.Process == "p0" {
				continue
			}
			takenOver++
			if r.StartedUS < leaseEnd {
				t.Errorf("item %s, held by p0, ran in %s %s after the kill, before p0's lease could end", id, r.Process,
					time.Duration(r.StartedUS-killed.UnixMicro())*time.Microsecond)
			}
			lastTakeover = max(lastTakeover, time.Duration(r.StartedUS-killed.UnixMicro())*time.Microsecond)
		}
	}
	if takenOver == 0 {
		t.Errorf("none of the %d items p0 held at the kill was taken over", len(held))
	}
	t.Logf("%d items, %d runs; p0 held %d at the kill, %d taken over, %d re-runs of items it had started; last taken over %s after the kill",
		total, len(runs), len(held), takenOver, reruns, lastTakeover)
	// Taken over by the live processes while they run, not at a restart:
	// within seconds of the lease's end (a generous bound, not a speed target).
	if lastTakeover > mpLease+20*time.Second {
		t.Errorf("p0's items taken over %s after the kill", lastTakeover)
	}
}
