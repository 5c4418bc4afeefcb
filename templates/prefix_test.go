package templates

import (
	"context"
	"testing"
)

func TestPrefixPath(t *testing.T) {
	for _, tt := range []struct{ mount, path, want string }{
		{"", "/", "/"},
		{"/", "/work?state=failed", "/work?state=failed"},
		{"canal", "/", "/canal/"},
		{"/canal", "/ws?topics=overview", "/canal/ws?topics=overview"},
		{"/canal/", "/static/canal.js", "/canal/static/canal.js"},
		{"/tools/canal/", "/jobs/a%2Fb", "/tools/canal/jobs/a%2Fb"},
	} {
		ctx := WithPrefix(context.Background(), CleanPrefix(tt.mount))
		if got := Path(ctx, tt.path); got != tt.want {
			t.Errorf("mounted at %q: Path(%q) = %q, want %q", tt.mount, tt.path, got, tt.want)
		}
	}
	if got := Path(context.Background(), "/work"); got != "/work" {
		t.Errorf("no prefix in the context: %q", got)
	}
}
