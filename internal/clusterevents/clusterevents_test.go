package clusterevents_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/clusterevents"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/testenv"
	"github.com/nats-io/nats.go"
)

// node is one process's bridge with its local event sources and what its
// hub would read, collected in order.
type node struct {
	jobsIn   chan jobs.Event
	outboxIn chan outbox.Event
	b        *clusterevents.Bridge
	mu       sync.Mutex
	jobs     []jobs.Event
	outbox   []outbox.Event
}

func startNode(t *testing.T, process string, tr clusterevents.Transport) *node {
	t.Helper()
	n := &node{jobsIn: make(chan jobs.Event, 16), outboxIn: make(chan outbox.Event, 16)}
	n.b = clusterevents.New(clusterevents.Config{Process: process, Transport: tr, Jobs: n.jobsIn, Outbox: n.outboxIn})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { n.b.Run(ctx) })
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-n.b.Jobs():
				n.mu.Lock()
				n.jobs = append(n.jobs, ev)
				n.mu.Unlock()
			case ev := <-n.b.Outbox():
				n.mu.Lock()
				n.outbox = append(n.outbox, ev)
				n.mu.Unlock()
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return n
}

func (n *node) seenJobs() []jobs.Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]jobs.Event(nil), n.jobs...)
}

func (n *node) seenOutbox() []outbox.Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]outbox.Event(nil), n.outbox...)
}

func workDone(id, lastError string) jobs.Event {
	return jobs.Event{Type: jobs.EventWorkDone, At: time.Now().UTC(), Dropped: 7,
		Work: &jobs.WorkItem{ID: id, Kind: "email", State: jobs.WorkDone, Payload: json.RawMessage(`{"secret":1}`), LastError: lastError}}
}

// workIDs lists the work ids of evs with their origin.
func workIDs(evs []jobs.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Work != nil {
			out = append(out, ev.Work.ID+"@"+ev.Origin)
		}
	}
	return out
}

// waitWork waits until n has seen the work event id (from origin).
func waitWork(t *testing.T, n *node, id, origin string) jobs.Event {
	t.Helper()
	var got jobs.Event
	testenv.Eventually(t, 20*time.Second, "work event "+id+" from "+origin, func() bool {
		for _, ev := range n.seenJobs() {
			if ev.Work != nil && ev.Work.ID == id && ev.Origin == origin {
				got = ev
				return true
			}
		}
		return false
	})
	return got
}

// Without a carrier (SQLite: one process) the bridge passes the local
// events through unchanged, in order.
func TestPassThroughWithoutTransport(t *testing.T) {
	n := startNode(t, "solo", nil)
	n.jobsIn <- workDone("w1", "")
	n.outboxIn <- outbox.Event{Type: outbox.EventDispatched, Message: &outbox.Summary{ID: "m1", Topic: "t"}}
	n.jobsIn <- workDone("w2", "")
	testenv.Eventually(t, 10*time.Second, "local events through", func() bool {
		return len(n.seenJobs()) == 2 && len(n.seenOutbox()) == 1
	})
	if got := workIDs(n.seenJobs()); strings.Join(got, ",") != "w1@,w2@" {
		t.Fatalf("jobs out: %v", got)
	}
	if ev := n.seenJobs()[0]; string(ev.Work.Payload) != `{"secret":1}` || ev.Dropped != 7 {
		t.Fatalf("a local event is changed on its way: %+v", ev.Work)
	}
	if s := n.b.Stats(); s.Published != 0 || s.Received != 0 {
		t.Fatalf("stats %+v: nothing is carried without a transport", s)
	}
}

