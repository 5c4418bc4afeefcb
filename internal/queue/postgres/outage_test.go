package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/outage"
	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/postgres"
	"github.com/canalhq/canal/testenv"
	gormpg "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Attempts that finish while PostgreSQL is stopped, for longer than their
// lease, keep their outcomes: the completer writes them once it is back,
// the rescuer does not take the leases of the live process that holds
// them meanwhile, so every item runs exactly once; and the outage is
// logged once each way.
func TestOutcomesOutliveAnOutageLongerThanTheLease(t *testing.T) {
	pg := testenv.PrivatePostgres(t)
	db, err := gorm.Open(gormpg.Open(pg.URL), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
	}()
	d, err := postgres.New(db)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 20
	err = db.Transaction(func(tx *gorm.DB) error {
		items := make([]queue.NewItem, n)
		for i := range items {
			items[i] = queue.NewItem{PublicID: fmt.Sprintf("item-%d", i), Kind: "k"}
		}
		_, err := queue.Insert(ctx, d, tx, "work", time.Now(), items...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	var logs lockedLog
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	var mu sync.Mutex
	runs := map[string]int{}
	started := make(chan struct{}, n)
	gate := make(chan struct{})
	lost := make(chan string, n)
	proc := queue.NewProcess(d, queue.ProcessConfig{
		Heartbeat: 200 * time.Millisecond, RescueInterval: 50 * time.Millisecond, MaxBackoff: time.Second, Logger: log,
	})
	c, err := queue.NewClient(d, proc, queue.Config{
		Queue: "work", Workers: n, Lease: time.Second, Timeout: 30 * time.Second, PollInterval: 200 * time.Millisecond,
		Handler: queue.HandlerFunc(func(ctx context.Context, it *queue.Item) error {
			mu.Lock()
			runs[it.PublicID]++
			mu.Unlock()
			started <- struct{}{}
			select {
			case <-gate:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}),
		OnEvent: func(ev queue.Event) {
			if ev.Type == queue.EventLeaseLost {
				lost <- ev.Item.PublicID
			}
		},
		Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = c.Stop(sctx)
		_ = proc.Stop(sctx)
	}()
	for range n {
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			t.Fatal("not every item was claimed and started")
		}
	}

	pg.Stop()
	close(gate) // every attempt ends while the database is away
	testenv.Eventually(t, 30*time.Second, "the outage is seen", func() bool { return !proc.Outage().Status().Available })
	time.Sleep(3 * time.Second) // three leases' length: every lease has expired by the clock
	pg.Start()

	testenv.Eventually(t, 60*time.Second, "every item is done", func() bool {
		counts, err := d.Count(ctx, "work", "", 1000)
		return err == nil && counts[queue.StateDone] == n
	})
	mu.Lock()
	for id, k := range runs {
		if k != 1 {
			t.Errorf("%s ran %d times, want once: its live owner's lease was taken", id, k)
		}
	}
	mu.Unlock()
	select {
	case id := <-lost:
		t.Errorf("the claim of %s was lost after the outage", id)
	default:
	}
	out := logs.String()
	for _, msg := range []string{outage.LogUnavailable, outage.LogAvailable} {
		if k := strings.Count(out, `"msg":"`+msg+`"`); k != 1 {
			t.Errorf("%q logged %d times over one outage, want once:\n%s", msg, k, out)
		}
	}
}
