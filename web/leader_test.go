package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/canalhq/canal/jobs"
)

// leaderless answers like a process whose commands find no leader, or a
// leader that does not answer in time.
type leaderless struct{ *fakeJobs }

func (leaderless) Stop(_ context.Context, name string) (jobs.Status, error) {
	return jobs.Status{}, fmt.Errorf("stop %q: %w", name, jobs.ErrNoLeader)
}

func (leaderless) Trigger(_ context.Context, name string) (jobs.Status, error) {
	return jobs.Status{}, fmt.Errorf("trigger %q: %w", name, jobs.ErrLeaderTimeout)
}

// A command that reaches no leader is a 503 with the JSON error body and
// Retry-After, like a busy processor, in the API and on the buttons.
func TestNoLeaderIsServiceUnavailable(t *testing.T) {
	srv := newTestServer(t, nil, leaderless{newFakeJobs(nil, "report")})
	for _, path := range []string{"/api/jobs/report/stop", "/api/jobs/report/trigger"} {
		resp, err := http.Post(srv.URL+path, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error string `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable || body.Error == "" || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: %d %+v (%v), Retry-After %q; want 503 with the error", path, resp.StatusCode, body, err, resp.Header.Get("Retry-After"))
		}
	}
	for _, err := range []error{jobs.ErrNoLeader, jobs.ErrLeaderTimeout} {
		if got := commandStatus(fmt.Errorf("x: %w", err)); got != http.StatusServiceUnavailable {
			t.Errorf("button's status for %v: %d, want 503", err, got)
		}
	}
}
