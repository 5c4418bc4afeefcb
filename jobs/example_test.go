package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/canalhq/canal/jobs"
	"github.com/libtnb/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// A recurring job and a work kind, controlled through the processor's
// channel: every call gets the processor's reply or a typed error.
func Example() {
	dir, _ := os.MkdirTemp("", "jobs-example")
	defer os.RemoveAll(dir)
	db, _ := gorm.Open(sqlite.Open(filepath.Join(dir, "app.db")), &gorm.Config{Logger: logger.Discard})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	if err := jobs.Migrate(ctx, db); err != nil {
		log.Fatal(err)
	}
	store, _ := jobs.NewStore(db)
	proc := jobs.NewProcessor(jobs.Config{Store: store, Workers: 4})
	_ = proc.Register("report", time.Hour, false, func(ctx context.Context) error { return nil })
	sent := make(chan string)
	_ = proc.RegisterKind("email", func(ctx context.Context, it jobs.WorkItem) error {
		sent <- string(it.Payload)
		return nil
	}, jobs.KindOptions{Rate: 50, MaxAttempts: 3})
	go proc.Run(ctx)

	st, err := proc.Start(ctx, "report")
	fmt.Println(st.Name, st.Running, err)
	_, err = proc.Stop(ctx, "nightly")
	fmt.Println(err)
	_, _ = proc.Enqueue(ctx, jobs.NewWork{Kind: "email", Priority: jobs.High, Payload: json.RawMessage(`{"to":"ada@example.com"}`)})
	fmt.Println(<-sent)
	// Output:
	// report true <nil>
	// stop "nightly": unknown job
	// {"to":"ada@example.com"}
}
