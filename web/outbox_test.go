package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// apiFixture is a real relay on SQLite holding, once its relay stopped:
// two dispatched "ok" messages, one dead "bad" one and one pending "later".
type apiFixture struct {
	srv                     *httptest.Server
	relay                   *outbox.Relay
	ok1, ok2, dead, pending string
}

func newAPIFixture(t *testing.T) apiFixture {
	t.Helper()
	ctx := context.Background()
	db := testenv.SQLite(t)
	if err := outbox.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	r, err := outbox.New(db, outbox.Config{MaxAttempts: 1, PollInterval: 20 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r.Register("ok", outbox.PublisherFunc(func(context.Context, outbox.Delivery) error { return nil }))
	r.Register("bad", outbox.PublisherFunc(func(context.Context, outbox.Delivery) error { return outbox.MessageError(errors.New("receiver down")) }))
	add := func(topic string) string {
		var id string
		err := r.Transaction(ctx, func(tx *gorm.DB) error {
			var err error
			id, err = outbox.Add(ctx, tx, outbox.Message{Topic: topic, Payload: map[string]string{"t": topic}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	f := apiFixture{relay: r, ok1: add("ok"), ok2: add("ok"), dead: add("bad")}

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	testenv.Eventually(t, 60*time.Second, "fixture settled", func() bool {
		s, err := r.List(ctx, outbox.ListFilter{Status: outbox.StatusDispatched})
		d, err2 := r.List(ctx, outbox.ListFilter{Status: outbox.StatusDead})
		return err == nil && err2 == nil && len(s.Items) == 2 && len(d.Items) == 1
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f.pending = add("later") // the relay is stopped: it stays pending

	f.srv = httptest.NewServer(New(Deps{Logger: log, Outbox: r}))
	t.Cleanup(f.srv.Close)
	return f
}

type apiResp struct {
	status int
	body   map[string]any
	raw    string
}

func call(t *testing.T, srv *httptest.Server, method, path, body string) apiResp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, srv.URL+path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := apiResp{status: resp.StatusCode, raw: string(raw)}
	if len(raw) > 0 {
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s %s: content type %q", method, path, ct)
		}
		if err := json.Unmarshal(raw, &out.body); err != nil {
			t.Errorf("%s %s: not a JSON object: %s", method, path, raw)
		}
	}
	return out
}

func TestOutboxAPIReads(t *testing.T) {
	f := newAPIFixture(t)
	tests := []struct {
		name      string
		path      string
		status    int
		field     string // for a 400, the field named
		wantItems int    // for a list, -1 otherwise
	}{
		{"all", "/api/outbox", 200, "", 4},
		{"dead", "/api/outbox?status=dead", 200, "", 1},
		{"dispatched ok", "/api/outbox?status=dispatched&topic=ok", 200, "", 2},
		{"pending", "/api/outbox?status=pending", 200, "", 1},
		{"limited", "/api/outbox?limit=3", 200, "", 3},
		{"by a key none has", "/api/outbox?key=cust-7", 200, "", 0},
		{"long key", "/api/outbox?key=" + strings.Repeat("k", 201), 400, "key", -1},
		{"bad status", "/api/outbox?status=lost", 400, "status", -1},
		{"bad limit", "/api/outbox?limit=zero", 400, "limit", -1},
		{"limit too big", "/api/outbox?limit=100000", 400, "limit", -1},
		{"limit zero", "/api/outbox?limit=0", 400, "limit", -1},
		{"bad cursor", "/api/outbox?before=abc", 400, "before", -1},
		{"negative cursor", "/api/outbox?before=-4", 400, "before", -1},
		{"long topic", "/api/outbox?topic=" + strings.Repeat("t", 201), 400, "topic", -1},
		{"topic with odd characters", "/api/outbox?topic=a%20b*", 400, "topic", -1},
		{"topic with NUL", "/api/outbox?topic=a%00", 400, "topic", -1},
		{"topic with invalid UTF-8", "/api/outbox?topic=%FF", 400, "topic", -1},
		{"one", "/api/outbox/" + f.dead, 200, "", -1},
		{"NUL id", "/api/outbox/%00", 404, "", -1},
		{"invalid UTF-8 id", "/api/outbox/%FF", 404, "", -1},
		{"unknown", "/api/outbox/no-such-id", 404, "", -1},
		{"stats", "/api/outbox/stats", 200, "", -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, f.srv, "GET", tc.path, "")
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			if tc.status >= 400 {
				if msg, _ := r.body["error"].(string); msg == "" {
					t.Errorf("no error message: %s", r.raw)
				}
				if got, _ := r.body["field"].(string); got != tc.field {
					t.Errorf("field %q, want %q", got, tc.field)
				}
			}
			if tc.wantItems >= 0 {
				items, _ := r.body["items"].([]any)
				if len(items) != tc.wantItems {
					t.Errorf("%d items, want %d: %s", len(items), tc.wantItems, r.raw)
				}
			}
		})
	}

	t.Run("paging with the next cursor", func(t *testing.T) {
		var ids []string
		path := "/api/outbox?limit=3"
		for {
			r := call(t, f.srv, "GET", path, "")
			for _, it := range r.body["items"].([]any) {
				ids = append(ids, it.(map[string]any)["id"].(string))
			}
			next, _ := r.body["next"].(string)
			if next == "" {
				break
			}
			path = "/api/outbox?limit=3&before=" + next
		}
		want := []string{f.pending, f.dead, f.ok2, f.ok1}
		if strings.Join(ids, ",") != strings.Join(want, ",") {
			t.Errorf("pages gave %v, want %v", ids, want)
		}
	})

	t.Run("one message carries its attempts", func(t *testing.T) {
		r := call(t, f.srv, "GET", "/api/outbox/"+f.dead, "")
		log, _ := r.body["attemptLog"].([]any)
		if r.body["status"] != "dead" || r.body["lastError"] != "receiver down" || len(log) != 1 {
			t.Errorf("dead message: %s", r.raw)
		}
	})

	t.Run("stats counts", func(t *testing.T) {
		r := call(t, f.srv, "GET", "/api/outbox/stats", "")
		if r.body["dispatched"] != 2.0 || r.body["dead"] != 1.0 || r.body["pending"] != 1.0 {
			t.Errorf("stats: %s", r.raw)
		}
	})
}

func TestOutboxAPIWrites(t *testing.T) {
	tests := []struct {
		name   string
		method string
		path   func(f apiFixture) string
		body   string
		status int
		field  string
		after  func(t *testing.T, f apiFixture, r apiResp)
	}{
		{"retry dead", "POST", func(f apiFixture) string { return "/api/outbox/" + f.dead + "/retry" }, "", 200, "",
			func(t *testing.T, f apiFixture, r apiResp) {
				if r.body["status"] != "pending" {
					t.Errorf("after retry: %s", r.raw)
				}
			}},
		{"retry pending", "POST", func(f apiFixture) string { return "/api/outbox/" + f.pending + "/retry" }, "", 200, "", nil},
		{"retry dispatched", "POST", func(f apiFixture) string { return "/api/outbox/" + f.ok1 + "/retry" }, "", 409, "", nil},
		{"retry unknown", "POST", func(apiFixture) string { return "/api/outbox/nope/retry" }, "", 404, "", nil},
		{"delete dead", "DELETE", func(f apiFixture) string { return "/api/outbox/" + f.dead }, "", 204, "",
			func(t *testing.T, f apiFixture, _ apiResp) {
				if r := call(t, f.srv, "GET", "/api/outbox/"+f.dead, ""); r.status != 404 {
					t.Errorf("deleted message still there: %d", r.status)
				}
			}},
		{"delete pending", "DELETE", func(f apiFixture) string { return "/api/outbox/" + f.pending }, "", 409, "", nil},
		{"delete unknown", "DELETE", func(apiFixture) string { return "/api/outbox/nope" }, "", 404, "", nil},
		{"retry all dead", "POST", func(apiFixture) string { return "/api/outbox/retry-dead" }, "", 200, "",
			func(t *testing.T, f apiFixture, r apiResp) {
				if r.body["retried"] != 1.0 {
					t.Errorf("retried: %s", r.raw)
				}
			}},
		{"retry dead of another topic", "POST", func(apiFixture) string { return "/api/outbox/retry-dead?topic=ok" }, "", 200, "",
			func(t *testing.T, f apiFixture, r apiResp) {
				if r.body["retried"] != 0.0 {
					t.Errorf("retried: %s", r.raw)
				}
			}},
		{"retry dead of a topic in the body", "POST", func(apiFixture) string { return "/api/outbox/retry-dead" }, `{"topic":"bad"}`, 200, "",
			func(t *testing.T, f apiFixture, r apiResp) {
				if r.body["retried"] != 1.0 || r.body["topic"] != "bad" {
					t.Errorf("retried: %s", r.raw)
				}
			}},
		{"retry dead with a broken body", "POST", func(apiFixture) string { return "/api/outbox/retry-dead" }, `{"topic":`, 400, "body", nil},
		{"retry dead with an unknown field", "POST", func(apiFixture) string { return "/api/outbox/retry-dead" }, `{"topik":"x"}`, 400, "body", nil},
		{"retry dead of an impossible topic", "POST", func(apiFixture) string { return "/api/outbox/retry-dead" }, `{"topic":"a b*"}`, 400, "topic", nil},
		{"retry dead of a NUL topic", "POST", func(apiFixture) string { return "/api/outbox/retry-dead?topic=%00" }, "", 400, "topic", nil},
		{"retry dead with two bodies", "POST", func(apiFixture) string { return "/api/outbox/retry-dead" }, `{"topic":"bad"} {"topic":"ok"}`, 400, "body", nil},
		{"retry odd id", "POST", func(apiFixture) string { return "/api/outbox/%FF/retry" }, "", 404, "", nil},
		{"delete odd id", "DELETE", func(apiFixture) string { return "/api/outbox/%00" }, "", 404, "", nil},
		{"retry dead with two topics", "POST", func(apiFixture) string { return "/api/outbox/retry-dead?topic=a" }, `{"topic":"b"}`, 400, "topic", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newAPIFixture(t)
			r := call(t, f.srv, tc.method, tc.path(f), tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			if tc.status >= 400 {
				if msg, _ := r.body["error"].(string); msg == "" {
					t.Errorf("no error message: %s", r.raw)
				}
				if got, _ := r.body["field"].(string); got != tc.field {
					t.Errorf("field %q, want %q", got, tc.field)
				}
			}
			if tc.after != nil {
				tc.after(t, f, r)
			}
		})
	}
}

// A store failure is the server's fault: 500 with no internals in the body.
func TestOutboxAPIStoreFailureIs500(t *testing.T) {
	e := New(Deps{Logger: slog.New(slog.DiscardHandler)})
	e.GET("/t", listOutbox(failingLister{}))
	srv := httptest.NewServer(e)
	defer srv.Close()
	r := call(t, srv, "GET", "/t", "")
	if r.status != 500 || strings.Contains(r.raw, "disk on fire") {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}

type failingLister struct{}

func (failingLister) List(context.Context, outbox.ListFilter) (outbox.Page, error) {
	return outbox.Page{}, errors.New("disk on fire")
}
