// Package dialect picks the queue driver for a gorm handle: the one place
// that looks at the database's dialect.
package dialect

import (
	"fmt"

	"github.com/canalhq/canal/internal/queue"
	"github.com/canalhq/canal/internal/queue/postgres"
	"github.com/canalhq/canal/internal/queue/sqlite"
	"gorm.io/gorm"
)

// For returns the driver for db's dialect (SQLite or PostgreSQL). It
// prepares its statements once on db's pool and keeps them: its owner keeps
// it for as long as it runs and closes it when it stops.
func For(db *gorm.DB) (queue.Driver, error) {
	switch name := db.Dialector.Name(); name {
	case "sqlite":
		return sqlite.New(db)
	case "postgres":
		return postgres.New(db)
	default:
		return nil, fmt.Errorf("%w: %q", queue.ErrDialect, name)
	}
}

// OneShot returns a driver for db's dialect for one call, one that prepares
// nothing: for a caller that builds a driver, uses it once and drops it
// (outbox.Add in a transaction of the caller's own), where a driver's
// prepared statements would stay open on the pool for its whole life.
func OneShot(db *gorm.DB) (queue.Driver, error) {
	switch name := db.Dialector.Name(); name {
	case "sqlite":
		return sqlite.NewOneShot(db)
	case "postgres":
		return postgres.NewOneShot(db)
	default:
		return nil, fmt.Errorf("%w: %q", queue.ErrDialect, name)
	}
}
