package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/canalhq/canal/internal/idempotency"
	"github.com/canalhq/canal/web/auth"
	"github.com/labstack/echo/v4"
	"gorm.io/gorm"
)

// IdempotencyStore keeps the answers of writes sent with an Idempotency-Key
// header; *idempotency.Store is one.
type IdempotencyStore interface {
	Do(ctx context.Context, tr idempotency.Transactor, req idempotency.Request,
		fn func(tx *gorm.DB) (idempotency.Response, error)) (idempotency.Response, bool, error)
}

// Headers of idempotent writes (the IETF httpapi draft's key, and Stripe's
// name for the mark of a replayed answer).
const (
	headerIdempotencyKey = "Idempotency-Key"
	headerReplayed       = "Idempotent-Replayed"
)

// idempotencyKey reads the request's Idempotency-Key: "" without one, an
// error naming the problem for a bad one.
func idempotencyKey(r *http.Request) (string, error) {
	vals := r.Header.Values(headerIdempotencyKey)
	switch len(vals) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", fmt.Errorf("%s: send one key, not %d", headerIdempotencyKey, len(vals))
	}
	if err := idempotency.CheckKey(vals[0]); err != nil {
		return "", fmt.Errorf("%s: %w", headerIdempotencyKey, err)
	}
	return vals[0], nil
}

// idempotentWrite is a write made once per Idempotency-Key: the route names
// it in the key's scope and fingerprint, tr runs its transaction (nil: the
// store's own).
type idempotentWrite struct {
	store IdempotencyStore
	tr    idempotency.Transactor
	route string // "POST /api/work"
}

// keyed checks the request's key, if it has one, and keeps its body (up to
// maxBody) to fingerprint it: the handler then decodes the copy. An answer
// already sent (400, 413, 501) is returned as handled.
func (w *idempotentWrite) keyed(c echo.Context) (key string, body []byte, handled bool, err error) {
	key, kerr := idempotencyKey(c.Request())
	if kerr != nil {
		return "", nil, true, badRequest(c, headerIdempotencyKey, kerr.Error())
	}
	if key == "" {
		return "", nil, false, nil
	}
	if w == nil || w.store == nil {
		// Better refused than a retry that silently writes twice.
		return "", nil, true, jsonError(c, http.StatusNotImplemented, headerIdempotencyKey+": this server keeps no idempotency keys for "+c.Request().Method+" "+c.Path())
	}
	body, rerr := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxBody))
	if rerr != nil {
		if tooLarge(rerr) {
			return "", nil, true, jsonError(c, http.StatusRequestEntityTooLarge, errBodyTooLarge.Error())
		}
		return "", nil, true, badRequest(c, "body", "request body could not be read: "+rerr.Error())
	}
	c.Request().Body = io.NopCloser(bytes.NewReader(body))
	return key, body, false, nil
}

// do makes the write (fn, in one transaction with the key's record) once
// for the key and answers what it answered, or the first answer again to a
// retry (marked Idempotent-Replayed). The key used for another body is a
// 422, a key whose first request is still being handled a 409; any other
// error of fn goes to onErr, and nothing is recorded, so the client may try
// again with the same key.
func (w *idempotentWrite) do(c echo.Context, key string, body []byte,
	fn func(tx *gorm.DB) (idempotency.Response, error), onErr func(echo.Context, error) error) error {
	p := auth.From(c.Request().Context())
	who := p.Name
	if who == "" {
		who = p.Role.String()
	}
	req := idempotency.Request{
		Scope:       idempotency.Scope(who, w.route),
		Key:         key,
		Fingerprint: idempotency.Fingerprint(c.Request().Method, w.route, compactJSON(body)),
	}
	resp, replayed, err := w.store.Do(c.Request().Context(), w.tr, req, fn)
	switch {
	case errors.Is(err, idempotency.ErrMismatch):
		return c.JSON(http.StatusUnprocessableEntity, apiError{Field: headerIdempotencyKey,
			Error: headerIdempotencyKey + " was already used for a request with another body: send a new key for a new request"})
	case errors.Is(err, idempotency.ErrInProgress):
		c.Response().Header().Set("Retry-After", "1")
		return c.JSON(http.StatusConflict, apiError{Field: headerIdempotencyKey,
			Error: "a request with this " + headerIdempotencyKey + " is still being handled: retry once it has been answered"})
	case err != nil:
		return onErr(c, err)
	}
	h := c.Response().Header()
	if resp.Location != "" {
		h.Set("Location", resp.Location)
	}
	if replayed {
		h.Set(headerReplayed, "true")
	}
	return c.JSONBlob(resp.Status, resp.Body)
}

// jsonResponse is an answer to record: status, v as JSON and a Location.
func jsonResponse(status int, v any, location string) (idempotency.Response, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return idempotency.Response{}, fmt.Errorf("encode answer: %w", err)
	}
	return idempotency.Response{Status: status, Body: append(b, '\n'), Location: location}, nil
}

// compactJSON drops a JSON body's insignificant white space, so a retry
// that re-indents its body is the same request; anything else is kept as
// it is.
func compactJSON(b []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return b
	}
	return out.Bytes()
}
