package outbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Webhook POSTs every message to one URL: the payload is the body, and the
// headers Idempotency-Key (the message id), Canal-Topic and the message's own
// headers (such as traceparent) go with it. Any 2xx is delivered. A 4xx
// other than 408 and 429 refuses the message itself (a MessageError: the
// attempt counts); any other status, a transport error or a timeout is the
// receiver's failure (it waits, spending no attempt; see Named).
type Webhook struct {
	url    string
	client *http.Client
}

// NewWebhook returns a publisher to rawURL. client may be nil for a client
// with a 10 s timeout that does not follow redirects (a 3xx is a failed
// attempt); the relay also bounds each attempt by PublishTimeout.
func NewWebhook(rawURL string, client *http.Client) (*Webhook, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: webhook URL %s must be http(s)://host/…", ErrInvalidConfig, RedactURL(rawURL))
	}
	if client == nil {
		client = &http.Client{
			Timeout: 10 * time.Second,
			// A redirect is not a delivery: following it would turn the
			// POST into a GET and count its 2xx as delivered.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Webhook{url: rawURL, client: client}, nil
}

// Publish sends d.
func (w *Webhook) Publish(ctx context.Context, d Delivery) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(d.Payload))
	if err != nil {
		return fmt.Errorf("webhook: %w", redactError(err, w.url))
	}
	for k, v := range d.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", d.ID)
	req.Header.Set("Canal-Topic", d.Topic)
	resp, err := w.client.Do(req)
	if err != nil {
		// net/http quotes the URL, path and query included.
		return fmt.Errorf("webhook: %w", redactError(err, w.url))
	}
	defer resp.Body.Close()
	// A short excerpt of the body helps whoever reads the attempt log; the
	// rest is drained so the connection can be reused.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// A receiver may echo the URL (and its token) in its answer.
		err := redactError(fmt.Errorf("webhook: %s: %s", resp.Status, bytes.TrimSpace(body)), w.url)
		if resp.StatusCode >= 400 && resp.StatusCode <= 499 &&
			resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
			return MessageError(err)
		}
		return err
	}
	return nil
}
