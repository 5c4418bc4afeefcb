// The hub's windows (throughput, failures in the last minutes) come from
// stored history: a loader reads it at start and every ResyncEvery, off the
// hub goroutine, and the hub takes the closed buckets from it. Live events
// fill the buckets in between, so a restart changes nothing a viewer sees and
// no viewer's count drifts from the store's.

package web

import (
	"cmp"
	"context"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/templates"
)

// JobWindow reads the jobs' stored history in buckets; *jobs.Processor is one.
type JobWindow interface {
	Window(ctx context.Context, since time.Time, bucket time.Duration, n, recent int) (jobs.Window, error)
}

// OutboxWindow reads the outbox's stored history in buckets; *outbox.Relay
// is one.
type OutboxWindow interface {
	Window(ctx context.Context, since time.Time, bucket time.Duration, n, recent int) (outbox.Window, error)
}

// historyLag is how long a bucket must have been closed before the stored
// counts replace the live ones: the stores record a little after the event.
const historyLag = 3 * time.Second

// history is one reading of the stored windows, in the series' buckets.
type history struct {
	at       time.Time
	first    int64 // absolute index of the first bucket
	jobRuns  []int64
	work     []int64
	outbox   []int64
	fails    []int64
	failures []templates.FeedItem // newest first
}

// loadHistory reads the stored windows now and every ResyncEvery until ctx
// ends, handing each reading to the hub (the newest replaces one not yet
// taken).
func (h *Hub) loadHistory(ctx context.Context, out chan history) {
	tick := time.NewTicker(h.cfg.ResyncEvery)
	defer tick.Stop()
	for {
		hs, ok := h.readHistory(ctx)
		if ok {
			select {
			case <-out: // drop the reading the hub has not taken yet
			default:
			}
			out <- hs
		}
		// A failed read (a busy database at start) is tried again soon.
		retry := time.After(time.Second)
		if ok {
			retry = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-retry:
		case <-h.resync:
		}
	}
}

func (h *Hub) readHistory(ctx context.Context) (history, bool) {
	now := h.cfg.Now()
	b := h.cfg.Bucket
	n := h.cfg.Buckets + 1 // the open bucket too
	cur := now.UnixNano() / int64(b)
	first := cur - int64(n) + 1
	since := time.Unix(0, first*int64(b))
	hs := history{at: now, first: first, jobRuns: make([]int64, n), work: make([]int64, n), outbox: make([]int64, n), fails: make([]int64, n)}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if h.cfg.JobHistory != nil {
		began := time.Now()
		w, err := h.cfg.JobHistory.Window(qctx, since, b, n, maxFailuresKept)
		if err != nil {
			// An outage is the database monitor's to log, once.
			if err := h.cfg.Database.Observe(began, err); err != nil {
				h.cfg.Logger.Warn("read jobs history", "err", err)
			}
			return history{}, false
		}
		for i := range n {
			hs.jobRuns[i] += w.Runs[i]
			hs.work[i] += w.WorkDone[i]
			hs.fails[i] += w.RunFailures[i] + w.WorkFailed[i]
		}
		for _, r := range w.RecentRunFailures {
			hs.failures = append(hs.failures, runFailure(r))
		}
		for _, it := range w.RecentWorkFailed {
			hs.failures = append(hs.failures, workFailure(ptrOr(it.FinishedAt, it.UpdatedAt), it))
		}
	}
	if h.cfg.OutboxHistory != nil {
		began := time.Now()
		w, err := h.cfg.OutboxHistory.Window(qctx, since, b, n, maxFailuresKept)
		if err != nil {
			// An outage is the database monitor's to log, once.
			if err := h.cfg.Database.Observe(began, err); err != nil {
				h.cfg.Logger.Warn("read outbox history", "err", err)
			}
			return history{}, false
		}
		for i := range n {
			hs.outbox[i] += w.Dispatched[i]
			hs.fails[i] += w.Dead[i]
		}
		for i, m := range w.RecentDead {
			hs.failures = append(hs.failures, deadLetter(w.DeadAt[i], m))
		}
	}
	slices.SortStableFunc(hs.failures, func(a, b templates.FeedItem) int { return b.At.Compare(a.At) })
	if len(hs.failures) > maxFailuresKept {
		hs.failures = hs.failures[:maxFailuresKept]
	}
	return hs, true
}

func ptrOr(t *time.Time, or time.Time) time.Time {
	if t == nil {
		return or
	}
	return *t
}

// The failure lines, written once for live events and stored history alike.

