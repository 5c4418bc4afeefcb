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

// For returns the driver for db's dialect (SQLite or PostgreSQL).
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
