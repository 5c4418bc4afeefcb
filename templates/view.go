package templates

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
)

// View is the dashboard's state as the hub holds it: everything the overview
// and the wall screen show. Every slice in it is bounded by the hub.
type View struct {
	// Seq is the hub's sequence number when the view was taken.
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
	// Jobs are the recurring jobs in registration order.
	Jobs []jobs.Status `json:"jobs"`
	// Queue is the work queue's depths by priority and its workers; nil
	// when no work queue feeds the hub.
	Queue *jobs.QueueStats `json:"queue"`
	// Pipelines are the pipelines' per-stage counts, by name.
	Pipelines []jobs.PipelineStats `json:"pipelines"`
	// Outbox is the relay's last stats snapshot; nil until one arrives.
	Outbox *outbox.Stats `json:"outbox"`
	// Series is the throughput over the last minutes.
	Series Series `json:"throughput"`
	// Feed is the most recent events, newest first.
	Feed []FeedItem `json:"feed"`
	// Failures are the failures within FailureWindow, newest first (at most
	// a few dozen); FailureCount counts all of them.
	Failures      []FeedItem    `json:"failures"`
	FailureCount  int           `json:"failureCount"`
	FailureWindow time.Duration `json:"failureWindowNs"`
	// HistoryAt is when the windows were last read from stored history;
	// zero until the first reading (they count only live events until then).
	HistoryAt time.Time `json:"historyAt,omitzero"`
	// Processes is every Canal process sharing the database.
	Processes Processes `json:"processes"`
	// Database says whether the database answers (a banner while not).
	Database Database `json:"database"`
}

// Changed names what changed since the hub's last frame, for the pages'
// live regions: outbox messages and jobs by id (All when there were too many
// to name, or a bulk change named none), and whether any work item moved.
type Changed struct {
	Outbox    []string
	AllOutbox bool
	Jobs      []string
	AllJobs   bool
	Work      bool
	Audit     bool // the audit log has a new entry
}

// Queue is one priority of the work queue.
type Queue struct {
	Name     string
	Priority int
	Depth    int64
	Capacity int
}

// Queues lists q's depths by priority, most urgent first.
func Queues(q *jobs.QueueStats) []Queue {
	if q == nil {
		return nil
	}
	out := make([]Queue, 0, len(q.Depths))
	for _, p := range jobs.Priorities() {
		out = append(out, Queue{Name: p.String(), Priority: int(p), Depth: int64(q.Depths[p.String()]), Capacity: q.Capacity})
	}
	return out
}

// FeedItem is one line of the live feed.
type FeedItem struct {
	At      time.Time `json:"at"`
	Type    string    `json:"type"`    // the event's type, e.g. "job.run.failed"
	Subject string    `json:"subject"` // a job's name or an outbox topic
	Text    string    `json:"text"`
	Bad     bool      `json:"bad,omitempty"`
	Link    string    `json:"link,omitempty"`
}

// Series is throughput in fixed buckets, oldest first; the last bucket ends
// at End. The three slices have the same length.
type Series struct {
	Bucket   time.Duration `json:"bucketNs"`
	End      time.Time     `json:"end"`
	JobRuns  []int64       `json:"jobRuns"`
	Work     []int64       `json:"workDone"`
	Outbox   []int64       `json:"outboxDispatched"`
	Failures []int64       `json:"failures"`
	// Totals are the sums over the whole window, the open bucket the
	// lines leave out included: every "last 10 min" figure is one of them.
	Totals Totals `json:"totals"`
}

// Totals are a window's sums.
type Totals struct {
	JobRuns  int64 `json:"jobRuns"`
	Work     int64 `json:"workDone"`
	Outbox   int64 `json:"outboxDispatched"`
	Failures int64 `json:"failures"`
}

// JobCardID is the element id of a job's card.
func JobCardID(name string) string { return "job-" + name }

// WallJobID is the element id of a job's tile on the wall screen.
func WallJobID(name string) string { return "wall-job-" + name }

// JobResultID is the element id where a job's button results appear.
func JobResultID(name string) string { return "result-job-" + name }

func isoT(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func ms(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return "(" + dur(d) + ")"
}

// dur rounds a duration to what a person reads.
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return twoUnits(d.Round(time.Second), time.Minute, "m", time.Second, "s")
	case d < 24*time.Hour:
		return twoUnits(d.Round(time.Minute), time.Hour, "h", time.Minute, "m")
	default:
		return twoUnits(d.Round(time.Hour), 24*time.Hour, "d ", time.Hour, "h")
	}
}

// twoUnits writes d as whole big units and the rest in small ones, leaving
// out a zero rest: "12m", "1h30m", "3d 8h".
func twoUnits(d, big time.Duration, bigName string, small time.Duration, smallName string) string {
	b, rest := d/big, (d%big)/small
	s := strconv.FormatInt(int64(b), 10) + bigName
	if rest == 0 {
		return strings.TrimSpace(s)
	}
	return s + strconv.FormatInt(int64(rest), 10) + smallName
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// num writes a count with thin thousands separators.
func num(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func rate(r float64) string {
	switch {
	case r <= 0:
		return "0"
	case r < 10:
		return strconv.FormatFloat(r, 'f', 1, 64)
	default:
		return num(int64(math.Round(r)))
	}
}

func millis(v float64) string {
	switch {
	case v <= 0:
		return "—"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
	case v < 10000:
		return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
	default:
		return dur(time.Duration(v * float64(time.Millisecond)))
	}
}

func age(seconds float64) string {
	if seconds <= 0 {
		return "—"
	}
	return dur(time.Duration(seconds * float64(time.Second)))
}

// jobState is a job's state as a word: running, failing or stopped.
func jobState(s jobs.Status) string {
	switch {
	case !s.Running:
		return "stopped"
	case s.LastError != "":
		return "failing"
	default:
		return "running"
	}
}

func minutes(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%d min", int(d/time.Minute))
	}
	return d.String()
}

// outboxCount formats outbox counts, which stop at outbox.CountCap: a sum
// that includes a capped count reads "at least" ("100,000+").
func outboxCount(ns ...int64) string {
	var sum int64
	capped := false
	for _, n := range ns {
		sum += n
		capped = capped || n >= outbox.CountCap
	}
	return boundedCount(sum, capped)
}

// boundedCount is how every count that stops at a bound reads: "1,234", or
// "10,000+" when counting stopped there.
func boundedCount(n int64, more bool) string {
	if more {
		return num(n) + "+"
	}
	return num(n)
}

// StuckAfter is how old the oldest undelivered outbox message may get before
// the screens call the backlog stuck.
const StuckAfter = time.Minute

// Alarms are what keeps the screens from saying "All clear": failures in the
// window, dead letters, a stuck backlog and failing jobs, each as a phrase.
// None means all clear.
func (v View) Alarms() []string {
	var out []string
	if v.FailureCount > 0 {
		out = append(out, num(int64(v.FailureCount))+" failed in the last "+minutes(v.FailureWindow))
	}
	if o := v.Outbox; o != nil {
		if o.Dead > 0 {
			out = append(out, outboxCount(o.Dead)+" dead letters")
		}
		if time.Duration(o.OldestPendingSeconds*float64(time.Second)) > StuckAfter {
			out = append(out, "backlog of "+outboxCount(o.Pending, o.Inflight)+" aged "+age(o.OldestPendingSeconds))
		}
	}
	failing := 0
	for _, j := range v.Jobs {
		if jobState(j) == "failing" {
			failing++
		}
	}
	if failing > 0 {
		out = append(out, num(int64(failing))+" failing jobs")
	}
	return out
}
