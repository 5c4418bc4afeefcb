package queue

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// RetryPolicy decides when a failed item is tried again: Base·2^(failures-1)
// capped at Max, with "equal jitter" (a fixed half plus a random half), so
// items that failed together spread out but never come back sooner than
// half the delay. Both uses share it.
type RetryPolicy struct {
	Base time.Duration // delay after the first failure: 1 s
	Max  time.Duration // cap: 5 min
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Base == 0 {
		p.Base = time.Second
	}
	if p.Max == 0 {
		p.Max = 5 * time.Minute
	}
	return p
}

// Validate reports a policy no delay can come from.
func (p RetryPolicy) Validate() error {
	p = p.withDefaults()
	if p.Base < 0 || p.Max < p.Base {
		return fmt.Errorf("%w: retry base %s, max %s", ErrInvalidConfig, p.Base, p.Max)
	}
	return nil
}

// Delay is the wait before the attempt after failures failed ones.
func (p RetryPolicy) Delay(failures int) time.Duration {
	p = p.withDefaults()
	d := p.Base
	for i := 1; i < failures && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

// snoozeError asks for another attempt after a delay, counting no failure.
type snoozeError struct {
	d     time.Duration
	cause error // why, kept as the item's last error; nil: unchanged
}

func (e snoozeError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("snoozed for %s: %v", e.d, e.cause)
	}
	return fmt.Sprintf("snoozed for %s", e.d)
}

func (e snoozeError) Unwrap() error { return e.cause }

// Snooze is what a Handler returns to try the item again after d without
// counting a failure or an attempt (a rate limit, an open circuit breaker).
func Snooze(d time.Duration) error { return snoozeError{d: d} }

// SnoozeCause is Snooze that also records why as the item's last error
// (a receiver that is down), still counting no failure or attempt.
func SnoozeCause(d time.Duration, cause error) error { return snoozeError{d: d, cause: cause} }

// permanentError ends the item now.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent is what a Handler returns for a failure no retry can fix: the
// item goes dead at once.
func Permanent(err error) error { return permanentError{err} }

// IsPermanent reports whether err came from Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

func snoozed(err error) (time.Duration, error, bool) {
	var s snoozeError
	if errors.As(err, &s) {
		return s.d, s.cause, true
	}
	return 0, nil, false
}
