package outbox

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"amqp://guest:s3cret@mq.example:5672/vhost?heartbeat=10", "amqp://mq.example:5672"},
		{"redis://:s3cret@127.0.0.1:6379/0", "redis://127.0.0.1:6379"},
		{"rediss://user@r.example/1?password=s3cret", "rediss://r.example"},
		{"https://hooks.example/path?token=s3cret", "https://hooks.example"},
		{"not a url", "(invalid URL)"},
		{"amqp://user:s3cret@[::1", "(invalid URL)"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedactErrorHidesSecretsAndKeepsTheChain(t *testing.T) {
	raw := "amqp://canal:s3cret-pw@mq.example:5672/?token=t0ken-value"
	base := errors.New("boom")
	for _, in := range []error{
		fmt.Errorf("dial %s: %w", raw, base),
		fmt.Errorf("auth canal:s3cret-pw refused: %w", base),
		fmt.Errorf("bad option %q: %w", "t0ken-value", base),
	} {
		got := redactError(in, raw)
		for _, secret := range []string{"s3cret-pw", "t0ken-value"} {
			if strings.Contains(got.Error(), secret) {
				t.Errorf("redactError(%q) = %q, shows %s", in, got, secret)
			}
		}
		if !errors.Is(got, base) {
			t.Errorf("redactError(%q) lost the wrapped error", in)
		}
	}
	if err := redactError(base, raw); err != base {
		t.Errorf("an error without secrets changed: %v", err)
	}
	if redactError(nil, raw) != nil {
		t.Error("nil became an error")
	}
}

// A receiver that refuses a webhook may quote the path it was sent, whole or
// a piece of it, raw or escaped, and Slack-style hooks carry their token in
// the path: none of it reaches the error the attempt log stores, while the
// error still says what happened.
func TestWebhookErrorHidesAPathTokenTheReceiverEchoes(t *testing.T) {
	const token = "XyZ-s3cret-P4TH"
	echoes := map[string]func(*http.Request) string{
		"path":         func(r *http.Request) string { return "no_service for " + r.URL.Path },
		"escaped path": func(r *http.Request) string { return "no_service for " + r.URL.EscapedPath() },
		"request URI":  func(r *http.Request) string { return "POST " + r.RequestURI + " refused" },
		"last segment": func(r *http.Request) string { return "invalid_token: " + path.Base(r.URL.Path) },
		"user":         func(r *http.Request) string { u, p, _ := r.BasicAuth(); return "bad login " + u + ":" + p },
		"query value":  func(r *http.Request) string { return "bad key " + r.URL.Query().Get("key") },
	}
	for name, echo := range echoes {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, echo(r), http.StatusNotFound)
			}))
			defer srv.Close()
			raw := "http://hook-user:hook-pass@" + srv.Listener.Addr().String() + "/services/T0/" + token + "/caf%C3%A9?key=q-s3cret"
			w, err := NewWebhook(raw, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = w.Publish(context.Background(), Delivery{ID: "0190-id", Topic: "t", Payload: []byte(`{}`)})
			if err == nil || !strings.Contains(err.Error(), "webhook: 404 Not Found") {
				t.Fatalf("err = %v, want the 404", err)
			}
			for _, s := range []string{token, "T0/", "café", "caf%C3%A9", "hook-user", "hook-pass", "q-s3cret"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q shows %q", err, s)
				}
			}
		})
	}
}

func TestRedactErrorHidesPathTokensAsWholeWords(t *testing.T) {
	raw := "https://hooks.example/services/T0B1/S3CRET/hook"
	tests := []struct{ in, want string }{
		{"POST https://hooks.example/services/T0B1/S3CRET/hook: EOF", "POST https://hooks.example: EOF"},
		{"unknown /services/T0B1/S3CRET/hook", "unknown xxxxx"},
		{"token S3CRET revoked (team T0B1)", "token xxxxx revoked (team xxxxx)"},
		// A route word of the path is not a secret, and a word that contains
		// a segment is left whole.
		{"webhook: 410 Gone: hook is disabled", "webhook: 410 Gone: hook is disabled"},
	}
	for _, tt := range tests {
		if got := redactError(errors.New(tt.in), raw).Error(); got != tt.want {
			t.Errorf("redactError(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
