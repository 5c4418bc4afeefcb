package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
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

// A webhook's token, the NATS password and Canal's own tokens appear in no
// log line, page or API answer.
func TestSecretsStayOutOfLogsPagesAndAnswers(t *testing.T) {
	const (
		hookSecret = "HOOK-SECRET-7f3a9"
		opToken    = "OPERATOR-TOKEN-7f3a9c"
		viewToken  = "VIEWER-TOKEN-7f3a9c"
	)
	env := map[string]string{"CANAL_OPERATOR_TOKEN": opToken, "CANAL_VIEWER_TOKEN": viewToken}
	// Nothing listens on port 1: every publish fails and its error, which
	// quotes the URL, is logged and stored in the attempt history.
	inst := servertest.Start(t, env, "-webhook-url", "http://127.0.0.1:1/hook?token="+hookSecret, "-log-level", "debug")
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
	if !strings.Contains(failed.Items[0].LastError, "127.0.0.1:1") {
		t.Errorf("the stored error %q should still name the host", failed.Items[0].LastError)
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
		for _, secret := range []string{hookSecret, opToken, viewToken} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows the secret %q", where, secret)
			}
		}
	}

	// NATS credentials in a failed start-up.
	var stderr strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := server.Run(ctx, []string{"canal", "-db", t.TempDir() + "/c.db", "-nats-url", "nats://canal:NATS-PASS-7f3a9@127.0.0.1:1"},
		func(string) string { return "" }, io.Discard, &stderr)
	if err == nil {
		t.Fatal("Run with an unreachable NATS server started")
	}
	if strings.Contains(err.Error(), "NATS-PASS-7f3a9") || strings.Contains(stderr.String(), "NATS-PASS-7f3a9") {
		t.Errorf("the NATS password is shown: %v\n%s", err, stderr.String())
	}
}
