package templates

import (
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
)

func TestOutboxCountMarksCappedCounts(t *testing.T) {
	tests := []struct {
		in   []int64
		want string
	}{
		{[]int64{0}, "0"},
		{[]int64{1234}, "1,234"},
		{[]int64{outbox.CountCap - 1}, "99,999"},
		{[]int64{outbox.CountCap}, "100,000+"},
		{[]int64{5, 7}, "12"},
		{[]int64{outbox.CountCap, 3}, "100,003+"},
	}
	for _, tt := range tests {
		if got := outboxCount(tt.in...); got != tt.want {
			t.Errorf("outboxCount(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDurReadsLikeAPerson(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0"},
		{1500 * time.Microsecond, "2ms"},
		{5 * time.Second, "5s"},
		{42 * time.Second, "42s"},
		{12 * time.Minute, "12m"},
		{12*time.Minute + 5*time.Second, "12m5s"},
		{90 * time.Minute, "1h30m"},
		{2 * time.Hour, "2h"},
		{79*time.Hour + 59*time.Minute + 59*time.Second, "3d 8h"},
		{72 * time.Hour, "3d"},
	}
	for _, tt := range tests {
		if got := dur(tt.in); got != tt.want {
			t.Errorf("dur(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestListCountsAndURLsReadOneWay(t *testing.T) {
	if got := countText(jobs.Count{N: 10000, More: true}); got != "10,000+" {
		t.Errorf("countText = %q, want 10,000+ (same separators as outbox counts)", got)
	}
	if got := countText(jobs.Count{N: 42}); got != "42" {
		t.Errorf("countText = %q, want 42", got)
	}
	tests := []struct{ got, want string }{
		{outboxURL("", "", "", ""), "/outbox"},
		{outboxURL("", "", "cust-7", ""), "/outbox?key=cust-7"},
		{outboxURL("dead", "order.placed", "", "17"), "/outbox?before=17&status=dead&topic=order.placed"},
		{workURL("", "", ""), "/work"},
		{workURL(jobs.WorkFailed, "email", ""), "/work?kind=email&state=failed"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("url = %q, want %q", tt.got, tt.want)
		}
	}
}
