package jobs_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/testenv"
)

// leadEnv makes the test binary one of the Canal processes of
// TestLeaderKilledJobKeepsItsInterval.
const (
	leadEnv      = "CANAL_JOBS_TEST_LEAD_DB"
	leadInterval = 3 * time.Second
	leadRun      = 300 * time.Millisecond
)

// leadChild registers the recurring job "tick", whose handler records each
// run's process, start and end in lead_runs (the start as the run begins,
// so a run the kill cuts is seen), and runs until killed.
func leadChild(db string) int {
	gdb, err := openDB(db)
	var s jobs.Store
	if err == nil {
		s, err = jobs.NewStore(gdb)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("pid", os.Getpid())
	p := jobs.NewProcessor(jobs.Config{Store: s, Logger: log})
	err = p.Register("tick", leadInterval, true, func(ctx context.Context) error {
		var id int64
		if err := gdb.WithContext(ctx).Raw(`INSERT INTO lead_runs (pid, started_us) VALUES (?, ?) RETURNING id`,
			os.Getpid(), time.Now().UnixMicro()).Scan(&id).Error; err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(leadRun):
		}
		return gdb.Exec(`UPDATE lead_runs SET ended_us = ? WHERE id = ?`, time.Now().UnixMicro(), id).Error
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("started")
	_ = p.Run(context.Background())
	return 0
}

type leadRunRow struct {
	PID       int   `gorm:"column:pid"`
	StartedUS int64 `gorm:"column:started_us"`
	EndedUS   *int64
}

// Three Canal processes (real child processes) share one PostgreSQL schema
// and register the same recurring job; the leader is SIGKILLed in the
// middle of a run. One process runs the job at a time, before and after:
// runs never overlap, never come closer than the interval (no run doubled
// around the hand-over), and the first run after the kill comes within one
// period of when it was due (no run lost).
func TestLeaderKilledJobKeepsItsInterval(t *testing.T) {
	url := migratedSchema(t)
	gdb, err := openDB(url)
	must(t, err)
	t.Cleanup(func() {
		if sqlDB, err := gdb.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	must(t, gdb.Exec(`CREATE TABLE lead_runs (id BIGSERIAL PRIMARY KEY, pid INT NOT NULL, started_us BIGINT NOT NULL, ended_us BIGINT)`).Error)
	children := map[int]*exec.Cmd{}
	for range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), leadEnv+"="+url)
		cmd.Stderr = os.Stderr
		cmd.Stdout = os.Stdout
		must(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		children[cmd.Process.Pid] = cmd
	}
	runs := func() []leadRunRow {
		var rs []leadRunRow
		must(t, gdb.Raw(`SELECT pid, started_us, ended_us FROM lead_runs ORDER BY started_us`).Scan(&rs).Error)
		return rs
	}
	testenv.Eventually(t, 2*wait, "two runs", func() bool { return len(runs()) >= 2 })

	// Kill the leader while a run of it is in progress.
	var victim int
	testenv.Eventually(t, 2*wait, "the leader in the middle of a run", func() bool {
		var open []leadRunRow
		must(t, gdb.Raw(`SELECT pid, started_us, ended_us FROM lead_runs WHERE ended_us IS NULL`).Scan(&open).Error)
		if len(open) != 1 {
			return false
		}
		var owner string
		must(t, gdb.Raw(`SELECT owner FROM canal_job_leader`).Scan(&owner).Error)
		if !strings.Contains(owner, "/"+strconv.Itoa(open[0].PID)+"/") {
			t.Fatalf("a run of process %d is in progress while %q leads", open[0].PID, owner)
		}
		victim = open[0].PID
		return true
	})
	killed := time.Now()
	must(t, children[victim].Process.Signal(syscall.SIGKILL))
	_ = children[victim].Wait()
	before := len(runs())
	testenv.Eventually(t, 4*wait, "three runs after the kill", func() bool { return len(runs()) >= before+3 })

	rs := runs()
	pids := map[int]int{}
	for i, r := range rs {
		pids[r.PID]++
		if i == 0 {
			continue
		}
		prev := rs[i-1]
		// A new leader schedules from the fenced start, a few milliseconds
		// before the handler records it: a little slack, far below a
		// doubled run's (those also overlap, checked below).
		if gap := time.Duration(r.StartedUS-prev.StartedUS) * time.Microsecond; gap < leadInterval-100*time.Millisecond {
			t.Errorf("run %d started %s after the one before: closer than the interval %s (doubled)", i, gap, leadInterval)
		}
		if prev.EndedUS == nil {
			if prev.PID != victim {
				t.Errorf("run %d of live process %d never ended", i-1, prev.PID)
			} else if r.StartedUS < killed.UnixMicro() {
				t.Errorf("run %d started while the killed leader's run was in progress", i)
			}
		} else if r.StartedUS < *prev.EndedUS {
			t.Errorf("run %d (process %d) overlaps run %d (process %d)", i, r.PID, i-1, prev.PID)
		}
		// Due an interval after the end (or the start, for the cut run) of
		// the one before; the hand-over may delay it by up to one period.
		prevEnd := prev.StartedUS
		if prev.EndedUS != nil {
			prevEnd = *prev.EndedUS
		}
		if late := time.Duration(r.StartedUS-prevEnd)*time.Microsecond - leadInterval; late > leadInterval+leadRun {
			t.Errorf("run %d came %s late: more than one period", i, late)
		}
	}
	if _, ok := pids[victim]; !ok || len(pids) < 2 {
		t.Errorf("runs by process: %v; want the victim's and a successor's", pids)
	}
	if slices.ContainsFunc(rs[before:], func(r leadRunRow) bool { return r.PID == victim }) {
		t.Error("the killed process ran after the kill")
	}
	t.Logf("%d runs by process %v; victim %d", len(rs), pids, victim)
}
