package testenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// LogLines parses out, a process's JSON log, one object a line, and fails
// t on any line that is not one, that has a key twice in one object (a
// logger's With applied over one that already had the key), or that
// carries slog's markers of a value or key it could not write ("!ERROR:",
// "!BADKEY"). It returns the objects.
func LogLines(t testing.TB, out []byte) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for i, line := range bytes.Split(out, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := checkObject(json.NewDecoder(bytes.NewReader(line))); err != nil {
			t.Errorf("log line %d: %v\n%s", i+1, err, line)
			continue
		}
		if bytes.Contains(line, []byte(`"!ERROR:`)) || bytes.Contains(line, []byte(`"!BADKEY"`)) {
			t.Errorf("log line %d: a value or key slog could not write\n%s", i+1, line)
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Errorf("log line %d: %v\n%s", i+1, err, line)
			continue
		}
		objs = append(objs, m)
	}
	return objs
}

// checkObject reads one JSON object from dec, failing on a key that
// appears twice in it or in any object inside it, and on trailing data.
func checkObject(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("not a JSON object: starts with %v", tok)
	}
	if err := checkValue(dec, tok); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the object")
	}
	return nil
}

// checkValue reads the rest of the value that began with tok.
func checkValue(dec *json.Decoder, tok json.Token) error {
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := k.(string)
			if seen[key] {
				return fmt.Errorf("duplicate key %q", key)
			}
			seen[key] = true
			if err := next(dec); err != nil {
				return fmt.Errorf("%s.%w", key, err)
			}
		}
	case json.Delim('['):
		for dec.More() {
			if err := next(dec); err != nil {
				return err
			}
		}
	default:
		return nil
	}
	_, err := dec.Token() // the closing delimiter
	return err
}

func next(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	return checkValue(dec, tok)
}

// Logged reports whether one of objs has msg containing sub.
func Logged(objs []map[string]any, sub string) bool {
	for _, o := range objs {
		if m, _ := o["msg"].(string); strings.Contains(m, sub) {
			return true
		}
	}
	return false
}
