package tracing

import (
	"context"
	"io"
	"strings"
	"testing"
)

func TestSetupIsOffUnlessAsked(t *testing.T) {
	for _, tt := range []struct {
		env       map[string]string
		recording bool
		err       string
	}{
		{env: nil},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "console"}, recording: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318"}, recording: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: "want otlp, console or none"},
	} {
		tp, stop, err := Setup(context.Background(), func(k string) string { return tt.env[k] }, io.Discard)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: err %v, want %q", tt.env, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tt.env, err)
		}
		_, span := tp.Tracer("t").Start(context.Background(), "x")
		if span.IsRecording() != tt.recording {
			t.Errorf("%v: recording %v, want %v", tt.env, span.IsRecording(), tt.recording)
		}
		span.End()
		_ = stop(context.Background())
	}
}
