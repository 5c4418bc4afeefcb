package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/canalhq/canal/internal/clusterevents"
	"github.com/canalhq/canal/outbox"
	"github.com/nats-io/nats.go"
	"gorm.io/gorm"
)

// version is the build's version, set with
// -ldflags "-X github.com/canalhq/canal/server.version=v1.2.3"; empty: read
// from the build information.
var version string

// buildVersion is what the processes page shows for this process: the
// -ldflags version, the module's version, the VCS revision, or "devel".
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "devel"
	}
	return "devel-" + rev + dirty
}

// eventTransport is how this process's dashboard events reach the others
// sharing its database: nil on SQLite (one process), NATS with
// -events-nats-url, else PostgreSQL's NOTIFY. The func closes what it
// opened.
func eventTransport(ctx context.Context, db *gorm.DB, dialect string, cfg Config, log *slog.Logger) (clusterevents.Transport, func(), error) {
	if dialect != "postgres" {
		return nil, func() {}, nil
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, nil, err
	}
	if cfg.EventsNATSURL == "" {
		return clusterevents.NewPostgres(sqlDB), func() {}, nil
	}
	// One system is one database and schema: its subject is named so.
	var scope string
	if err := db.WithContext(ctx).Raw(`SELECT current_database() || '.' || current_schema()`).Scan(&scope).Error; err != nil {
		return nil, nil, fmt.Errorf("cluster events: %w", err)
	}
	nc, err := nats.Connect(cfg.EventsNATSURL, nats.Name("canal events"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster events over NATS %s: %w", outbox.RedactURL(cfg.EventsNATSURL), err)
	}
	subject := clusterevents.Subject(scope)
	log.Info("cluster events over NATS", "subject", subject)
	return clusterevents.NewNATS(nc, subject), nc.Close, nil
}
