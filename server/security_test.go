package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/server"
	"github.com/canalhq/canal/server/servertest"
	"github.com/canalhq/canal/testenv"
)

func TestRunRefusesToExposeWithoutAuthentication(t *testing.T) {
	var stderr strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := server.Run(ctx, []string{"canal", "-addr", "0.0.0.0:0", "-db", t.TempDir() + "/c.db"},
		func(string) string { return "" }, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "no authentication is configured") || !strings.Contains(err.Error(), "-insecure") {
		t.Fatalf("Run on 0.0.0.0 without tokens: %v, want a refusal naming the token variable and -insecure", err)
	}
}

func TestRunInsecureWarnsLoudly(t *testing.T) {
	inst := servertest.Start(t, nil, "-addr", "0.0.0.0:0", "-insecure", "-demo=false")
	if !strings.Contains(inst.Logs(), "INSECURE") || !strings.Contains(inst.Logs(), `"level":"WARN"`) {
		t.Errorf("no loud warning in the logs:\n%s", inst.Logs())
	}
}

func TestRunDefaultSaysWhoMayOperate(t *testing.T) {
	inst := servertest.Start(t, nil, "-demo=false")
	if !strings.Contains(inst.Logs(), "no authentication configured") || !strings.Contains(inst.Logs(), "everyone on this machine is an operator") {
		t.Errorf("the start-up log does not say the dashboard is open on loopback:\n%s", inst.Logs())
	}
	// Open on loopback: a program needs no token (the README's curl).
	resp, err := http.Post(inst.URL+"/api/jobs/nope/trigger", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("open mode, unknown job: %d, want 404 (let through)", resp.StatusCode)
	}
}

// A webhook's secrets (a token in its path or query, its user and
// password), even when the receiver echoes them, the NATS password and Canal's own tokens appear in no
// log line, page or API answer.
func TestSecretsStayOutOfLogsPagesAndAnswers(t *testing.T) {
	const (
		hookSecret = "HOOK-SECRET-7f3a9"
		hookPath   = "HOOK-PATH-7f3a9"
		hookUser   = "HOOK-USER-7f3a9"
		hookPass   = "HOOK-PASS-7f3a9"
		opToken    = "OPERATOR-TOKEN-7f3a9c"
		viewToken  = "VIEWER-TOKEN-7f3a9c"
	)
	env := map[string]string{"CANAL_OPERATOR_TOKEN": opToken, "CANAL_VIEWER_TOKEN": viewToken}
	// The receiver refuses every message and echoes what it was sent, as
	// some do: each error is logged and stored in the attempt history.
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		http.Error(w, "no_service "+r.RequestURI+" for "+u+":"+p+" (token "+path.Base(r.URL.Path)+")", http.StatusNotFound)
	}))
	t.Cleanup(hook.Close) // after the instance stops
	hookAddr := hook.Listener.Addr().String()
	inst := servertest.Start(t, env, "-webhook-url",
		"http://"+hookUser+":"+hookPass+"@"+hookAddr+"/services/T0/"+hookPath+"?token="+hookSecret, "-log-level", "debug")
	get := func(path, token string) string {
		req, _ := http.NewRequest("GET", inst.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	var failed struct {
		Items []struct {
			ID        string `json:"id"`
			LastError string `json:"lastError"`
		} `json:"items"`
	}
	testenv.Eventually(t, 30*time.Second, "a demo order's publish fails", func() bool {
		failed.Items = nil
		_ = json.Unmarshal([]byte(get("/api/outbox?status=pending", viewToken)), &failed)
		for _, it := range failed.Items {
			if it.LastError != "" {
				failed.Items = []struct {
					ID        string `json:"id"`
					LastError string `json:"lastError"`
				}{it}
				return true
			}
		}
		return false
	})
	id := failed.Items[0].ID
	if !strings.Contains(failed.Items[0].LastError, "404 Not Found: no_service") {
		t.Errorf("the stored error %q should still say what the receiver answered", failed.Items[0].LastError)
	}
	answers := map[string]string{
		"api list":    get("/api/outbox", viewToken),
		"api message": get("/api/outbox/"+id, viewToken),
		"page":        get("/outbox/"+id, opToken),
		"list page":   get("/outbox", opToken),
		"overview":    get("/", opToken),
	}
	answers["logs"] = inst.Logs()
	for where, text := range answers {
		for _, secret := range []string{hookSecret, hookPath, hookUser, hookPass, opToken, viewToken} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows the secret %q", where, secret)
			}
		}
	}

	// NATS credentials in the warning of a start with the server down
	// (an outage: Canal starts, and says so).
	var stderr syncBuilder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := server.Run(ctx, []string{"canal", "-addr", "127.0.0.1:0", "-db", t.TempDir() + "/c.db", "-nats-url", "nats://canal:NATS-PASS-7f3a9@127.0.0.1:1"},
		func(string) string { return "" }, io.Discard, &stderr)
	if err != nil {
		t.Fatalf("Run with an unreachable NATS server: %v, want a start and a clean stop", err)
	}
	if !strings.Contains(stderr.String(), "broker unreachable at start") {
		t.Errorf("no warning that NATS is unreachable:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), "NATS-PASS-7f3a9") {
		t.Errorf("the NATS password is shown:\n%s", stderr.String())
	}
}

// syncBuilder is a strings.Builder safe for the process's goroutines.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// -trusted-proxies reaches the login limit: behind a proxy on loopback,
// ten wrong tokens from one client lock out that client only.
func TestTrustedProxiesKeepOneClientsGuessesItsOwn(t *testing.T) {
	const opToken = "OPERATOR-TOKEN-7f3a9c"
	inst := servertest.Start(t, map[string]string{"CANAL_OPERATOR_TOKEN": opToken}, "-demo=false", "-trusted-proxies", "127.0.0.1/32")
	call := func(client, token string) int {
		req, _ := http.NewRequest("GET", inst.URL+"/api/jobs", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Forwarded-For", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 10 {
		if code := call("203.0.113.1", "wrong-token-0123456789-"+string(rune('a'+i))); code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, code)
		}
	}
	if code := call("203.0.113.1", opToken); code != http.StatusTooManyRequests {
		t.Errorf("the guessing client: %d, want 429", code)
	}
	if code := call("203.0.113.2", opToken); code != http.StatusOK {
		t.Errorf("another client through the same proxy: %d, want 200", code)
	}
}
