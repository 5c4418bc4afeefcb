// Package sqlitedriver measures the pure-Go SQLite drivers for gorm that
// Canal could embed. It is its own module so the candidates stay out of
// Canal's go.mod; the workloads live in ./workload, shared with ./libtnb
// (libtnb/sqlite and glebarez/sqlite both register the database/sql name
// "sqlite", so they cannot share a binary). Run both with ./run.sh.
package sqlitedriver

import (
	"testing"

	"github.com/canalhq/canal/docs/sqlite-driver/workload"
	glebarez "github.com/glebarez/sqlite"
	_ "github.com/ncruces/go-sqlite3/embed"
	"github.com/ncruces/go-sqlite3/gormlite"
	"gorm.io/gorm"
)

func BenchmarkDrivers(b *testing.B) {
	workload.Run(b,
		workload.Driver{Name: "glebarez-modernc", Open: func(p string) gorm.Dialector {
			return glebarez.Open(p + "?" + workload.Pragmas + "&_txlock=immediate")
		}},
		workload.Driver{Name: "ncruces-wasm", Open: func(p string) gorm.Dialector {
			return gormlite.Open("file:" + p + "?" + workload.Pragmas + "&_txlock=immediate")
		}},
	)
}
