package jobs

import "time"

// MaxInterval is the longest interval a job may have: past a week a typo
// ("100000h") is likelier than a plan, and the job would look dead.
const MaxInterval = 7 * 24 * time.Hour
