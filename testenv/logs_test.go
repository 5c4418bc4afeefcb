package testenv

import "testing"

func TestLogLinesFindsBadLines(t *testing.T) {
	tests := []struct {
		name string
		line string
		bad  bool
	}{
		{"plain", `{"msg":"a","component":"jobs","n":1}`, false},
		{"nested distinct", `{"msg":"a","trace":{"sql":"x","err":"y"},"list":[{"a":1},{"a":2}]}`, false},
		{"duplicate at top", `{"msg":"a","component":"jobs","component":"queue"}`, true},
		{"duplicate nested", `{"msg":"a","g":{"k":1,"k":2}}`, true},
		{"duplicate in array", `{"msg":"a","l":[{"k":1,"k":2}]}`, true},
		{"not json", `time=now level=INFO msg=a`, true},
		{"not an object", `[1,2]`, true},
		{"trailing data", `{"msg":"a"} {"msg":"b"}`, true},
		{"unencodable value", `{"msg":"a","data":"!ERROR:json: unsupported type: func()"}`, true},
		{"key missing", `{"msg":"a","!BADKEY":1}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			LogLines(rec, []byte(tc.line+"\n"))
			if rec.failed != tc.bad {
				t.Errorf("failed = %v, want %v for %s", rec.failed, tc.bad, tc.line)
			}
		})
	}
}

// recorder notes a failure instead of failing the test.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Helper()               {}
