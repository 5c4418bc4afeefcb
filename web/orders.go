package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/canalhq/canal/internal/idempotency"
	"github.com/labstack/echo/v4"
	"gorm.io/gorm"
)

// OrderPlacer places a demo order and its outbox message in one transaction;
// *demo.Orders is one. The handler validates input first, so any error it
// returns is the server's (500).
type OrderPlacer interface {
	PlaceOrder(ctx context.Context, customer string, amountCents int64) (orderID, messageID string, err error)
}

// orderTxPlacer places an order in a transaction of its own Transaction
// (which wakes the relay on commit), beside the caller's own write: an
// OrderPlacer that is one (*demo.Orders) takes Idempotency-Key.
type orderTxPlacer interface {
	idempotency.Transactor
	PlaceOrderTx(ctx context.Context, tx *gorm.DB, customer string, amountCents int64) (orderID, messageID string, err error)
}

// Limits checked here so that a client mistake is a 400 naming the field.
const (
	maxCustomerLen = 100
	maxAmountCents = 100_000_000
)

// amountRE is a positive decimal with at most two places: money, not a float.
var amountRE = regexp.MustCompile(`^(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?$`)

// placeOrder: POST /api/orders {"customer": "ada", "amount": 12.50} stores an
// order and its order.placed message together and answers 201 with both ids.
// With an Idempotency-Key (idem set and op an orderTxPlacer) the order, its
// message and the key's record are stored in one transaction, and a retry
// with the key gets the first 201 again instead of a second order.
func placeOrder(op OrderPlacer, idem *idempotentWrite) echo.HandlerFunc {
	txp, ok := op.(orderTxPlacer)
	if !ok {
		idem = nil
	} else if idem != nil {
		idem.tr = txp
	}
	return func(c echo.Context) error {
		key, raw, handled, err := idem.keyed(c)
		if handled {
			return err
		}
		var in struct {
			Customer *string         `json:"customer"`
			Amount   json.RawMessage `json:"amount"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, maxBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			if tooLarge(err) {
				return jsonError(c, http.StatusRequestEntityTooLarge, errBodyTooLarge.Error())
			}
			return badRequest(c, "body", `body: want {"customer": "…", "amount": 12.50}: `+err.Error())
		}
		if trailing(dec) {
			return badRequest(c, "body", `body: want one JSON object {"customer": "…", "amount": 12.50}, and nothing after it`)
		}
		if in.Customer == nil || strings.TrimSpace(*in.Customer) == "" {
			return badRequest(c, "customer", "customer is required")
		}
		customer := strings.TrimSpace(*in.Customer)
		if len(customer) > maxCustomerLen {
			return badRequest(c, "customer", fmt.Sprintf("customer longer than %d bytes", maxCustomerLen))
		}
		if strings.ContainsFunc(customer, unicode.IsControl) {
			return badRequest(c, "customer", "customer must not contain control characters")
		}
		if len(in.Amount) == 0 || string(in.Amount) == "null" {
			return badRequest(c, "amount", "amount is required")
		}
		// The raw token, so that "12.50" (a string) or 1e3 are refused
		// rather than guessed at.
		cents, ok := parseCents(string(in.Amount))
		if !ok || cents <= 0 || cents > maxAmountCents {
			return badRequest(c, "amount", fmt.Sprintf("amount %s: want a number above 0 and at most %d, with at most two decimals", in.Amount, maxAmountCents/100))
		}
		if key != "" {
			return idem.do(c, key, raw, func(tx *gorm.DB) (idempotency.Response, error) {
				orderID, msgID, err := txp.PlaceOrderTx(c.Request().Context(), tx, customer, cents)
				if err != nil {
					return idempotency.Response{}, err
				}
				return jsonResponse(http.StatusCreated, map[string]string{"orderId": orderID, "messageId": msgID}, "")
			}, func(_ echo.Context, err error) error { return err })
		}
		orderID, msgID, err := op.PlaceOrder(c.Request().Context(), customer, cents)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, map[string]string{"orderId": orderID, "messageId": msgID})
	}
}

func parseCents(s string) (int64, bool) {
	if !amountRE.MatchString(s) {
		return 0, false
	}
	whole, frac, _ := strings.Cut(s, ".")
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, false
	}
	for len(frac) < 2 {
		frac += "0"
	}
	f, _ := strconv.ParseInt(frac, 10, 64)
	return w*100 + f, true
}
