package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// canalProc is one running canal binary.
type canalProc struct {
	cmd    *exec.Cmd
	url    string
	stderr *lockedBuffer
}

func startCanal(t *testing.T, bin string, args ...string) *canalProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0", "-log-level", "warn"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &canalProc{cmd: cmd, stderr: &lockedBuffer{}}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("process %d:\n%s", cmd.Process.Pid, c.stderr.String())
		}
	})
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "canal: listening on ") {
		t.Fatalf("no listening line; stderr:\n%s", c.stderr.String())
	}
	c.url = strings.TrimPrefix(sc.Text(), "canal: listening on ")
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return c
}

// call sends a request and decodes the JSON answer.
func call(t *testing.T, method, url string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s %s: %d, body not JSON: %v", method, url, resp.StatusCode, err)
	}
	return resp.StatusCode, body
}

// Two demo processes and a standalone dashboard (-demo=false) share one
// PostgreSQL schema. The buttons of the dashboard and of the follower
// reach the leader: stop stops the job there (no scheduled run after the
// reply), trigger runs it there; once the leader is SIGKILLed, the other
// demo process takes over within seconds and the dashboard's commands
// reach it.
func TestButtonsOnAnyProcessReachTheLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real program; skipped with -short")
	}
	t.Parallel() // waits on processes, browsers and timers, not the CPU
	url := testenv.PostgresSchemaURL(t)
	bin := buildCanal(t)
	a := startCanal(t, bin, "-db", url)
	b := startCanal(t, bin, "-db", url)
	dash := startCanal(t, bin, "-db", url, "-demo=false")
	db, err := gorm.Open(postgres.Open(url), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
	}()
	leaderPID := func() int {
		var owner string
		db.Raw(`SELECT owner FROM canal_job_leader WHERE until_us > ?`, time.Now().UnixMicro()).Scan(&owner)
		if parts := strings.Split(owner, "/"); len(parts) == 3 {
			pid, _ := strconv.Atoi(parts[1])
			return pid
		}
		return 0
	}
	var lead, follower *canalProc
	testenv.Eventually(t, 30*time.Second, "a leader", func() bool {
		switch leaderPID() {
		case a.cmd.Process.Pid:
			lead, follower = a, b
		case b.cmd.Process.Pid:
			lead, follower = b, a
		}
		return lead != nil
	})

	// Stop on the dashboard stops "report" on the leader.
	code, body := call(t, http.MethodPost, dash.url+"/api/jobs/report/stop")
	replied := time.Now()
	if code != http.StatusOK || body["running"] != false {
		t.Fatalf("stop on the dashboard: %d %v", code, body)
	}
	if code, body := call(t, http.MethodGet, lead.url+"/api/jobs/report"); code != http.StatusOK || body["running"] != false {
		t.Fatalf("the leader's report after the stop: %d %v", code, body)
	}
	if code, body := call(t, http.MethodPost, follower.url+"/api/jobs/report/stop"); code != http.StatusConflict || body["error"] == "" {
		t.Fatalf("stop again on the follower: %d %v, want 409 with the leader's error", code, body)
	}
	// Trigger on the follower runs it once, on the leader, by hand.
	if code, body := call(t, http.MethodPost, follower.url+"/api/jobs/report/trigger"); code != http.StatusOK {
		t.Fatalf("trigger on the follower: %d %v", code, body)
	}
	testenv.Eventually(t, 30*time.Second, "the triggered run recorded", func() bool {
		var n int64
		db.Raw(`SELECT count(*) FROM canal_job_runs WHERE job = 'report' AND manual AND started_us > ?`, replied.UnixMicro()).Scan(&n)
		return n == 1
	})
	// The recorder writes in order: a scheduled run after the stop's reply
	// would be recorded by now.
	var after int64
	db.Raw(`SELECT count(*) FROM canal_job_runs WHERE job = 'report' AND NOT manual AND started_us > ?`, replied.UnixMicro()).Scan(&after)
	if after != 0 {
		t.Fatalf("%d scheduled runs of report started after the stop's reply", after)
	}
	// The dashboard, which registers no job, lists the stored ones.
	resp, err := http.Get(dash.url + "/api/jobs")
	if err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	byName := map[string]map[string]any{}
	for _, j := range list {
		byName[j["name"].(string)] = j
	}
	if err != nil || len(list) != 2 || byName["report"]["running"] != false || byName["cleanup"]["running"] != true {
		t.Fatalf("the dashboard's job list: %v, %v", list, err)
	}

	// The leader dies: the follower takes over and the dashboard's start
	// reaches it (503 + the error until then).
	if err := lead.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "start reaches the new leader", func() bool {
		code, body := call(t, http.MethodPost, dash.url+"/api/jobs/report/start")
		if code == http.StatusServiceUnavailable && body["error"] != "" {
			return false
		}
		if code != http.StatusOK || body["running"] != true {
			t.Fatalf("start after the kill: %d %v", code, body)
		}
		return true
	})
	if pid := leaderPID(); pid != follower.cmd.Process.Pid {
		t.Fatalf("leader %d after the kill, want the follower %d", pid, follower.cmd.Process.Pid)
	}
}
