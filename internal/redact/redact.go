// Package redact keeps database passwords out of logs and errors: a
// database address keeps its shape (user, host, database name), which an
// operator needs to tell databases apart, and loses its password. Publisher
// and broker URLs are the outbox's (outbox.RedactURL): scheme and host only.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// passwordRE finds key=value passwords in a PostgreSQL keyword DSN.
var passwordRE = regexp.MustCompile(`(?i)(password\s*=\s*)('[^']*'|\S+)`)

// DSN hides a database address's password, in URL or keyword form, and
// query parameters named like secrets.
func DSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" && u.Host != "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		for k := range q {
			if lk := strings.ToLower(k); strings.Contains(lk, "password") || strings.Contains(lk, "secret") {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	return passwordRE.ReplaceAllString(dsn, "${1}xxxxx")
}
