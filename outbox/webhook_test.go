package outbox

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestWebhookPublish(t *testing.T) {
	d := Delivery{ID: "0190-id", Topic: "order.placed", Payload: []byte(`{"a":1}`), Headers: map[string]string{"traceparent": "00-x"}}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		timeout time.Duration
		wantErr string // "" for delivered
		message bool   // a MessageError (the attempt counts), not the receiver's failure
	}{
		{"200 delivered", func(w http.ResponseWriter, r *http.Request) {}, 0, "", false},
		{"204 delivered", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }, 0, "", false},
		{"500 failed", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }, 0, "500 Internal Server Error: boom", false},
		{"503 receiver down", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }, 0, "503", false},
		{"408 receiver's timeout", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(408) }, 0, "408", false},
		{"429 receiver busy", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(429) }, 0, "429", false},
		{"422 message refused", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(422) }, 0, "422", true},
		{"302 failed, not followed", func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				t.Errorf("redirect followed with %s", r.Method)
			}
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, 0, "302", false},
		{"409 message refused", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(409) }, 0, "409", true},
		{"timeout failed", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, 50 * time.Millisecond, "deadline exceeded", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			type seen struct {
				r    *http.Request
				body string
			}
			reqs := make(chan seen, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				reqs <- seen{r.Clone(context.Background()), string(b)}
				tc.handler(w, r)
			}))
			defer srv.Close()
			wh, err := NewWebhook(srv.URL+"/hook", nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			err = wh.Publish(ctx, d)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("err = %v, want delivered", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
			if IsMessageError(err) != tc.message {
				t.Errorf("IsMessageError(%v) = %v, want %v", err, !tc.message, tc.message)
			}
			var got *http.Request
			var body string
			select {
			case s := <-reqs:
				got, body = s.r, s.body
			default:
				t.Fatal("no request")
			}
			if got.Method != http.MethodPost || got.URL.Path != "/hook" || body != `{"a":1}` ||
				got.Header.Get("Idempotency-Key") != d.ID || got.Header.Get("Canal-Topic") != d.Topic ||
				got.Header.Get("traceparent") != "00-x" || got.Header.Get("Content-Type") != "application/json" {
				t.Errorf("request %s %s %v body %s", got.Method, got.URL, got.Header, body)
			}
		})
	}
}

func TestNewWebhookRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "localhost:80", "http://"} {
		if _, err := NewWebhook(u, nil); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewWebhook(%q) err = %v", u, err)
		}
	}
}

// A webhook URL's secrets (user, password, a token in the path or query, as
// Slack-style hooks carry them) appear in no error: not in a failed
// attempt's error, which the attempt log and the pages show, nor in the
// error of a bad URL.
func TestWebhookErrorsHideURLSecrets(t *testing.T) {
	secrets := []string{"hookuser", "pw-s3cret", "T0KEN-path", "q-t0ken"}
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	addr := srv.Listener.Addr().String()
	srv.Close() // nothing listens there now: the POST fails in transport

	w, err := NewWebhook("http://hookuser:pw-s3cret@"+addr+"/services/T0KEN-path?token=q-t0ken", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pubErr := w.Publish(ctx, Delivery{ID: "0190-id", Topic: "t", Payload: []byte(`{}`)})
	if pubErr == nil {
		t.Fatal("a POST to a closed port succeeded")
	}
	_, badErr := NewWebhook("ftp://hookuser:pw-s3cret@"+addr+"/services/T0KEN-path?token=q-t0ken", nil)
	if !errors.Is(badErr, ErrInvalidConfig) {
		t.Fatalf("bad URL err = %v, want ErrInvalidConfig", badErr)
	}
	for _, err := range []error{pubErr, badErr} {
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error %q shows %s", err, s)
			}
		}
		if !strings.Contains(err.Error(), addr) {
			t.Errorf("error %q does not name the host %s", err, addr)
		}
	}
}
