package outbox

import (
	"context"
	"testing"

	"github.com/canalhq/canal/internal/queue"

	"gorm.io/gorm"
)

// The stats query counts each status only up to a limit, so its cost does not
// grow with the retained table.
func TestCountsStopAtTheLimit(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		r := newRelay(t, db, testConfig())
		addN(t, r, "t", nil, 7) // pending: nobody runs the relay
		for _, tt := range []struct {
			limit int64
			want  int64
		}{{3, 3}, {7, 7}, {100, 7}} {
			c, err := r.drv.Count(context.Background(), queueName, "", tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := c[queue.StatePending]; got != tt.want {
				t.Errorf("limit %d: pending = %d, want %d", tt.limit, got, tt.want)
			}
			if c[queue.StateDead] != 0 || c[queue.StateDone] != 0 {
				t.Errorf("limit %d: counts = %v, want only pending", tt.limit, c)
			}
		}
	})
}
