package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// A WatchOnly relay (a dashboard with no publisher of its own) reports the
// outbox but sends nothing, even with a publisher registered: the message
// waits for a relay that sends, which then delivers it once.
func TestWatchOnlyRelaySendsNothing(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		cfg := testConfig()
		cfg.WatchOnly = true
		watcher := newRelay(t, db, cfg)
		seen := &recorder{}
		watcher.RegisterDefault(seen)
		runRelay(t, watcher)

		ctx := context.Background()
		var id string
		if err := watcher.Transaction(ctx, func(tx *gorm.DB) error {
			var err error
			id, err = Add(ctx, tx, Message{Topic: "t", Payload: map[string]any{"n": 1}})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		// Several snapshots that count the message: the watcher's loop
		// ran all along, and a claiming relay's poll every 20 ms would
		// have sent it meanwhile.
		counted := 0
		testenv.Eventually(t, 20*time.Second, "the watcher reports the waiting message", func() bool {
			for {
				select {
				case ev := <-watcher.Events():
					if ev.Type == EventStats && ev.Stats.Pending == 1 {
						counted++
					}
					continue
				default:
				}
				return counted >= 5
			}
		})
		if st := statusOf(t, watcher, id); st != StatusPending || seen.count() != 0 {
			t.Fatalf("watch-only relay: message %s, %d sent; want it pending and unsent", st, seen.count())
		}

		sender := newRelay(t, db, testConfig())
		sent := &recorder{}
		sender.RegisterDefault(sent)
		runRelay(t, sender)
		testenv.Eventually(t, 20*time.Second, "a sending relay delivers it", func() bool { return statusOf(t, sender, id) == StatusDispatched })
		if sent.count() != 1 || seen.count() != 0 {
			t.Fatalf("sent by the sender %d, by the watcher %d; want 1 and 0", sent.count(), seen.count())
		}
	})
}
