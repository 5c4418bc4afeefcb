package templates

import (
	"context"
	"strings"
)

// A dashboard mounted under a prefix of another service (/canal) writes
// every URL it sends (links, forms, hx-* requests, scripts, the socket)
// through Path, so none escapes the prefix. The prefix rides in the
// context like the zone: web puts it in every request's, the hub in its
// renders'. Without one, every path is as written.

type prefixKey struct{}

// WithPrefix returns ctx carrying the path the dashboard is mounted under
// ("" or "/canal": no trailing slash, see CleanPrefix).
func WithPrefix(ctx context.Context, prefix string) context.Context {
	return context.WithValue(ctx, prefixKey{}, prefix)
}

// Prefix is the mount path ctx carries ("" at the root).
func Prefix(ctx context.Context) string {
	p, _ := ctx.Value(prefixKey{}).(string)
	return p
}

// Path is the browser's URL of p, a path of the dashboard ("/work?state=x").
func Path(ctx context.Context, p string) string { return Prefix(ctx) + p }

// CleanPrefix makes a mount path the one form Path expects: "canal",
// "/canal" and "/canal/" become "/canal"; "" and "/" become "".
func CleanPrefix(p string) string {
	p = strings.Trim(p, "/")
	if p == "" {
		return ""
	}
	return "/" + p
}
