package jobs

import (
	"strings"
	"testing"
	"time"
)

// Work ids keep crypto/rand.Text's shape (26 base32 characters) but start
// with the time, so ids made together share a prefix in the index.
func TestWorkIDsShareATimePrefix(t *testing.T) {
	now := time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	var first string
	for i := range 1000 {
		id := newWorkID(now)
		if len(id) != 26 || strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
			t.Fatalf("id %q: want 26 base32 characters", id)
		}
		if seen[id] {
			t.Fatalf("id %q made twice", id)
		}
		seen[id] = true
		if i == 0 {
			first = id
		}
		// 48 bits of milliseconds fill the first 9 characters (45 bits) exactly.
		if id[:9] != first[:9] {
			t.Fatalf("ids of one millisecond differ in their time prefix: %q, %q", first, id)
		}
	}
	if later := newWorkID(now.Add(time.Hour)); later[:9] == first[:9] {
		t.Fatalf("an hour later the prefix is the same: %q, %q", first, later)
	}
}
