package jobs

import (
	"encoding/json"
	"fmt"
	"time"
)

// Status is a recurring job's state as the processor saw it when it answered.
type Status struct {
	Name         string        `json:"name"`
	Running      bool          `json:"running"`
	Interval     time.Duration `json:"-"`
	Executions   int64         `json:"executions"`
	Failures     int64         `json:"failures"`
	LastRun      *time.Time    `json:"lastRun,omitempty"`
	LastDuration time.Duration `json:"-"`
	LastError    string        `json:"lastError,omitempty"`
	NextRun      *time.Time    `json:"nextRun,omitempty"`
	Message      string        `json:"message,omitempty"`
}

// MarshalJSON writes durations as Go duration strings ("5s") and milliseconds,
// which is what people and dashboards read.
func (s Status) MarshalJSON() ([]byte, error) {
	type plain Status
	return json.Marshal(struct {
		plain
		Interval       string  `json:"interval"`
		LastDurationMS float64 `json:"lastDurationMs"`
	}{plain(s), s.Interval.String(), float64(s.LastDuration) / float64(time.Millisecond)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *Status) UnmarshalJSON(b []byte) error {
	type plain Status
	var v struct {
		plain
		Interval       string  `json:"interval"`
		LastDurationMS float64 `json:"lastDurationMs"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = Status(v.plain)
	if v.Interval != "" {
		d, err := time.ParseDuration(v.Interval)
		if err != nil {
			return fmt.Errorf("interval: %w", err)
		}
		s.Interval = d
	}
	s.LastDuration = time.Duration(v.LastDurationMS * float64(time.Millisecond))
	return nil
}
