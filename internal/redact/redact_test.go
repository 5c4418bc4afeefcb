package redact

import (
	"strings"
	"testing"
)

func TestDSN(t *testing.T) {
	tests := []struct{ in, hidden, kept string }{
		{"postgres://app:hunter2@db.example:5432/canal?sslmode=disable", "hunter2", "db.example:5432/canal"},
		{"postgres://app@db.example/canal?password=hunter2", "hunter2", "app@db.example"},
		{"host=db.example user=app password=hunter2 dbname=canal", "hunter2", "dbname=canal"},
		{"host=db.example password='hun ter2' dbname=canal", "hun ter2", "dbname=canal"},
	}
	for _, tt := range tests {
		got := DSN(tt.in)
		if strings.Contains(got, tt.hidden) || !strings.Contains(got, tt.kept) {
			t.Errorf("DSN(%q) = %q", tt.in, got)
		}
	}
	if got := DSN("canal.db"); got != "canal.db" {
		t.Errorf("DSN(file) = %q", got)
	}
}
