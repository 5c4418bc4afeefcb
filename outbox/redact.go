package outbox

import (
	"net/url"
	"slices"
	"strings"
)

// RedactURL returns what of a broker URL may be shown in logs, errors and
// pages: its scheme and host (and port). Userinfo, path and query are
// dropped, not masked, because a password may hide in any of them
// (url.URL.Redacted keeps the user name and the query). A URL that does not
// parse shows as "(invalid URL)", never as itself.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host
}

// redactError returns err with every secret of raw (its password, user
// name, path, query values and the whole URL) replaced by its redacted form, so a
// client library that quotes the URL it was given cannot leak it. errors.Is
// and errors.As still see err.
func redactError(err error, raw string) error {
	if err == nil || raw == "" {
		return err
	}
	msg := err.Error()
	clean := msg
	for _, form := range urlForms(raw) {
		clean = strings.ReplaceAll(clean, form, RedactURL(raw))
	}
	for _, s := range urlSecrets(raw) {
		clean = strings.ReplaceAll(clean, s, "xxxxx")
	}
	for _, s := range pathTokens(raw) {
		clean = replaceWord(clean, s, "xxxxx")
	}
	if clean == msg {
		return err
	}
	return &redacted{msg: clean, err: err}
}

// urlForms are the ways a client library may quote raw whole: as given,
// re-encoded, and with the password masked as url.URL.Redacted and net/http
// (its errors read Post "http://user:***@host/path?query") mask it; the
// path and query they keep may hold a token too (Slack-style webhooks).
func urlForms(raw string) []string {
	forms := []string{raw}
	u, err := url.Parse(raw)
	if err != nil {
		return forms
	}
	forms = append(forms, u.String(), u.Redacted())
	if _, ok := u.User.Password(); ok {
		forms = append(forms, strings.Replace(u.String(), u.User.String()+"@", u.User.Username()+":***@", 1))
	}
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	return forms
}

// urlSecrets are the parts of raw that must not be shown, longest first so
// that a secret containing another is replaced whole.
func urlSecrets(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		// Unparsable: hide whatever follows the scheme.
		if _, rest, ok := strings.Cut(raw, "://"); ok && rest != "" {
			return []string{rest}
		}
		return nil
	}
	var out []string
	add := func(s string) {
		if len(s) >= 3 { // a one- or two-letter value would blank out common words
			out = append(out, s, url.QueryEscape(s), url.PathEscape(s))
		}
	}
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			add(p)
		}
		add(u.User.Username())
		out = append(out, u.User.String())
	}
	// Slack-style hooks carry their token in the path, and a receiver may
	// echo the path it was sent.
	if u.Path != "" && u.Path != "/" {
		add(u.Path)
		add(u.EscapedPath())
	}
	if u.RawQuery != "" {
		out = append(out, u.RawQuery)
		for _, vs := range u.Query() {
			for _, v := range vs {
				add(v)
			}
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// pathTokens are the segments of raw's path that may be a token, to be
// hidden where they stand as a word of their own (a receiver may quote
// only the token): every segment but a short all-lowercase route word such
// as "services" or "hooks", which would blank out the words of the message
// itself.
func pathTokens(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	var out []string
	for _, seg := range strings.Split(u.Path, "/") {
		if len(seg) < 3 || (len(seg) < 16 && strings.Trim(seg, "abcdefghijklmnopqrstuvwxyz") == "") {
			continue
		}
		out = append(out, seg, url.PathEscape(seg))
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(out)
}

// replaceWord replaces each occurrence of word in s that is not part of a
// longer word (letters, digits, '-', '_', '.', '%' and '~' join a word, as
// they do a path segment).
func replaceWord(s, word, with string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, word)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(word)
		if (i > 0 && wordByte(s[i-1])) || (end < len(s) && wordByte(s[end])) {
			b.WriteString(s[:i+1])
			s = s[i+1:]
			continue
		}
		b.WriteString(s[:i])
		b.WriteString(with)
		s = s[end:]
	}
}

func wordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '%' || c == '~' || c >= 0x80
}

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }
