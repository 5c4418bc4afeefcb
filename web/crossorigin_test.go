package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/canalhq/canal/jobs"
)

// stopOnly is a JobController whose Stop records that it was called.
type stopOnly struct {
	JobController
	stopped int
}

func (s *stopOnly) Stop(_ context.Context, name string) (jobs.Status, error) {
	s.stopped++
	return jobs.Status{Name: name}, nil
}

func TestCrossSitePostsAreRefused(t *testing.T) {
	tests := []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"no browser headers (curl, programs)", nil, http.StatusOK},
		// A browser's writes also carry the CSRF token (see auth_test.go
		// for the same requests without it).
		{"same origin", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1", "Cookie": "canal_csrf=" + testCSRF, "X-CSRF-Token": testCSRF}, http.StatusOK},
		{"typed by the user", map[string]string{"Sec-Fetch-Site": "none", "Cookie": "canal_csrf=" + testCSRF, "X-CSRF-Token": testCSRF}, http.StatusOK},
		{"cross site", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example", "Cookie": "canal_csrf=" + testCSRF, "X-CSRF-Token": testCSRF}, http.StatusForbidden},
		{"cross origin, old browser", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jc := &stopOnly{}
			e := New(Deps{Jobs: jc, Started: time.Now()})
			req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/api/jobs/report/stop", strings.NewReader(""))
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status = %d, want %d: %s", rec.Code, tt.want, rec.Body.String())
			}
			if tt.want == http.StatusForbidden {
				var body apiError
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || !strings.Contains(body.Error, "cross-origin") {
					t.Errorf("body = %q, want a JSON error naming the cross-origin refusal", rec.Body.String())
				}
				if jc.stopped != 0 {
					t.Errorf("the refused command reached the processor")
				}
			} else if jc.stopped != 1 {
				t.Errorf("stop reached the processor %d times, want 1", jc.stopped)
			}
		})
	}
}
