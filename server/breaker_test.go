package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/server/servertest"
	"github.com/canalhq/canal/testenv"
)

// A webhook receiver that is down opens its destination's breaker, which
// /metrics shows as canal_outbox_breaker_state{destination="webhook"} 2;
// once it is back the breaker closes (0) and every order arrives.
func TestOutboxBreakerStateInMetrics(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	var got atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		got.Add(1)
	}))
	defer hook.Close()
	inst := servertest.Start(t, nil, "-webhook-url", hook.URL)
	const orders = 8
	for range orders {
		resp, err := http.Post(inst.URL+"/api/orders", "application/json", strings.NewReader(`{"customer":"ada","amount":12.5}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST /api/orders = %d", resp.StatusCode)
		}
	}
	state := func() (float64, bool) {
		return value(scrape(t, inst.URL), "canal_outbox_breaker_state", map[string]string{"destination": "webhook"})
	}
	testenv.Eventually(t, 60*time.Second, "the webhook's breaker open in /metrics", func() bool {
		v, ok := state()
		return ok && v == 2
	})
	down.Store(false)
	testenv.Eventually(t, 60*time.Second, "the breaker closed and every order delivered", func() bool {
		v, ok := state()
		return ok && v == 0 && got.Load() >= orders
	})
}
