package outbox_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/canalhq/canal/outbox"
	"github.com/libtnb/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

type Order struct {
	ID       int64
	Customer string
}

// A business write and its message commit together; the relay delivers the
// message once the transaction has committed.
func Example() {
	dir, _ := os.MkdirTemp("", "outbox-example")
	defer os.RemoveAll(dir)
	db, _ := gorm.Open(sqlite.Open(filepath.Join(dir, "app.db")), &gorm.Config{Logger: logger.Discard})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	if err := outbox.Migrate(ctx, db); err != nil {
		log.Fatal(err)
	}
	_ = db.AutoMigrate(&Order{})
	relay, err := outbox.New(db, outbox.Config{})
	if err != nil {
		log.Fatal(err)
	}
	delivered := make(chan string)
	relay.Register("order.placed", outbox.PublisherFunc(func(ctx context.Context, d outbox.Delivery) error {
		delivered <- string(d.Payload) // d.ID is the idempotency key
		return nil
	}))
	go relay.Run(ctx) // cancel ctx to stop it

	err = relay.Transaction(ctx, func(tx *gorm.DB) error {
		order := Order{Customer: "ada"}
		if err := tx.Create(&order).Error; err != nil {
			return err
		}
		_, err := outbox.Add(ctx, tx, outbox.Message{Topic: "order.placed", Key: "ada", Payload: order})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-delivered)
	// Output: {"ID":1,"Customer":"ada"}
}
