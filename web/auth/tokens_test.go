package auth

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestTokensAndSessions(t *testing.T) {
	tok, err := NewTokens("operator-0123456789", "viewer-0123456789", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tok.now = func() time.Time { return now }

	for secret, want := range map[string]Role{"operator-0123456789": Operator, "viewer-0123456789": Viewer, "operator-012345678": Anonymous, "": Anonymous} {
		p, ok := tok.Check(secret)
		if p.Role != want || ok != (want != Anonymous) {
			t.Errorf("Check(%q) = %v %v, want %v", secret, p, ok, want)
		}
	}

	auth := func(header, cookie string) (Principal, error) {
		r := httptest.NewRequest("GET", "/", nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		if cookie != "" {
			r.Header.Set("Cookie", SessionCookie+"="+cookie)
		}
		return tok.Authenticate(r)
	}
	if p, err := auth("Bearer viewer-0123456789", ""); err != nil || p.Role != Viewer || p.Via != "bearer" {
		t.Errorf("bearer viewer: %v %v", p, err)
	}
	if _, err := auth("Basic dXNlcjpwYXNz", ""); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("basic auth: %v, want ErrBadCredentials", err)
	}
	if _, err := auth("", ""); !errors.Is(err, ErrNoCredentials) {
		t.Errorf("nothing: %v, want ErrNoCredentials", err)
	}

	v, ttl := tok.NewSession(Principal{Name: "viewer", Role: Viewer}, false)
	if ttl != time.Hour || strings.Contains(v, "viewer-0123456789") {
		t.Fatalf("session %q for %s", v, ttl)
	}
	if p, err := auth("", v); err != nil || p.Role != Viewer || p.Via != "session" {
		t.Errorf("session: %v %v", p, err)
	}
	// A viewer who edits the cookie to claim the operator role is anonymous.
	payload, sig, _ := strings.Cut(v, ".")
	forged, _ := tok.NewSession(Principal{Name: "viewer", Role: Operator}, false)
	fp, _, _ := strings.Cut(forged, ".")
	for _, bad := range []string{fp + "." + sig, payload + "." + sig[1:], payload, "x.y", ""} {
		if p, err := auth("", bad); err == nil || p.Role != Anonymous {
			t.Errorf("tampered cookie %q: %v %v", bad, p, err)
		}
	}
	now = now.Add(time.Hour + time.Second)
	if _, err := auth("", v); !errors.Is(err, ErrNoCredentials) {
		t.Errorf("expired session: %v, want anonymous", err)
	}
	// Another token set signs differently: sessions end when tokens change.
	other, _ := NewTokens("operator-9876543210", "viewer-0123456789", time.Hour)
	other.now = func() time.Time { return now.Add(-time.Hour) }
	if _, ok := other.verify(v); ok {
		t.Errorf("a session survived a token change")
	}
}

func TestNewTokensRefusesWeakOnes(t *testing.T) {
	for _, tt := range []struct{ op, view, want string }{
		{"", "", "no token"},
		{"short", "", "at least 16"},
		{"same-0123456789ab", "same-0123456789ab", "must differ"},
	} {
		if _, err := NewTokens(tt.op, tt.view, 0); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewTokens(%q, %q) = %v, want %q", tt.op, tt.view, err, tt.want)
		}
	}
}

// With only a viewer token, the cookie key is made of things the viewer
// knows (the viewer token, and nothing for the operator): the viewer can
// sign any session. A session of a role that has no token, or naming
// someone else, must still not be accepted.
func TestViewerOnlyTokensRefuseForgedOperatorSessions(t *testing.T) {
	tok, err := NewTokens("", "viewer-0123456789", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// What a viewer can compute from the viewer token alone: NewTokens'
	// key, rebuilt from public inputs.
	viewerOnly, _ := NewTokens("", "viewer-0123456789", time.Hour)
	for _, p := range []Principal{{Name: "operator", Role: Operator}, {Name: "mallory", Role: Operator}, {Name: "mallory", Role: Viewer}} {
		v, _ := viewerOnly.NewSession(p, false)
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", SessionCookie+"="+v)
		got, err := tok.Authenticate(r)
		if err == nil && (got.Role == Operator || got.Name != "viewer") {
			t.Errorf("forged session %+v accepted as %+v", p, got)
		}
	}
}
