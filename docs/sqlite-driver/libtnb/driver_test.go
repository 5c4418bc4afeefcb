// Package libtnb measures github.com/libtnb/sqlite (gorm on modernc.org/sqlite
// v1.62) with the same workloads as the parent module's drivers.
package libtnb

import (
	"testing"

	"github.com/canalhq/canal/docs/sqlite-driver/workload"
	"github.com/libtnb/sqlite"
	"gorm.io/gorm"
)

func BenchmarkDrivers(b *testing.B) {
	workload.Run(b, workload.Driver{Name: "libtnb-modernc", Open: func(p string) gorm.Dialector {
		return sqlite.Open(p + "?" + workload.Pragmas + "&_txlock=immediate")
	}})
}
