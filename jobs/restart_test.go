package jobs_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
	"github.com/libtnb/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// childEnv makes the test binary act as a Canal process that accepts work
// and gets killed with SIGKILL mid-work (see TestKilledMidWorkLosesNothing).
const childEnv = "CANAL_JOBS_TEST_CHILD_DB"

func TestMain(m *testing.M) {
	if db := os.Getenv(childEnv); db != "" {
		os.Exit(child(db))
	}
	if db := os.Getenv(mpEnv); db != "" {
		os.Exit(mpChild(db))
	}
	if db := os.Getenv(leadEnv); db != "" {
		os.Exit(leadChild(db))
	}
	os.Exit(m.Run())
}

// childItems is more than the child claims ahead of its workers (3 + 16),
// so that some wait in the table when it is killed.
const childItems = 40

func openDB(db string) (*gorm.DB, error) {
	cfg := &gorm.Config{Logger: logger.Discard}
	if strings.HasPrefix(db, "postgres://") {
		return gorm.Open(postgres.Open(db), cfg)
	}
	return gorm.Open(sqlite.Open(db+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"), cfg)
}

// child accepts childItems items whose handler never finishes, reports each
// accepted id and each start on stdout, then waits to be killed.
func child(db string) int {
	ctx := context.Background()
	gdb, err := openDB(db)
	if err == nil {
		err = jobs.Migrate(ctx, gdb)
	}
	var s jobs.Store
	if err == nil {
		s, err = jobs.NewStore(gdb)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	p := jobs.NewProcessor(jobs.Config{Store: s, Workers: 3, WorkLease: 2 * time.Second, WorkCapacity: 1000})
	err = p.RegisterKind("report.pdf", func(ctx context.Context, w jobs.WorkItem) error {
		fmt.Println("started", w.ID)
		<-ctx.Done()
		return ctx.Err()
	}, jobs.KindOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() { _ = p.Run(ctx) }()
	for i := range childItems {
		it, err := p.Enqueue(ctx, jobs.NewWork{Kind: "report.pdf", Priority: jobs.Priority(i % 4)})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("accepted", it.ID)
	}
	select {} // until SIGKILL
}

// The processor is killed with SIGKILL while items run and others wait;
// after a restart every item it had accepted reaches done.
func TestKilledMidWorkLosesNothing(t *testing.T) {
	for _, d := range []struct {
		name string
		db   func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "canal.db") }},
		{"postgres", func(t *testing.T) string { return testenv.PostgresSchemaURL(t) }},
	} {
		t.Run(d.name, func(t *testing.T) {
			db := d.db(t)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"="+db)
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			must(t, err)
			must(t, cmd.Start())
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

			accepted, started := map[string]bool{}, map[string]bool{}
			sc := bufio.NewScanner(out)
			for (len(accepted) < childItems || len(started) < 3) && sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) == 2 && f[0] == "accepted" {
					accepted[f[1]] = true
				} else if len(f) == 2 && f[0] == "started" {
					started[f[1]] = true
				}
			}
			if len(accepted) < childItems || len(started) < 3 {
				t.Fatalf("child stopped early: %d accepted, %d started", len(accepted), len(started))
			}
			must(t, cmd.Process.Signal(syscall.SIGKILL))
			_ = cmd.Wait()

			gdb, err := openDB(db)
			must(t, err)
			t.Cleanup(func() {
				if sqlDB, err := gdb.DB(); err == nil {
					_ = sqlDB.Close()
				}
			})
			s, err := jobs.NewStore(gdb)
			must(t, err)
			var interrupted, pending int
			for id := range accepted {
				switch state(t, s, id).State {
				case jobs.WorkRunning:
					interrupted++
				case jobs.WorkPending:
					pending++
				}
			}
			if interrupted == 0 || pending == 0 || interrupted+pending != childItems {
				t.Fatalf("after the kill: %d running, %d pending of %d; want both kinds and nothing else", interrupted, pending, childItems)
			}

			// The dead child's claims are rescued once their lease (2s)
			// expired, and run one at a time as suspects.
			p := jobs.NewProcessor(jobs.Config{Store: s, Workers: 3})
			must(t, p.RegisterKind("report.pdf", func(context.Context, jobs.WorkItem) error { return nil }, jobs.KindOptions{}))
			running(t, p)
			for id := range accepted {
				w := waitState(t, s, id, jobs.WorkDone)
				if started[id] && w.Attempts < 1 {
					t.Errorf("item %s: %d attempts", id, w.Attempts)
				}
			}
		})
	}
}
