package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/canalhq/canal/server/servertest"
)

// TestDemoRoutesOnlyWithTheDemo: POST /api/orders places an order with the
// demo on, and does not exist without it.
func TestDemoRoutesOnlyWithTheDemo(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, http.StatusCreated},
		{[]string{"-demo=false"}, http.StatusNotFound},
	} {
		inst := servertest.Start(t, nil, tc.args...)
		resp, err := http.Post(inst.URL+"/api/orders", "application/json", strings.NewReader(`{"customer":"ada","amount":12.50}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%v: POST /api/orders = %d, want %d", tc.args, resp.StatusCode, tc.want)
		}
	}
}

// TestIdempotencyKeyInTheProgram: the program wires Idempotency-Key on
// POST /api/orders and /api/work (its table migrated, its store on the
// program's database): a retry gets the first answer again, marked
// replayed.
func TestIdempotencyKeyInTheProgram(t *testing.T) {
	inst := servertest.Start(t, nil)
	for _, tc := range []struct{ path, body string }{
		{"/api/orders", `{"customer":"ada","amount":12.50}`},
		{"/api/work", `{"kind":"email","payload":{"to":"ada@example.com"}}`},
	} {
		var answers []string
		for try := range 2 {
			req, err := http.NewRequest(http.MethodPost, inst.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "program-"+tc.path)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 300 || (try == 1) != (resp.Header.Get("Idempotent-Replayed") == "true") {
				t.Fatalf("%s try %d: %d %s (replayed %q)", tc.path, try, resp.StatusCode, b, resp.Header.Get("Idempotent-Replayed"))
			}
			answers = append(answers, string(b))
		}
		if answers[0] != answers[1] {
			t.Errorf("%s: the retry answered %s, the first %s", tc.path, answers[1], answers[0])
		}
	}
}
