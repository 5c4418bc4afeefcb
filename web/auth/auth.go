// Package auth says who a request is and what it may do: two roles (viewer
// and operator), static tokens sent as "Authorization: Bearer …" or typed on
// the login page, and signed session cookies. The dashboard asks an
// Authenticator, so a team can put its own single sign-on in front instead.
package auth

import (
	"context"
	"errors"
	"net/http"
)

// Role is what a principal may do. Higher roles include the lower ones.
type Role int

const (
	// Anonymous may see the login page and the health checks, nothing else.
	Anonymous Role = iota
	// Viewer may read every page, the wall, the WebSockets and the read API.
	Viewer
	// Operator may also press every button and call every write.
	Operator
)

func (r Role) String() string {
	switch r {
	case Viewer:
		return "viewer"
	case Operator:
		return "operator"
	}
	return "anonymous"
}

// Principal is who made a request.
type Principal struct {
	Name string // shown in the audit log: "operator", "viewer", "local", an SSO user
	Role Role
	// Via is how the principal was recognised: "bearer", "session",
	// "open" (no authentication configured, loopback) or an SSO's name.
	Via string
}

// Errors an Authenticator returns.
var (
	// ErrNoCredentials: the request carries none; it is anonymous.
	ErrNoCredentials = errors.New("no credentials")
	// ErrBadCredentials: the request carries credentials that are wrong
	// or expired; an API client gets 401.
	ErrBadCredentials = errors.New("invalid credentials")
)

// Authenticator says who a request is. Canal's is *Tokens; a team's SSO
// proxy header or OIDC session is another.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(r *http.Request) (Principal, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(r *http.Request) (Principal, error) { return f(r) }

type principalKey struct{}
type csrfKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// From returns the principal ctx carries (anonymous if none).
func From(ctx context.Context) Principal {
	p, _ := ctx.Value(principalKey{}).(Principal)
	return p
}

// CanOperate reports whether ctx's principal may press buttons: the one
// check every template uses to show them or not.
func CanOperate(ctx context.Context) bool { return From(ctx).Role >= Operator }

// WithCSRF returns ctx carrying the request's CSRF token, for the forms a
// page renders.
func WithCSRF(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, csrfKey{}, token)
}

// CSRF returns the CSRF token ctx carries ("" if none).
func CSRF(ctx context.Context) string {
	s, _ := ctx.Value(csrfKey{}).(string)
	return s
}