// natsTransport opens a NATS connection and a transport on scope's subject.
func natsTransport(t *testing.T, scope string) clusterevents.Transport {
	nc, err := nats.Connect(testenv.NATSURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return clusterevents.NewNATS(nc, clusterevents.Subject(scope))
}

// Two processes of one system: each one's events reach the other, marked
// with their origin, without payloads, with long errors trimmed; a
// process's own events come back from the carrier and are skipped (its hub
// sees each once); a snapshot too large for one payload arrives in parts;
// and another system on the same carrier (another schema, another
// subject) sees none of it.
func TestTransports(t *testing.T) {
	for _, name := range []string{"postgres", "nats"} {
		t.Run(name, func(t *testing.T) {
			scope := "sys-" + t.Name()
			var trA, trB, trOther, trOtherPeer clusterevents.Transport
			if name == "postgres" {
				// Two connections to one schema, and another schema.
				db := testenv.Postgres(t)
				sqlDB, _ := db.DB()
				trA, trB = clusterevents.NewPostgres(sqlDB), clusterevents.NewPostgres(sqlDB)
				other := testenv.Postgres(t)
				otherDB, _ := other.DB()
				trOther, trOtherPeer = clusterevents.NewPostgres(otherDB), clusterevents.NewPostgres(otherDB)
			} else {
				trA, trB = natsTransport(t, scope), natsTransport(t, scope)
				trOther, trOtherPeer = natsTransport(t, scope+"-other"), natsTransport(t, scope+"-other")
			}
			a := startNode(t, "host/1/a", trA)
			b := startNode(t, "host/2/b", trB)
			other := startNode(t, "host/3/c", trOther)
			otherPeer := startNode(t, "host/4/d", trOtherPeer)

			// The listeners start on their own: send until B hears A.
			long := strings.Repeat("é", 20_000) // 40 000 bytes, far past NOTIFY's 8000
			i := 0
			testenv.Eventually(t, 20*time.Second, "B hears A", func() bool {
				i++
				a.jobsIn <- workDone("hello-"+string(rune('a'+i%26))+strings.Repeat("x", i), long)
				for _, ev := range b.seenJobs() {
					if ev.Origin == "host/1/a" {
						return true
					}
				}
				return false
			})
			// A's events after that arrive in order.
			a.jobsIn <- workDone("w1", long)
			a.outboxIn <- outbox.Event{Type: outbox.EventDead, Message: &outbox.Summary{ID: "m1", Topic: "orders", LastError: long}}
			a.outboxIn <- outbox.Event{Type: outbox.EventStats, Stats: &outbox.Stats{Pending: 3}} // not carried: every process counts the table
			snap := jobs.Event{Type: jobs.EventSnapshot, Queue: &jobs.QueueStats{Workers: 4}}
			for k := range 200 {
				snap.Jobs = append(snap.Jobs, jobs.Status{Name: "job-" + strings.Repeat("n", 10) + string(rune('A'+k%26)) + strings.Repeat("z", k%7), Interval: time.Second, LastError: long})
			}
			a.jobsIn <- snap
			a.jobsIn <- workDone("w2", "")
			ev := waitWork(t, b, "w2", "host/1/a")
			if ev.Work.Payload != nil || ev.Dropped != 0 {
				t.Fatalf("carried event keeps its payload or drop count: %+v", ev)
			}
			w1 := waitWork(t, b, "w1", "host/1/a")
			if n := len(w1.Work.LastError); n == 0 || n > 400 {
				t.Fatalf("a long error is carried with %d bytes, want it trimmed", n)
			}
			var jobsSeen int
			var queueSeen bool
			for _, ev := range b.seenJobs() {
				if ev.Type == jobs.EventSnapshot {
					if ev.Origin != "host/1/a" {
						t.Fatalf("snapshot part without origin: %+v", ev.Origin)
					}
					jobsSeen += len(ev.Jobs)
					queueSeen = queueSeen || ev.Queue != nil
				}
			}
			if jobsSeen != 200 || !queueSeen {
				t.Fatalf("snapshot parts: %d jobs, queue %v; want all 200 and the queue", jobsSeen, queueSeen)
			}
			obs := b.seenOutbox()
			if len(obs) != 1 || obs[0].Type != outbox.EventDead || obs[0].Origin != "host/1/a" || len(obs[0].Message.LastError) > 400 {
				t.Fatalf("outbox events at B: %+v, want the dead letter only, trimmed", obs)
			}

			// B answers; A gets B's event and never its own back.
			b.jobsIn <- workDone("from-b", "")
			waitWork(t, a, "from-b", "host/2/b")
			for _, ev := range a.seenJobs() {
				if ev.Origin == "host/1/a" {
					t.Fatalf("A's hub got its own event back: %+v", ev)
				}
				if ev.Origin == "" && ev.Work != nil && string(ev.Work.Payload) != `{"secret":1}` {
					t.Fatal("A's own event lost its payload on the local path")
				}
			}
			local := 0
			for _, ev := range a.seenJobs() {
				if ev.Origin == "" && ev.Work != nil && (ev.Work.ID == "w1" || ev.Work.ID == "w2") {
					local++
				}
			}
			if local != 2 {
				t.Fatalf("A's hub saw its own w1, w2 %d times, want once each", local)
			}

			// The other system hears its own peer, and nothing of A's or B's.
			testenv.Eventually(t, 20*time.Second, "the other system's peer is heard", func() bool {
				otherPeer.jobsIn <- workDone("other", "")
				for _, ev := range other.seenJobs() {
					if ev.Origin == "host/4/d" {
						return true
					}
				}
				return false
			})
			for _, ev := range other.seenJobs() {
				if ev.Origin != "host/4/d" && ev.Origin != "" {
					t.Fatalf("another system got %s's event", ev.Origin)
				}
			}
			if s := a.b.Stats(); s.Published == 0 || s.Dropped != 0 {
				t.Fatalf("A's stats %+v: want events published and none dropped", s)
			}
		})
	}
}
