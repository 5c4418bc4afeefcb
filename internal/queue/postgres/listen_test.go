package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/postgres"
	"github.com/canalhq/canal/testenv"
	pgdriver "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// A commit in one connection wakes a listener on another at once, naming
// the queue; a rolled-back insert wakes nobody.
func TestListenWakesOnCommit(t *testing.T) {
	db := testenv.Postgres(t)
	d, err := postgres.New(db)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	woke := make(chan string, 10)
	listening := make(chan error, 1)
	go func() { listening <- d.Listen(ctx, func(q string) { woke <- q }) }()
	time.Sleep(300 * time.Millisecond) // LISTEN is in place
	insert := func(commit bool) {
		_ = db.Transaction(func(tx *gorm.DB) error {
			if _, err := queue.Insert(ctx, d, tx, "outbox", time.Now(), queue.NewItem{PublicID: time.Now().String(), Kind: "k"}); err != nil {
				t.Fatal(err)
			}
			if !commit {
				return context.Canceled
			}
			return nil
		})
	}
	insert(false)
	select {
	case q := <-woke:
		t.Fatalf("woken (%s) by a rolled-back insert", q)
	case <-time.After(200 * time.Millisecond):
	}
	insert(true)
	select {
	case q := <-woke:
		if q != "outbox" {
			t.Fatalf("woken for %q", q)
		}
	case err := <-listening:
		t.Fatalf("Listen returned: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("no wake-up after a commit")
	}
	cancel()
	select {
	case <-listening:
	case <-time.After(60 * time.Second):
		t.Fatal("Listen did not return after its context ended")
	}
}

// Process.Notify reaches another process's OnWake listeners by NOTIFY, and
// its own at once.
func TestNotifyReachesOtherProcesses(t *testing.T) {
	url := testenv.PostgresSchemaURL(t)
	ctx := context.Background()
	var procs []*queue.Process
	heard := make([]chan string, 2)
	for i := range 2 {
		db, err := gorm.Open(pgdriver.Open(url), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if s, err := db.DB(); err == nil {
				_ = s.Close()
			}
		})
		d, err := postgres.New(db)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		p := queue.NewProcess(d, queue.ProcessConfig{})
		heard[i] = make(chan string, 100)
		ch := heard[i]
		p.OnWake(func(name string) { ch <- name })
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Stop(context.Background()) })
		procs = append(procs, p)
	}
	// LISTEN is in place once a notification from the other process
	// arrives: send until one does.
	deadline := time.After(60 * time.Second)
	for got := false; !got; {
		if err := procs[0].Notify(ctx, "jobs.cmd"); err != nil {
			t.Fatal(err)
		}
		select {
		case name := <-heard[1]:
			if name != "jobs.cmd" {
				t.Fatalf("heard %q", name)
			}
			got = true
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("the other process never heard the notification")
		}
	}
	select {
	case name := <-heard[0]:
		if name != "jobs.cmd" {
			t.Fatalf("the notifier heard %q", name)
		}
	default:
		t.Fatal("the notifier did not hear its own wake-up")
	}
}
