package web

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/testenv"
	"github.com/labstack/echo/v4"
)

// fakeProcesses is a ProcessLister whose list the test sets.
type fakeProcesses struct {
	mu   sync.Mutex
	list []queue.ProcessInfo
}

func (f *fakeProcesses) set(l ...queue.ProcessInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = l
}

func (f *fakeProcesses) List(context.Context) ([]queue.ProcessInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]queue.ProcessInfo(nil), f.list...), nil
}

// Other processes' events make cluster figures: their snapshot adds their
// jobs to this process's (never replaces them), their workers add up while
// the depths stay this process's reading of the shared table, their outbox
// stats never replace this process's count, each event is counted once,
// and the figures of a process shown lost are forgotten.
func TestHubMergesOtherProcesses(t *testing.T) {
	procs := &fakeProcesses{}
	procs.set(queue.ProcessInfo{ID: "a", Self: true}, queue.ProcessInfo{ID: "b"}, queue.ProcessInfo{ID: "c"})
	h, je, oe := testHub(t, HubConfig{Processes: procs, ProcessesEvery: 20 * time.Millisecond})
	ctx := context.Background()

	je <- jobs.Event{Type: jobs.EventSnapshot, Jobs: []jobs.Status{*status("local", true, 1, 0, "")},
		Queue: &jobs.QueueStats{Depths: map[string]int{"normal": 7}, Workers: 4, Busy: 1, Process: jobs.WorkCounters{Done: 10}}}
	je <- jobs.Event{Type: jobs.EventSnapshot, Origin: "b", Jobs: []jobs.Status{*status("remote", true, 3, 0, "")},
		Queue: &jobs.QueueStats{Depths: map[string]int{"normal": 99}, Workers: 8, Busy: 5, Process: jobs.WorkCounters{Done: 20}, Breakers: map[string]string{"email": "open"}}}
	je <- jobs.Event{Type: jobs.EventQueue, Origin: "c", Queue: &jobs.QueueStats{Workers: 2, Busy: 2, Breakers: map[string]string{"email": "closed"}}}
	oe <- outbox.Event{Type: outbox.EventStats, Stats: &outbox.Stats{Pending: 5}}
	oe <- outbox.Event{Type: outbox.EventStats, Origin: "b", Stats: &outbox.Stats{Pending: 500}}
	for range 3 {
		je <- jobs.Event{Type: jobs.EventWorkDone, Origin: "b", Work: &jobs.WorkItem{ID: "w", Kind: "email"}}
	}
	je <- jobs.Event{Type: jobs.EventWorkDone, Work: &jobs.WorkItem{ID: "x", Kind: "email"}}

	v, err := h.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, s := range v.Jobs {
		names[s.Name] = true
	}
	if !names["local"] || !names["remote"] {
		t.Fatalf("jobs %v: another process's snapshot must add its jobs to this one's", names)
	}
	q := v.Queue
	if q == nil || q.Workers != 14 || q.Busy != 8 || q.Depths["normal"] != 7 || q.Process.Done != 30 || q.Breakers["email"] != "open" {
		t.Fatalf("queue %+v: want workers 4+8+2, busy 1+5+2, depths from this process's reading, breaker open anywhere shown open", q)
	}
	// /api/queue answers the same cluster figures (this process's own
	// counters under "process").
	rec := httptest.NewRecorder()
	if err := queueHealth(localHealth{}, nil, h)(echo.New().NewContext(httptest.NewRequest("GET", "/api/queue", nil), rec)); err != nil {
		t.Fatal(err)
	}
	var api struct{ Queue jobs.QueueStats }
	if err := json.Unmarshal(rec.Body.Bytes(), &api); err != nil {
		t.Fatal(err)
	}
	if api.Queue.Workers != 14 || api.Queue.Busy != 8 || api.Queue.Breakers["email"] != "open" || api.Queue.Process.Done != 3 {
		t.Fatalf("/api/queue %+v: want the cluster's workers, busy and breakers, and this process's counters", api.Queue)
	}
	if v.Outbox == nil || v.Outbox.Pending != 5 {
		t.Fatalf("outbox %+v: another process's stats must not replace this one's count", v.Outbox)
	}
	if got := v.Series.Totals.Work; got != 4 {
		t.Fatalf("work done in the window: %d, want 4 (3 from b, 1 here, each once)", got)
	}

	// c is lost: its workers no longer count; b's and this one's do.
	procs.set(queue.ProcessInfo{ID: "a", Self: true}, queue.ProcessInfo{ID: "b"}, queue.ProcessInfo{ID: "c", Lost: true})
	testenv.Eventually(t, 60*time.Second, "a lost process's figures forgotten", func() bool {
		v, err := h.View(ctx)
		return err == nil && v.Queue != nil && v.Queue.Workers == 12 && v.Queue.Busy == 6 &&
			len(v.Processes.List) == 3 && v.Processes.Lost() == 1
	})
}

// localHealth is this process's own reading, as Processor.Health gives it.
type localHealth struct{}

func (localHealth) Health() jobs.Health {
	return jobs.Health{Queue: jobs.QueueStats{Workers: 4, Busy: 1, Process: jobs.WorkCounters{Done: 3}}}
}
