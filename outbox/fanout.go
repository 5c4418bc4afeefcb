package outbox

import (
	"context"
	"errors"
	"fmt"
)

// Fanout is a publisher that delivers to every one of ps, in order. It fails
// if any fails, and the retry goes to all of them again: the ones that had
// succeeded then see a duplicate, which they drop by message id as they must
// for any at-least-once delivery.
func Fanout(ps ...Publisher) Publisher {
	return PublisherFunc(func(ctx context.Context, d Delivery) error {
		var errs []error
		for i, p := range ps {
			if err := p.Publish(ctx, d); err != nil {
				errs = append(errs, fmt.Errorf("publisher %d: %w", i+1, err))
			}
		}
		return errors.Join(errs...)
	})
}
