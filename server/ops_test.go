package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/canalhq/canal/server/servertest"
	"github.com/canalhq/canal/testenv"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads /metrics with the Prometheus text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// value sums the samples of name whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	var sum float64
	found := false
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum, found
}

func TestMetricsAndReadiness(t *testing.T) {
	inst := servertest.Start(t, nil)
	post := func(path string) {
		resp, err := http.Post(inst.URL+path, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	post("/api/jobs/report/trigger")
	post("/api/jobs/nope/trigger") // a failed command

	testenv.Eventually(t, 30*time.Second, "metrics show runs, commands and dispatches", func() bool {
		fams := scrape(t, inst.URL)
		ok, _ := value(fams, "canal_commands_total", map[string]string{"command": "jobs.trigger", "result": "ok"})
		failed, _ := value(fams, "canal_commands_total", map[string]string{"command": "jobs.trigger", "result": "failed"})
		runs, _ := value(fams, "canal_job_runs_total", map[string]string{"job": "report"})
		lat, _ := value(fams, "canal_outbox_dispatch_latency_seconds", nil)
		waits, _ := value(fams, "canal_control_channel_wait_seconds", nil)
		return ok >= 1 && failed >= 1 && runs >= 1 && lat >= 1 && waits >= 2
	})
	fams := scrape(t, inst.URL)
	for _, name := range []string{
		"canal_control_channel_depth", "canal_control_channel_wait_seconds", "canal_command_duration_seconds", "canal_job_run_duration_seconds",
		"canal_work_queue_depth", "canal_work_items_total", "canal_outbox_messages", "canal_outbox_oldest_pending_seconds",
		"canal_hub_clients", "canal_hub_frames_dropped_total", "canal_http_requests_total", "canal_processor_up",
	} {
		if _, ok := fams[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	for _, p := range []string{"critical", "high", "normal", "low"} {
		if _, ok := value(fams, "canal_work_queue_depth", map[string]string{"priority": p}); !ok {
			t.Errorf("no work queue depth for %s", p)
		}
	}
	if up, _ := value(fams, "canal_processor_up", nil); up != 1 {
		t.Errorf("canal_processor_up = %v", up)
	}
	// Routes, never raw paths, label the request counter.
	for _, m := range fams["canal_http_requests_total"].Metric {
		for _, l := range m.Label {
			if l.GetName() == "route" && strings.Contains(l.GetValue(), "nope") {
				t.Errorf("a raw path became a label: %s", l.GetValue())
			}
		}
	}

	resp, err := http.Get(inst.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 200 || body["status"] != "ready" {
		t.Errorf("/readyz: %d %v", resp.StatusCode, body)
	}

	// The access log has one JSON line per request, with its id and
	// without the query string.
	req, _ := http.NewRequest("GET", inst.URL+"/api/outbox?topic=secret.query.value", nil)
	req.Header.Set("X-Request-Id", "trace-me-42")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Request-Id") != "trace-me-42" {
		t.Errorf("request id not echoed: %q", resp.Header.Get("X-Request-Id"))
	}
	testenv.Eventually(t, 60*time.Second, "the access log line", func() bool {
		for _, line := range strings.Split(inst.Logs(), "\n") {
			if strings.Contains(line, `"request_id":"trace-me-42"`) {
				var rec map[string]any
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("not JSON: %s", line)
				}
				if rec["path"] != "/api/outbox" || rec["status"] != float64(200) || strings.Contains(line, "secret.query.value") {
					t.Fatalf("access line %s", line)
				}
				return true
			}
		}
		return false
	})
}

// A request's traceparent reaches the message it adds, and the relay's
// dispatch span links back to the request's span (spans written by the
// console exporter, which OTEL_TRACES_EXPORTER turns on).
func TestTraceparentLinksRequestToDispatch(t *testing.T) {
	inst := servertest.Start(t, map[string]string{"OTEL_TRACES_EXPORTER": "console"})
	const traceID, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, _ := http.NewRequest("POST", inst.URL+"/api/orders", strings.NewReader(`{"customer":"ada","amount":12.5}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-"+parent+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var placed struct{ MessageID string }
	_ = json.NewDecoder(resp.Body).Decode(&placed)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("POST /api/orders: %d", resp.StatusCode)
	}
	resp, err = http.Get(inst.URL + "/api/outbox/" + placed.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	var msg struct{ Headers map[string]string }
	_ = json.NewDecoder(resp.Body).Decode(&msg)
	resp.Body.Close()
	tp := msg.Headers["traceparent"]
	if !strings.HasPrefix(tp, "00-"+traceID+"-") || strings.Contains(tp, parent) {
		t.Fatalf("message traceparent %q: want the request's trace and its own span (not the caller's)", tp)
	}
	requestSpan := strings.Split(tp, "-")[2]
	testenv.Eventually(t, 60*time.Second, "the message is dispatched", func() bool {
		resp, err := http.Get(inst.URL + "/api/outbox/" + placed.MessageID)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var m struct{ Status string }
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return m.Status == "dispatched"
	})
	if err := inst.Stop(); err != nil { // flushes the spans
		t.Fatal(err)
	}
	type span struct {
		Name        string
		SpanContext struct{ TraceID, SpanID string }
		Parent      struct{ TraceID, SpanID string }
		Links       []struct {
			SpanContext struct{ TraceID, SpanID string }
		}
	}
	var server, dispatch *span
	dec := json.NewDecoder(strings.NewReader(inst.Logs()))
	for dec.More() {
		var s span
		if err := dec.Decode(&s); err != nil {
			break
		}
		switch {
		case s.Name == "POST /api/orders" && s.SpanContext.TraceID == traceID:
			server = &s
		case strings.HasPrefix(s.Name, "outbox.dispatch") && len(s.Links) > 0 && s.Links[0].SpanContext.SpanID == requestSpan:
			dispatch = &s
		}
	}
	if server == nil || server.SpanContext.SpanID != requestSpan || server.Parent.SpanID != parent {
		t.Fatalf("no server span continuing the caller's trace with the message's span id %s:\n%s", requestSpan, inst.Logs())
	}
	if dispatch == nil || dispatch.Links[0].SpanContext.TraceID != traceID {
		t.Fatalf("no dispatch span linked to the request span %s", requestSpan)
	}
}
