package outbox

import (
	"context"
	"testing"

	"github.com/canalhq/canal/internal/sqlitestat"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// TestAddLeavesNoStatementOpen: thousands of Adds, in transactions of the
// caller's own and in a relay's, leave the SQLite connections' prepared
// statements as they were. Each Add used to build a driver that prepared
// its INSERT on the pool and was dropped with it: a statement (~18 KB of
// SQLite memory) left open per message, for the life of the pool.
func TestAddLeavesNoStatementOpen(t *testing.T) {
	ctx := context.Background()
	db := testenv.SQLite(t)
	if err := Migrate(ctx, db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	const conns = 4
	sqlDB.SetMaxOpenConns(conns)
	sqlDB.SetMaxIdleConns(conns)
	relay := newRelay(t, db, testConfig())
	t.Cleanup(func() { _ = relay.Close() })

	stmtBytes := func() int64 {
		t.Helper()
		p, err := sqlitestat.ReadPool(ctx, sqlDB, conns)
		if err != nil {
			t.Fatalf("read pool: %v", err)
		}
		return p.StmtBytes
	}
	adds := map[string]func(i int) error{
		"own transaction": func(i int) error {
			return db.Transaction(func(tx *gorm.DB) error {
				_, err := Add(ctx, tx, Message{Topic: "leak", Key: "k", Payload: map[string]int{"n": i}})
				return err
			})
		},
		"relay transaction": func(i int) error {
			return relay.Transaction(ctx, func(tx *gorm.DB) error {
				_, err := Add(ctx, tx, Message{Topic: "leak", Payload: map[string]int{"n": i}})
				return err
			})
		},
		"relay add": func(i int) error {
			return db.Transaction(func(tx *gorm.DB) error {
				_, err := relay.Add(ctx, tx, Message{Topic: "leak", Payload: map[string]int{"n": i}})
				return err
			})
		},
	}
	// Warm-up: every path prepares what it keeps (the relay's driver, a
	// statement per connection at most).
	for name, add := range adds {
		for i := range 50 {
			if err := add(i); err != nil {
				t.Fatalf("%s: add: %v", name, err)
			}
		}
	}
	before := stmtBytes()
	const n = 1500
	for name, add := range adds {
		for i := range n {
			if err := add(i); err != nil {
				t.Fatalf("%s: add: %v", name, err)
			}
		}
	}
	after := stmtBytes()
	// A statement left per Add would be ~3×1500×18 KB ≈ 80 MB.
	if grown := after - before; grown > 256<<10 {
		t.Errorf("prepared statements grew by %d KB over %d Adds (%d → %d bytes): statements are left open", grown>>10, 3*n, before, after)
	}
	t.Logf("prepared statements: %d → %d bytes over %d Adds", before, after, 3*n)

	// Close, its owner's stop, finalises what the relay prepared.
	if err := relay.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if closed := stmtBytes(); closed >= after {
		t.Errorf("prepared statements after the relay's Close: %d bytes, want fewer than %d", closed, after)
	}
}
