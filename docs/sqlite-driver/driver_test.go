// Package sqlitedriver measures the pure-Go SQLite drivers for gorm that
// Canal could embed. It is its own module so the candidates stay out of
// Canal's go.mod. Run: cd docs/sqlite-driver && go test -bench . -benchtime 2s
package sqlitedriver

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	glebarez "github.com/glebarez/sqlite"
	_ "github.com/ncruces/go-sqlite3/embed"
	"github.com/ncruces/go-sqlite3/gormlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

type row struct {
	ID        int64 `gorm:"primaryKey"`
	Topic     string
	Status    string    `gorm:"index:idx_status_next,priority:1"`
	NextAt    time.Time `gorm:"index:idx_status_next,priority:2"`
	Payload   []byte
	LeaseTill *time.Time
}

const pragmas = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"

var drivers = []struct {
	name string
	open func(path string) gorm.Dialector
}{
	{"glebarez-modernc", func(p string) gorm.Dialector { return glebarez.Open(p + "?" + pragmas + "&_txlock=immediate") }},
	{"ncruces-wasm", func(p string) gorm.Dialector {
		return gormlite.Open("file:" + p + "?" + pragmas + "&_txlock=immediate")
	}},
}

func open(b *testing.B, mk func(string) gorm.Dialector) *gorm.DB {
	db, err := gorm.Open(mk(filepath.Join(b.TempDir(), "b.db")), &gorm.Config{Logger: logger.Discard, SkipDefaultTransaction: true})
	if err != nil {
		b.Fatal(err)
	}
	sqlDB, _ := db.DB()
	sqlDB.SetMaxOpenConns(4)
	if err := db.AutoMigrate(&row{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sqlDB.Close() })
	return db
}

var payload = []byte(`{"order":"0190f0c2-7d1e-7c3a-9b8e-2f4c1a0b9d11","customer":"ada","amount":4200}`)

// BenchmarkInsertTx: one committed transaction per message, as outbox.Add does.
func BenchmarkInsertTx(b *testing.B) {
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) {
			db := open(b, d.open)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				err := db.Transaction(func(tx *gorm.DB) error {
					return tx.Create(&row{Topic: "order.placed", Status: "pending", NextAt: time.Now(), Payload: payload}).Error
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkClaimBatch: claim 100 pending rows with UPDATE … RETURNING, as a relay does.
func BenchmarkClaimBatch(b *testing.B) {
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) {
			db := open(b, d.open)
			rows := make([]row, 100)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for j := range rows {
					rows[j] = row{Topic: "t", Status: "pending", NextAt: time.Now().Add(-time.Second), Payload: payload}
				}
				if err := db.CreateInBatches(rows, 100).Error; err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				var claimed []row
				err := db.Raw(`UPDATE rows SET status = 'inflight', lease_till = ? WHERE id IN (
					SELECT id FROM rows WHERE status = 'pending' AND next_at <= ? ORDER BY id LIMIT 100) RETURNING *`,
					time.Now().Add(30*time.Second), time.Now()).Scan(&claimed).Error
				if err != nil || len(claimed) != 100 {
					b.Fatalf("claimed %d: %v", len(claimed), err)
				}
			}
		})
	}
}

// BenchmarkReadWhileWriting: readers page by index while one writer updates.
func BenchmarkReadWhileWriting(b *testing.B) {
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) {
			db := open(b, d.open)
			for i := 0; i < 2000; i++ {
				db.Create(&row{Topic: fmt.Sprint("t", i%5), Status: "dispatched", NextAt: time.Now(), Payload: payload})
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
						// Updates keep the table's size fixed, so every b.N reads the same data.
						db.Model(&row{}).Where("id = ?", 1+rand.IntN(2000)).Update("next_at", time.Now())
					}
				}
			})
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					var page []row
					if err := db.Where("status = ?", "dispatched").Order("id desc").Limit(50).Find(&page).Error; err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			close(stop)
			wg.Wait()
		})
	}
}
