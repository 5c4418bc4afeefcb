package sqlite_test

import (
	"context"
	_ "embed"
	"os"
	"testing"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/queuetest"
	"github.com/canalhq/canal/internal/queue/sqlite"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

func open(t *testing.T) (queue.Driver, *gorm.DB) {
	db := testenv.SQLite(t)
	d, err := sqlite.New(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return d, db
}

func TestConformance(t *testing.T) { queuetest.Run(t, open) }

func TestAdoptsTheOutboxOfOlderCanal(t *testing.T) {
	db := testenv.SQLite(t)
	d, err := sqlite.New(db)
	if err != nil {
		t.Fatal(err)
	}
	schema, err := os.ReadFile("testdata/outbox_v0.sql")
	if err != nil {
		t.Fatal(err)
	}
	queuetest.Adopt(t, db, d, string(schema))
}

//go:embed testdata/work_v0.sql
var workV0 string

// A database made by Canal before the queue engine keeps its work items.
func TestAdoptWorkItems(t *testing.T) {
	db := testenv.SQLite(t)
	queuetest.AdoptWork(t, db, workV0, func() queue.Driver {
		d, err := sqlite.New(db)
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}
