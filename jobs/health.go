package jobs

import (
	"fmt"
	"slices"
)

// Health is the processor's state as a health check reads it (the
// tutorial's ChannelHealthCheck): "ok", "degraded" (serving, but a queue is
// nearly full or a breaker is open) or "down" (not running).
type Health struct {
	Status  string     `json:"status"`
	Reasons []string   `json:"reasons,omitempty"`
	Queue   QueueStats `json:"queue"`
}

// Health statuses.
const (
	HealthOK       = "ok"
	HealthDegraded = "degraded"
	HealthDown     = "down"
)

// nearlyFull is the share of a channel's capacity that counts as degraded.
const nearlyFull = 0.9

// Health reports whether the processor runs and its channels have room.
func (p *Processor) Health() Health {
	h := Health{Status: HealthOK, Queue: *p.queueStats()}
	select {
	case <-p.done:
		return Health{Status: HealthDown, Reasons: []string{"processor stopped"}, Queue: h.Queue}
	default:
	}
	if !p.isStarted() {
		return Health{Status: HealthDown, Reasons: []string{"processor not started"}, Queue: h.Queue}
	}
	full := func(n, c int) bool { return c > 0 && float64(n) >= nearlyFull*float64(c) }
	if c := h.Queue.Control; full(c.Len, c.Cap) {
		h.Reasons = append(h.Reasons, fmt.Sprintf("control channel %d/%d", c.Len, c.Cap))
	}
	backlog := h.Queue.Scheduled
	for _, n := range h.Queue.Depths {
		backlog += n
	}
	if full(backlog, h.Queue.Capacity) {
		h.Reasons = append(h.Reasons, fmt.Sprintf("work backlog %d/%d", backlog, h.Queue.Capacity))
	}
	var open []string
	for kind, st := range h.Queue.Breakers {
		if st != "closed" {
			open = append(open, fmt.Sprintf("%s breaker %s", kind, st))
		}
	}
	slices.Sort(open)
	h.Reasons = append(h.Reasons, open...)
	if len(h.Reasons) > 0 {
		h.Status = HealthDegraded
	}
	return h
}
