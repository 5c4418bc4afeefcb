package jobs

import (
	"slices"
	"sync/atomic"
	"time"
)

// controlWaitBounds are the control channel wait histogram's upper bounds,
// in seconds: a command normally waits microseconds; seconds mean the
// processor is stuck behind something.
var controlWaitBounds = []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5}

// WaitStats is a histogram of how long commands waited in the control
// channel before the processor took them (their round trip, measured by
// the caller, adds the work itself).
type WaitStats struct {
	Count uint64  `json:"count"`
	Sum   float64 `json:"sumSeconds"`
	// Bounds are the buckets' upper bounds in seconds; Buckets the
	// cumulative count of waits up to each.
	Bounds  []float64 `json:"bounds"`
	Buckets []uint64  `json:"buckets"`
}

// waitHist is written by the processor goroutine and read by any: each
// observation adds to count before its buckets, and a snapshot reads the
// buckets before count, so no bucket ever exceeds the count.
type waitHist struct {
	count   atomic.Uint64
	nanos   atomic.Int64
	buckets []atomic.Uint64
}

func newWaitHist() *waitHist {
	return &waitHist{buckets: make([]atomic.Uint64, len(controlWaitBounds))}
}

func (h *waitHist) observe(d time.Duration) {
	d = max(d, 0)
	h.count.Add(1)
	h.nanos.Add(int64(d))
	for i, b := range controlWaitBounds {
		if d.Seconds() <= b {
			h.buckets[i].Add(1)
		}
	}
}

func (h *waitHist) stats() WaitStats {
	s := WaitStats{Bounds: slices.Clone(controlWaitBounds), Buckets: make([]uint64, len(h.buckets))}
	for i := range h.buckets {
		s.Buckets[i] = h.buckets[i].Load()
	}
	s.Sum = time.Duration(h.nanos.Load()).Seconds()
	s.Count = h.count.Load()
	return s
}
