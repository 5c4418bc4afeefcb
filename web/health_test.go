package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestHealthzAndStaticAnswerGetAndHead(t *testing.T) {
	ready := false
	e := New(Deps{Ready: func() bool { return ready }, Started: time.Now()})
	tests := []struct {
		method, path string
		ready        bool
		want         int
	}{
		{http.MethodGet, "/healthz", false, http.StatusOK}, // liveness: starting or stopping is alive
		{http.MethodGet, "/healthz", true, http.StatusOK},
		{http.MethodHead, "/healthz", true, http.StatusOK},
		{http.MethodHead, "/static/canal.css", true, http.StatusOK},
		{http.MethodGet, "/static/canal.css", true, http.StatusOK},
		{http.MethodGet, "/static/nope.css", true, http.StatusNotFound},
		{http.MethodPost, "/healthz", true, http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		ready = tt.ready
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(tt.method, tt.path, nil)
		req.Host = "localhost:8080"
		e.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("%s %s (ready=%v) = %d, want %d", tt.method, tt.path, tt.ready, rec.Code, tt.want)
		}
		if tt.method == http.MethodGet && tt.path == "/healthz" {
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["status"] == nil {
				t.Errorf("GET /healthz body = %q, want JSON with a status", rec.Body.String())
			}
		}
	}
}
