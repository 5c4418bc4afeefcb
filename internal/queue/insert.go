package queue

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// Insert validates items and writes them into queue in tx, the caller's own
// gorm transaction, so they commit (and become claimable) with the caller's
// business write or not at all. It returns their IDs.
func Insert(ctx context.Context, drv Driver, tx *gorm.DB, queue string, now time.Time, items ...NewItem) ([]int64, error) {
	if tx == nil {
		return nil, fmt.Errorf("%w: nil transaction", ErrInvalidItem)
	}
	if queue == "" {
		return nil, fmt.Errorf("%w: empty queue", ErrInvalidItem)
	}
	for _, it := range items {
		if err := it.validate(); err != nil {
			return nil, err
		}
	}
	ids, err := drv.Insert(ctx, tx, queue, US(now), items)
	if err != nil {
		return nil, fmt.Errorf("queue insert: %w", err)
	}
	return ids, nil
}
