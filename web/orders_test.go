package web

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"
)

type fakePlacer struct {
	customer string
	cents    int64
	err      error
}

func (f *fakePlacer) PlaceOrder(_ context.Context, customer string, cents int64) (string, string, error) {
	if f.err != nil {
		return "", "", f.err
	}
	f.customer, f.cents = customer, cents
	return "order-1", "msg-1", nil
}

func TestPlaceOrderAPI(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		status    int
		field     string
		customer  string
		cents     int64
		placerErr error
	}{
		{"whole amount", `{"customer":"ada","amount":12}`, 201, "", "ada", 1200, nil},
		{"cents", `{"customer":" grace ","amount":12.5}`, 201, "", "grace", 1250, nil},
		{"two decimals", `{"customer":"ken","amount":0.99}`, 201, "", "ken", 99, nil},
		{"no body", ``, 400, "body", "", 0, nil},
		{"not JSON", `{"customer":`, 400, "body", "", 0, nil},
		{"unknown field", `{"customer":"a","amount":1,"x":1}`, 400, "body", "", 0, nil},
		{"amount as string", `{"customer":"a","amount":"1"}`, 400, "amount", "", 0, nil},
		{"missing customer", `{"amount":1}`, 400, "customer", "", 0, nil},
		{"blank customer", `{"customer":"  ","amount":1}`, 400, "customer", "", 0, nil},
		{"long customer", `{"customer":"` + longName + `","amount":1}`, 400, "customer", "", 0, nil},
		{"missing amount", `{"customer":"a"}`, 400, "amount", "", 0, nil},
		{"zero amount", `{"customer":"a","amount":0}`, 400, "amount", "", 0, nil},
		{"negative amount", `{"customer":"a","amount":-3}`, 400, "amount", "", 0, nil},
		{"three decimals", `{"customer":"a","amount":1.234}`, 400, "amount", "", 0, nil},
		{"exponent", `{"customer":"a","amount":1e3}`, 400, "amount", "", 0, nil},
		{"too much", `{"customer":"a","amount":1000001}`, 400, "amount", "", 0, nil},
		{"NUL in customer", `{"customer":"a\u0000b","amount":1}`, 400, "customer", "", 0, nil},
		{"newline in customer", `{"customer":"a\nb","amount":1}`, 400, "customer", "", 0, nil},
		{"two objects", `{"customer":"a","amount":1} {"customer":"b","amount":2}`, 400, "body", "", 0, nil},
		{"trailing garbage", `{"customer":"a","amount":1}}`, 400, "body", "", 0, nil},
		{"store fails", `{"customer":"a","amount":1}`, 500, "", "", 0, errors.New("db down")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakePlacer{err: tc.placerErr}
			e := New(Deps{Logger: slog.New(slog.DiscardHandler)})
			e.POST("/api/orders", placeOrder(p, nil))
			srv := httptest.NewServer(e)
			defer srv.Close()
			r := call(t, srv, "POST", "/api/orders", tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			switch {
			case tc.status == 201:
				if r.body["orderId"] != "order-1" || r.body["messageId"] != "msg-1" || p.customer != tc.customer || p.cents != tc.cents {
					t.Errorf("body %s; placed %q %d", r.raw, p.customer, p.cents)
				}
			case tc.status == 400:
				if got, _ := r.body["field"].(string); got != tc.field {
					t.Errorf("field %q, want %q: %s", got, tc.field, r.raw)
				}
				if p.customer != "" {
					t.Error("placed an order from bad input")
				}
			}
		})
	}
}

var longName = func() string {
	b := make([]byte, maxCustomerLen+1)
	for i := range b {
		b[i] = 'x'
	}
	return string(b)
}()
