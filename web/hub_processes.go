// Every process sharing the database: the hub reads their heartbeat rows a
// few times a minute, off its goroutine, shows them (the processes panel
// and page, a line on the wall) and forgets the figures of processes that
// are gone. Other processes' queue and pipeline figures arrive as events
// (internal/clusterevents) and are merged into cluster figures here.

package web

import (
	"context"
	"github.com/canalhq/canal/internal/outage"
	"maps"
	"slices"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/jobs"
)

// ProcessLister lists the processes sharing the database; *queue.Process
// is one.
type ProcessLister interface {
	List(ctx context.Context) ([]queue.ProcessInfo, error)
}

// processes is the hub's last reading.
type processes struct {
	list []queue.ProcessInfo
	at   time.Time
	err  string
}

// loadProcesses reads the process list now and every ProcessesEvery until
// ctx ends, handing each reading to the hub.
func (h *Hub) loadProcesses(ctx context.Context, out chan processes) {
	tick := time.NewTicker(h.cfg.ProcessesEvery)
	defer tick.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		list, err := h.cfg.Processes.List(qctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		p := processes{list: list, at: h.cfg.Now()}
		if err != nil {
			// An outage is logged once, by the process's monitor.
			if !outage.Unavailable(err) {
				h.cfg.Logger.Warn("read processes", "err", err)
			}
			p = processes{err: "could not read the processes: " + err.Error(), at: p.at}
		}
		select {
		case <-out: // the hub has not taken the previous one: this replaces it
		default:
		}
		out <- p
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// applyProcesses takes a reading and forgets the figures of processes that
// are lost or gone (a killed process's last queue figures must not count).
func (h *Hub) applyProcesses(st *hubState, p processes) {
	if p.err != "" {
		st.procs.err, st.procs.at = p.err, p.at
		st.dirty.processes = true
		st.version++
		return
	}
	st.procs = p
	alive := map[string]bool{}
	for _, pr := range p.list {
		if !pr.Lost {
			alive[pr.ID] = true
		}
	}
	for id := range st.remoteQueues {
		if !alive[id] {
			delete(st.remoteQueues, id)
			st.dirty.queue = true
		}
	}
	for id := range st.remotePipes {
		if !alive[id] {
			delete(st.remotePipes, id)
			st.dirty.queue = true
		}
	}
	st.dirty.processes = true
	st.version++
}

// maxRemoteProcesses bounds the other processes whose figures are kept.
const maxRemoteProcesses = 256

// applyRemote folds another process's snapshot, queue or pipeline event
// into the cluster figures; false means the event is not one of those.
func (h *Hub) applyRemote(st *hubState, ev jobs.Event) bool {
	switch ev.Type {
	case jobs.EventSnapshot:
		// Merged, not replacing: this process's jobs stay.
		for _, s := range ev.Jobs {
			h.setJob(st, s)
		}
		if ev.Queue != nil {
			h.setRemoteQueue(st, ev.Origin, *ev.Queue)
		}
		return true
	case jobs.EventQueue:
		if ev.Queue != nil {
			h.setRemoteQueue(st, ev.Origin, *ev.Queue)
		}
		return true
	case jobs.EventPipeline:
		if ev.Pipeline != nil {
			m := st.remotePipes[ev.Origin]
			if m == nil {
				if len(st.remotePipes) >= maxRemoteProcesses {
					return true
				}
				m = map[string]jobs.PipelineStats{}
				st.remotePipes[ev.Origin] = m
			}
			if _, ok := m[ev.Pipeline.Name]; ok || len(m) < maxPipelines {
				m[ev.Pipeline.Name] = *ev.Pipeline
			}
			st.dirty.queue = true
		}
		return true
	}
	return false
}

func (h *Hub) setRemoteQueue(st *hubState, origin string, q jobs.QueueStats) {
	if _, ok := st.remoteQueues[origin]; !ok && len(st.remoteQueues) >= maxRemoteProcesses {
		return
	}
	st.remoteQueues[origin] = q
	st.dirty.queue = true
}

// queueStats is the work queue as every view shows it: the depths this
// process reads from the shared table, with the workers, busy workers,
// breakers and counters of every live process.
func (h *Hub) queueStats(st *hubState) *jobs.QueueStats {
	if st.queue == nil && len(st.remoteQueues) == 0 {
		return nil
	}
	var q jobs.QueueStats
	if st.queue != nil {
		q = *st.queue
		q.Depths = maps.Clone(q.Depths)
		q.Breakers = maps.Clone(q.Breakers)
	}
	for _, id := range slices.Sorted(maps.Keys(st.remoteQueues)) {
		r := st.remoteQueues[id]
		if st.queue == nil && q.Depths == nil {
			// No local reading yet: the table's depths are the same.
			q.Depths, q.Scheduled, q.Capacity, q.Policy = maps.Clone(r.Depths), r.Scheduled, r.Capacity, r.Policy
		}
		q.Workers += r.Workers
		q.Busy += r.Busy
		q.Process.Accepted += r.Process.Accepted
		q.Process.Rejected += r.Process.Rejected
		q.Process.Evicted += r.Process.Evicted
		q.Process.Done += r.Process.Done
		q.Process.Failed += r.Process.Failed
		q.Process.Retried += r.Process.Retried
		for kind, state := range r.Breakers {
			// A breaker open anywhere is shown open: that kind is failing.
			if q.Breakers == nil {
				q.Breakers = map[string]string{}
			}
			if cur, ok := q.Breakers[kind]; !ok || breakerRank(state) > breakerRank(cur) {
				q.Breakers[kind] = state
			}
		}
	}
	return &q
}

func breakerRank(s string) int {
	switch s {
	case "open":
		return 2
	case "half-open":
		return 1
	}
	return 0
}

// mergedPipelines sums each pipeline's stages over every process: this
// one's in order first, then those only other processes run.
func (h *Hub) mergedPipelines(st *hubState) []jobs.PipelineStats {
	names := slices.Clone(st.pipeOrder)
	byName := map[string]jobs.PipelineStats{}
	for _, n := range st.pipeOrder {
		byName[n] = clonePipeline(st.pipelines[n])
	}
	for _, id := range slices.Sorted(maps.Keys(st.remotePipes)) {
		for _, n := range slices.Sorted(maps.Keys(st.remotePipes[id])) {
			r := st.remotePipes[id][n]
			cur, ok := byName[n]
			if !ok {
				if len(names) >= maxPipelines {
					continue
				}
				names = append(names, n)
				byName[n] = clonePipeline(r)
				continue
			}
			for _, rs := range r.Stages {
				i := slices.IndexFunc(cur.Stages, func(s jobs.StageStats) bool { return s.Name == rs.Name })
				if i < 0 {
					cur.Stages = append(cur.Stages, rs)
					continue
				}
				s := &cur.Stages[i]
				s.In, s.Out, s.Failed, s.Depth, s.Cap = s.In+rs.In, s.Out+rs.Out, s.Failed+rs.Failed, s.Depth+rs.Depth, s.Cap+rs.Cap
			}
			byName[n] = cur
		}
	}
	out := make([]jobs.PipelineStats, 0, len(names))
	for _, n := range names {
		out = append(out, byName[n])
	}
	return out
}

func clonePipeline(p jobs.PipelineStats) jobs.PipelineStats {
	p.Stages = slices.Clone(p.Stages)
	return p
}
