// Package workload holds the benchmarks every SQLite driver candidate runs,
// so that each driver's module (drivers that register the same database/sql
// name cannot share a binary) measures exactly the same work.
package workload

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Row is the table every workload uses: the columns a queue row needs.
type Row struct {
	ID        int64 `gorm:"primaryKey"`
	Topic     string
	Status    string    `gorm:"index:idx_status_next,priority:1"`
	NextAt    time.Time `gorm:"index:idx_status_next,priority:2"`
	Payload   []byte
	Attempts  int
	LastError string
	LeaseTill *time.Time
}

// Pragmas are the server's: WAL, synchronous NORMAL, a busy timeout.
const Pragmas = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"

// Driver is one candidate: Open gets a file path.
type Driver struct {
	Name string
	Open func(path string) gorm.Dialector
}

func open(b *testing.B, d Driver) *gorm.DB {
	db, err := gorm.Open(d.Open(filepath.Join(b.TempDir(), "b.db")), &gorm.Config{Logger: logger.Discard, SkipDefaultTransaction: true})
	if err != nil {
		b.Fatal(err)
	}
	sqlDB, _ := db.DB()
	sqlDB.SetMaxOpenConns(4)
	if err := db.AutoMigrate(&Row{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sqlDB.Close() })
	return db
}

var payload = []byte(`{"order":"0190f0c2-7d1e-7c3a-9b8e-2f4c1a0b9d11","customer":"ada","amount":4200}`)

// Run runs every workload on each driver as sub-benchmarks.
func Run(b *testing.B, drivers ...Driver) {
	b.Run("InsertTx", func(b *testing.B) { each(b, drivers, insertTx) })
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("Claim%d", n), func(b *testing.B) { each(b, drivers, func(b *testing.B, db *gorm.DB) { claim(b, db, n) }) })
	}
	b.Run("UpdateJSONEach1000", func(b *testing.B) { each(b, drivers, updateJSONEach) })
	b.Run("ReadWhileWriting", func(b *testing.B) { each(b, drivers, readWhileWriting) })
}

func each(b *testing.B, drivers []Driver, fn func(*testing.B, *gorm.DB)) {
	for _, d := range drivers {
		b.Run(d.Name, func(b *testing.B) { fn(b, open(b, d)) })
	}
}

// insertTx: one committed transaction per message, as outbox.Add does.
func insertTx(b *testing.B, db *gorm.DB) {
	for b.Loop() {
		err := db.Transaction(func(tx *gorm.DB) error {
			return tx.Create(&Row{Topic: "order.placed", Status: "pending", NextAt: time.Now(), Payload: payload}).Error
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func fill(b *testing.B, db *gorm.DB, n int) {
	rows := make([]Row, n)
	for j := range rows {
		rows[j] = Row{Topic: "t", Status: "pending", NextAt: time.Now().Add(-time.Second), Payload: payload}
	}
	if err := db.CreateInBatches(rows, 500).Error; err != nil {
		b.Fatal(err)
	}
}

// claim: claim n pending rows with one UPDATE … RETURNING, as a relay does.
func claim(b *testing.B, db *gorm.DB, n int) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		fill(b, db, n)
		b.StartTimer()
		var claimed []Row
		err := db.Raw(`UPDATE rows SET status = 'inflight', lease_till = ?, attempts = attempts + 1 WHERE id IN (
			SELECT id FROM rows WHERE status = 'pending' AND next_at <= ? ORDER BY id LIMIT ?) RETURNING *`,
			time.Now().Add(30*time.Second), time.Now(), n).Scan(&claimed).Error
		if err != nil || len(claimed) != n {
			b.Fatalf("claimed %d of %d: %v", len(claimed), n, err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
}

type outcome struct {
	ID     int64  `json:"id"`
	Status string `json:"status"`
	Error  string `json:"error"`
}

// updateJSONEach: record 1000 outcomes in one statement, the ids and their
// new status passed as one JSON array, as a batch completer does.
func updateJSONEach(b *testing.B, db *gorm.DB) {
	const n = 1000
	fill(b, db, n)
	var ids []int64
	if err := db.Model(&Row{}).Order("id").Limit(n).Pluck("id", &ids).Error; err != nil || len(ids) != n {
		b.Fatalf("ids: %d %v", len(ids), err)
	}
	outs := make([]outcome, n)
	for i := 0; i < b.N; i++ {
		for j, id := range ids {
			outs[j] = outcome{ID: id, Status: "dispatched"}
			if (i+j)%10 == 0 {
				outs[j] = outcome{ID: id, Status: "pending", Error: "boom"}
			}
		}
		arg, _ := json.Marshal(outs)
		res := db.Exec(`UPDATE rows SET status = json_extract(o.value, '$.status'),
			last_error = json_extract(o.value, '$.error'), lease_till = NULL
			FROM json_each(?) AS o WHERE rows.id = json_extract(o.value, '$.id')`, string(arg))
		if res.Error != nil || res.RowsAffected != n {
			b.Fatalf("updated %d of %d: %v", res.RowsAffected, n, res.Error)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
}

// readWhileWriting: readers page by index while one writer updates.
func readWhileWriting(b *testing.B, db *gorm.DB) {
	for i := 0; i < 2000; i++ {
		db.Create(&Row{Topic: fmt.Sprint("t", i%5), Status: "dispatched", NextAt: time.Now(), Payload: payload})
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
				db.Model(&Row{}).Where("id = ?", 1+rand.IntN(2000)).Update("next_at", time.Now())
			}
		}
	})
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var page []Row
			if err := db.Where("status = ?", "dispatched").Order("id desc").Limit(50).Find(&page).Error; err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	close(stop)
	wg.Wait()
}