func runFailure(r jobs.JobRun) templates.FeedItem {
	return templates.FeedItem{At: r.At.Add(r.Duration), Type: string(jobs.EventRunFailed), Subject: r.Job, Bad: true,
		Text: "failed: " + r.Error, Link: "/jobs/" + url.PathEscape(r.Job)}
}

func workFailure(at time.Time, w jobs.WorkItem) templates.FeedItem {
	return templates.FeedItem{At: at, Type: string(jobs.EventWorkFailed), Subject: w.Kind, Bad: true,
		Text: "work " + w.ID + " failed after " + strconv.Itoa(w.Attempts) + " attempts: " + w.LastError, Link: "/work/" + url.PathEscape(w.ID)}
}

func deadLetter(at time.Time, m outbox.Summary) templates.FeedItem {
	it := templates.FeedItem{At: at, Type: "outbox." + outbox.EventDead, Subject: m.Topic, Bad: true,
		Text: "dead letter", Link: "/outbox/" + url.PathEscape(m.ID)}
	if m.LastError != "" {
		it.Text += ": " + m.LastError
	}
	return it
}

// applyHistory takes a reading: the buckets closed long enough before it
// was taken get the stored counts, the recent ones the larger of the stored
// and the live count, and the failure list is the stored one plus what
// arrived live since.
func (h *Hub) applyHistory(st *hubState, hs history) {
	s := &st.series
	s.advance(h.cfg.Now())
	n := int64(len(s.outbox))
	settled := hs.at.Add(-historyLag).UnixNano() / int64(s.bucket) // buckets before it are settled
	for i := range int64(len(hs.outbox)) {
		k := hs.first + i
		if k <= s.cur-n || k > s.cur {
			continue
		}
		j := ((k % n) + n) % n
		if k < settled {
			s.jobRuns[j], s.work[j], s.outbox[j], s.fails[j] = hs.jobRuns[i], hs.work[i], hs.outbox[i], hs.fails[i]
			continue
		}
		// A recent bucket: the store may not have everything yet, and
		// this process saw nothing from before it started.
		s.jobRuns[j], s.work[j] = max(s.jobRuns[j], hs.jobRuns[i]), max(s.work[j], hs.work[i])
		s.outbox[j], s.fails[j] = max(s.outbox[j], hs.outbox[i]), max(s.fails[j], hs.fails[i])
	}
	// The chart shows the whole window from now on: it is known.
	s.first = min(s.first, hs.first)
	st.historyAt = hs.at
	st.dirty.outbox = true
	cutoff := time.Unix(0, settled*int64(s.bucket))
	live := st.failures.newestFirst()
	merged := make([]templates.FeedItem, 0, maxFailuresKept)
	for _, it := range live {
		if !it.At.Before(cutoff) {
			merged = append(merged, it)
		}
	}
	for _, it := range hs.failures {
		if it.At.Before(cutoff) {
			merged = append(merged, it)
		}
	}
	slices.SortStableFunc(merged, func(a, b templates.FeedItem) int { return cmp.Compare(b.At.UnixNano(), a.At.UnixNano()) })
	st.failures = newRing[templates.FeedItem](maxFailuresKept)
	for i := min(len(merged), maxFailuresKept) - 1; i >= 0; i-- {
		st.failures.push(merged[i])
	}
	st.dirty.chart, st.dirty.failures = true, true
	st.version++
}

// resyncNow has the stored windows read again now.
func (h *Hub) resyncNow() {
	select {
	case h.resync <- struct{}{}:
	default: // one is asked for already
	}
}

// unfail takes back at once the failures of an item retried or deleted by
// hand: its lines in the failure list and their counts in the window. The
// stored windows, read again at once, confirm it (and cover a bulk retry,
// which names no item).
func (h *Hub) unfail(st *hubState, link string) {
	if link != "" {
		vals := st.failures.newestFirst()
		kept := make([]templates.FeedItem, 0, len(vals))
		for _, it := range vals {
			if it.Link == link {
				st.series.remove(it.At, st.series.fails)
				continue
			}
			kept = append(kept, it)
		}
		if len(kept) < len(vals) {
			st.failures = newRing[templates.FeedItem](maxFailuresKept)
			for i := len(kept) - 1; i >= 0; i-- {
				st.failures.push(kept[i])
			}
			st.dirty.failures, st.dirty.chart = true, true
			st.version++
		}
	}
	h.resyncNow()
}

// outboxStats is the outbox's figures as every view shows them: the relay's
// snapshot, every figure of which it read from the table (so the same in
// every process, and in /api/outbox/stats).
func (h *Hub) outboxStats(st *hubState) *outbox.Stats {
	if st.outbox == nil {
		return nil
	}
	o := *st.outbox
	return &o
}
