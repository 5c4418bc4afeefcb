package server_test

import (
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
