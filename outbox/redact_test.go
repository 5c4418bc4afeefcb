package outbox

import (
	"errors"
	"fmt"
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
