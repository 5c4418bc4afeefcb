package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"testing"
	"time"
)

func TestNewRowValidates(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name        string
		ctx         context.Context
		msg         Message
		wantErr     bool
		wantPayload string
		wantTP      string
	}{
		{"struct payload", context.Background(), Message{Topic: "order.placed", Payload: struct{ A int }{1}}, false, `{"A":1}`, ""},
		{"raw payload", context.Background(), Message{Topic: "t", Payload: json.RawMessage(`[1,2]`)}, false, `[1,2]`, ""},
		{"bytes payload", context.Background(), Message{Topic: "t", Payload: []byte(`"x"`)}, false, `"x"`, ""},
		{"nil payload", context.Background(), Message{Topic: "t"}, false, `null`, ""},
		{"invalid raw payload", context.Background(), Message{Topic: "t", Payload: json.RawMessage(`{`)}, true, "", ""},
		{"unmarshalable payload", context.Background(), Message{Topic: "t", Payload: make(chan int)}, true, "", ""},
		{"empty topic", context.Background(), Message{Topic: ""}, true, "", ""},
		{"topic with space", context.Background(), Message{Topic: "a b"}, true, "", ""},
		{"topic with wildcard", context.Background(), Message{Topic: "a.>"}, true, "", ""},
		{"topic with empty token", context.Background(), Message{Topic: "a..b"}, true, "", ""},
		// PostgreSQL refuses these in text columns; they must fail as bad
		// input, not as a driver error in the caller's transaction.
		{"raw payload with invalid UTF-8", context.Background(), Message{Topic: "t", Payload: json.RawMessage("\"\xff\"")}, true, "", ""},
		{"key with NUL", context.Background(), Message{Topic: "t", Key: "a\x00"}, true, "", ""},
		{"key with invalid UTF-8", context.Background(), Message{Topic: "t", Key: "a\xff"}, true, "", ""},
		{"header name with space", context.Background(), Message{Topic: "t", Headers: map[string]string{"a b": "x"}}, true, "", ""},
		{"header value with line break", context.Background(), Message{Topic: "t", Headers: map[string]string{"h": "x\r\nInjected: 1"}}, true, "", ""},
		{"ordinary headers", context.Background(), Message{Topic: "t", Headers: map[string]string{"X-Tenant": "a b é"}}, false, `null`, ""},
		{"header with NUL", context.Background(), Message{Topic: "t", Headers: map[string]string{"h": "\x00"}}, true, "", ""},
		{"traceparent from ctx", WithTraceparent(context.Background(), tp), Message{Topic: "t"}, false, `null`, tp},
		{"invalid traceparent ignored", WithTraceparent(context.Background(), "nope"), Message{Topic: "t"}, false, `null`, ""},
		{"explicit header wins", WithTraceparent(context.Background(), tp), Message{Topic: "t", Headers: map[string]string{"traceparent": "mine"}}, false, `null`, "mine"},
	}
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			row, err := newItem(tc.ctx, tc.msg, now)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidMessage) {
					t.Fatalf("err = %v, want ErrInvalidMessage", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(row.Payload) != tc.wantPayload {
				t.Errorf("payload = %s, want %s", row.Payload, tc.wantPayload)
			}
			var h map[string]string
			_ = json.Unmarshal(row.Meta, &h)
			if h["traceparent"] != tc.wantTP {
				t.Errorf("traceparent = %q, want %q", h["traceparent"], tc.wantTP)
			}
			if row.State != "" || !row.CreatedAt.Equal(now) || !row.RunAt.IsZero() {
				t.Errorf("row = %+v", row)
			}
		})
	}
}

func TestNewIDIsUUIDv7(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := NewID(t1)
	b := NewID(t1.Add(time.Millisecond))
	c := NewID(t1.Add(time.Millisecond))
	for _, id := range []string{a, b, c} {
		if !re.MatchString(id) {
			t.Errorf("%s is not a UUIDv7", id)
		}
	}
	if !(a < b) || b == c {
		t.Errorf("ids not time-ordered or not unique: %s %s %s", a, b, c)
	}
}
