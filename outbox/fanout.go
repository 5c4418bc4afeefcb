package outbox

import (
	"context"
	"errors"
	"fmt"
)

// Fanout is a publisher that delivers to every one of ps, in order. Give
// each a name with Named: a message then keeps which of them took it, so a
// retry goes only to the others (one that is down does not make the others
// see a copy), and each has its own circuit breaker. It fails if any fails;
// unnamed ones are one destination together and a retry sends to all of
// them again (receivers drop duplicates by message id).
func Fanout(ps ...Publisher) Publisher {
	return PublisherFunc(func(ctx context.Context, d Delivery) error {
		var errs []error
		for i, p := range ps {
			if err := p.Publish(ctx, d); err != nil {
				if _, ok := p.(*named); !ok { // a named one's error starts with its name
					err = fmt.Errorf("publisher %d: %w", i+1, err)
				}
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
}
