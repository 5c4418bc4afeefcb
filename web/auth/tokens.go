package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// SessionCookie is the name of the login session cookie.
const SessionCookie = "canal_session"

// MinTokenLen is the shortest token accepted: long enough that guessing is
// hopeless even without the login rate limit.
const MinTokenLen = 16

// Tokens authenticates with two static secrets, one per role, sent as a
// Bearer token or typed on the login page, which then sets a signed session
// cookie. Tokens never change after NewTokens, so it is safe for concurrent
// use.
type Tokens struct {
	operator, viewer [32]byte // SHA-256 of each token: compared in constant time
	hasOp, hasView   bool
	key              []byte // signs session cookies
	ttl              time.Duration
	now              func() time.Time
}

// NewTokens returns an authenticator for the given tokens ("" leaves that
// role without one). Sessions last ttl (default 12h). The cookie signing
// key is derived from the tokens, so sessions survive a restart and all end
// when a token changes.
func NewTokens(operator, viewer string, ttl time.Duration) (*Tokens, error) {
	if operator == "" && viewer == "" {
		return nil, errors.New("no token given")
	}
	for _, t := range []struct{ name, v string }{{"operator", operator}, {"viewer", viewer}} {
		if t.v != "" && len(t.v) < MinTokenLen {
			return nil, fmt.Errorf("%s token: must be at least %d characters", t.name, MinTokenLen)
		}
	}
	if operator != "" && operator == viewer {
		return nil, errors.New("the operator and viewer tokens must differ")
	}
	if ttl <= 0 {
		ttl = 12 * time.Hour
	}
	t := &Tokens{ttl: ttl, now: time.Now}
	if operator != "" {
		t.operator, t.hasOp = sha256.Sum256([]byte(operator)), true
	}
	if viewer != "" {
		t.viewer, t.hasView = sha256.Sum256([]byte(viewer)), true
	}
	mac := hmac.New(sha256.New, []byte("canal session key v1"))
	mac.Write(t.operator[:])
	mac.Write(t.viewer[:])
	t.key = mac.Sum(nil)
	return t, nil
}

// Check returns the principal a secret names, comparing it with both tokens
// in constant time.
func (t *Tokens) Check(secret string) (Principal, bool) {
	h := sha256.Sum256([]byte(secret))
	op := t.hasOp && subtle.ConstantTimeCompare(h[:], t.operator[:]) == 1
	view := t.hasView && subtle.ConstantTimeCompare(h[:], t.viewer[:]) == 1
	switch {
	case op:
		return Principal{Name: "operator", Role: Operator}, true
	case view:
		return Principal{Name: "viewer", Role: Viewer}, true
	}
	return Principal{}, false
}

// Authenticate reads a Bearer token, else the session cookie.
func (t *Tokens) Authenticate(r *http.Request) (Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, secret, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return Principal{}, fmt.Errorf("%w: want Authorization: Bearer <token>", ErrBadCredentials)
		}
		p, ok := t.Check(strings.TrimSpace(secret))
		if !ok {
			return Principal{}, ErrBadCredentials
		}
		p.Via = "bearer"
		return p, nil
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return Principal{}, ErrNoCredentials
	}
	p, ok := t.verify(c.Value)
	if !ok {
		// An expired or forged cookie makes a browser anonymous: it is
		// sent to the login page, not refused.
		return Principal{}, ErrNoCredentials
	}
	p.Via = "session"
	return p, nil
}

// session is a cookie's signed content.
type session struct {
	Name string `json:"n"`
	Role Role   `json:"r"`
	Exp  int64  `json:"e"` // unix seconds
}

// NewSession returns the value of a session cookie for p and how long it
// lasts; long lasts longer (a wall screen's link), twice ttl or 30 days.
func (t *Tokens) NewSession(p Principal, long bool) (string, time.Duration) {
	ttl := t.ttl
	if long {
		ttl = max(2*t.ttl, 30*24*time.Hour)
	}
	b, _ := json.Marshal(session{Name: p.Name, Role: p.Role, Exp: t.now().Add(ttl).Unix()})
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + t.sign(payload), ttl
}

func (t *Tokens) sign(payload string) string {
	mac := hmac.New(sha256.New, t.key)
	mac.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func (t *Tokens) verify(v string) (Principal, bool) {
	payload, sig, ok := strings.Cut(v, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(t.sign(payload))) {
		return Principal{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return Principal{}, false
	}
	var s session
	if json.Unmarshal(b, &s) != nil || t.now().Unix() >= s.Exp {
		return Principal{}, false
	}
	// Only a role that has a token, under the name Check gives it: with
	// the viewer token alone the signing key is made of what a viewer
	// knows, so a viewer could sign a session naming anyone in any role.
	switch {
	case s.Role == Operator && t.hasOp && s.Name == "operator":
	case s.Role == Viewer && t.hasView && s.Name == "viewer":
	default:
		return Principal{}, false
	}
	return Principal{Name: s.Name, Role: s.Role}, true
}
