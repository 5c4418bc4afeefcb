package audit_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canalhq/canal/internal/audit"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

func eachDB(t *testing.T, f func(t *testing.T, l *audit.Log)) {
	for _, d := range []struct {
		name string
		open func(testing.TB) *gorm.DB
	}{{"sqlite", testenv.SQLite}, {"postgres", testenv.Postgres}} {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t)
			if err := audit.Migrate(context.Background(), db); err != nil {
				t.Fatal(err)
			}
			f(t, audit.New(db))
		})
	}
}

func TestRecordListFilterPagePrune(t *testing.T) {
	eachDB(t, func(t *testing.T, l *audit.Log) {
		ctx := context.Background()
		old := time.Now().Add(-100 * 24 * time.Hour)
		for i := range 7 {
			e := audit.Entry{Who: []string{"operator", "viewer"}[i%2], Role: "operator", Via: "bearer", From: "127.0.0.1",
				Action: "jobs.stop", Target: fmt.Sprintf("job-%d", i), Result: []string{audit.ResultOK, audit.ResultDenied}[i%2], Status: 200}
			if i < 2 {
				e.At = old
			}
			if _, err := l.Record(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		all, err := l.List(ctx, audit.Filter{Limit: 3})
		if err != nil || len(all.Items) != 3 || all.Next == "" || all.Items[0].Target != "job-6" {
			t.Fatalf("first page: %+v %v", all, err)
		}
		var targets []string
		for f := (audit.Filter{Limit: 3}); ; {
			p, err := l.List(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range p.Items {
				targets = append(targets, e.Target)
			}
			if p.Next == "" {
				break
			}
			f.Before = p.Next
		}
		if strings.Join(targets, ",") != "job-6,job-5,job-4,job-3,job-2,job-1,job-0" {
			t.Errorf("paging gave %v", targets)
		}
		denied, _ := l.List(ctx, audit.Filter{Result: audit.ResultDenied})
		viewer, _ := l.List(ctx, audit.Filter{Who: "viewer"})
		if len(denied.Items) != 3 || len(viewer.Items) != 3 {
			t.Errorf("filters: %d denied, %d by viewer; want 3 and 3", len(denied.Items), len(viewer.Items))
		}
		for _, bad := range []audit.Filter{{Result: "maybe"}, {Before: "x"}, {Before: "-1"}, {Limit: 1000}, {Who: strings.Repeat("w", 201)},
			{Who: "\xff"}, {Action: "a\x00"}} {
			if _, err := l.List(ctx, bad); !errors.Is(err, audit.ErrInvalidFilter) {
				t.Errorf("List(%+v) = %v, want ErrInvalidFilter", bad, err)
			}
		}
		n, err := l.Prune(ctx, time.Now().Add(-90*24*time.Hour))
		if err != nil || n != 2 {
			t.Errorf("prune: %d, %v; want the 2 old entries", n, err)
		}
		left, _ := l.List(ctx, audit.Filter{})
		if len(left.Items) != 5 {
			t.Errorf("%d entries left, want 5", len(left.Items))
		}
	})
}

func TestRecordClipsLongFields(t *testing.T) {
	eachDB(t, func(t *testing.T, l *audit.Log) {
		e, err := l.Record(context.Background(), audit.Entry{Who: "op", Role: "operator", Via: "open", From: "x", Action: "a",
			Result: audit.ResultFailed, Detail: strings.Repeat("é", 800)})
		if err != nil || len(e.Detail) > 1000 || !strings.HasPrefix(e.Detail, "é") {
			t.Fatalf("clip: %d bytes, %v", len(e.Detail), err)
		}
	})
}

// An attacker chooses the bytes of a route's name, a header or a user name:
// NUL and invalid UTF-8, which PostgreSQL refuses in text (SQLSTATE 22021),
// are stored escaped, so the refused action is in the log all the same.
func TestRecordStoresAnyBytesEscaped(t *testing.T) {
	eachDB(t, func(t *testing.T, l *audit.Log) {
		ctx := context.Background()
		e, err := l.Record(ctx, audit.Entry{Who: "ev\xffil", Role: "none", Via: "bearer", From: "10.0.0.1\x00",
			Action: "jobs.stop", Target: "job\x00name", Result: audit.ResultDenied, Status: 403,
			Detail: "bad \xc3\x28 bytes\n", RequestID: "\x00"})
		if err != nil {
			t.Fatalf("Record with NUL and invalid UTF-8: %v", err)
		}
		want := audit.Entry{Who: `"ev\xffil"`, From: `"10.0.0.1\x00"`, Target: `"job\x00name"`, Detail: `"bad \xc3( bytes\n"`, RequestID: `"\x00"`}
		p, err := l.List(ctx, audit.Filter{Who: want.Who})
		if err != nil || len(p.Items) != 1 {
			t.Fatalf("List by the escaped name: %+v, %v", p, err)
		}
		for _, got := range []audit.Entry{e, p.Items[0]} {
			if got.Who != want.Who || got.From != want.From || got.Target != want.Target || got.Detail != want.Detail || got.RequestID != want.RequestID {
				t.Errorf("stored %+v, want the fields escaped as %+v", got, want)
			}
		}
		// Plain text, quotes and non-ASCII letters included, is stored as it is.
		plain, err := l.Record(ctx, audit.Entry{Who: `zoë "ops"`, Role: "operator", Via: "open", From: "::1", Action: "a", Result: audit.ResultOK, Target: `C:\jobs`})
		if err != nil || plain.Who != `zoë "ops"` || plain.Target != `C:\jobs` {
			t.Errorf("plain text changed: %+v, %v", plain, err)
		}
	})
}

// Tally: a caller's requests on one action with one outcome in a minute
// are one row whose count is their number, concurrent ones too; another
// outcome, another minute or a Record is a row of its own.
func TestTallySummarisesAMinute(t *testing.T) {
	eachDB(t, func(t *testing.T, l *audit.Log) {
		ctx := context.Background()
		minute := time.Now().UTC().Truncate(time.Minute)
		intake := audit.Entry{Who: "operator", Role: "operator", Via: "bearer", From: "10.0.0.9", Action: "orders.post", Result: audit.ResultOK, Status: 201}
		const n = 40
		errs := make(chan error, n)
		for i := range n {
			go func() {
				e := intake
				e.At = minute.Add(time.Duration(i) * time.Second) // all within the minute
				_, err := l.Tally(ctx, e)
				errs <- err
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		failed := intake
		failed.At, failed.Result, failed.Status = minute.Add(time.Second), audit.ResultFailed, 400
		for range 3 {
			if _, err := l.Tally(ctx, failed); err != nil {
				t.Fatal(err)
			}
		}
		// The row comes back as stored: the minute's count, its first
		// request's time.
		again := intake
		again.At = minute.Add(59 * time.Second)
		if stored, err := l.Tally(ctx, again); err != nil || stored.Count != n+1 || !stored.At.Before(again.At) || !stored.At.Truncate(time.Minute).Equal(minute) || stored.ID == 0 {
			t.Fatalf("one more in the minute: %+v, %v; want count %d since %v", stored, err, n+1, minute)
		}
		next := intake
		next.At = minute.Add(time.Minute + time.Second)
		stored, err := l.Tally(ctx, next)
		if err != nil || stored.Count != 1 || stored.ID == 0 {
			t.Fatalf("the next minute's first: %+v, %v", stored, err)
		}
		op := audit.Entry{At: minute.Add(2 * time.Second), Who: "operator", Role: "operator", Via: "bearer", From: "10.0.0.9",
			Action: "work.retry", Target: "w1", Result: audit.ResultOK, Status: 200}
		for range 2 {
			if _, err := l.Record(ctx, op); err != nil {
				t.Fatal(err)
			}
		}
		page, err := l.List(ctx, audit.Filter{Limit: audit.MaxPage})
		if err != nil {
			t.Fatal(err)
		}
		sums := map[string]int64{}
		rows := map[string]int{}
		for _, e := range page.Items {
			k := fmt.Sprintf("%s %s %d", e.Action, e.Result, e.At.Truncate(time.Minute).Sub(minute)/time.Minute)
			sums[k] += e.Count
			rows[k]++
		}
		want := map[string]int64{"orders.post ok 0": n + 1, "orders.post failed 0": 3, "orders.post ok 1": 1, "work.retry ok 0": 2}
		for k, c := range want {
			if sums[k] != c {
				t.Errorf("%s: counts sum to %d, want %d (all: %v)", k, sums[k], c, sums)
			}
		}
		if rows["orders.post ok 0"] != 1 || rows["work.retry ok 0"] != 2 || len(page.Items) != 5 {
			t.Errorf("rows %v (%d in all), want one per summary and one per operator action", rows, len(page.Items))
		}
	})
}

// While the database is away a minute's tallies are kept as one entry with
// their count, written when it is back: nothing is lost, nothing swamps.
func TestTallyWhileTheDatabaseIsAway(t *testing.T) {
	ctx := context.Background()
	db := testenv.SQLite(t)
	if err := audit.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	var away atomic.Bool
	if err := db.Callback().Create().Before("gorm:create").Register("test:away", func(tx *gorm.DB) {
		if away.Load() {
			_ = tx.AddError(driver.ErrBadConn)
		}
	}); err != nil {
		t.Fatal(err)
	}
	l := audit.New(db)
	e := audit.Entry{At: time.Now().UTC().Truncate(time.Minute), Who: "operator", Role: "operator", Via: "bearer", From: "10.0.0.9",
		Action: "work.post", Result: audit.ResultOK, Status: 202}
	away.Store(true)
	for range 25 {
		if _, err := l.Tally(ctx, e); !errors.Is(err, audit.ErrHeld) {
			t.Fatalf("tally while away: %v, want ErrHeld", err)
		}
	}
	away.Store(false)
	if n, err := l.Flush(ctx); n != 1 || err != nil {
		t.Fatalf("flush: %d entries, %v; want the minute's one", n, err)
	}
	if _, err := l.Tally(ctx, e); err != nil {
		t.Fatal(err)
	}
	page, err := l.List(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, en := range page.Items {
		sum += en.Count
	}
	if len(page.Items) != 2 || sum != 26 {
		t.Fatalf("%d rows summing to %d, want 2 summing to 26: %+v", len(page.Items), sum, page.Items)
	}
}

// An audit table of an older Canal gains the count column: its rows count
// one each.
func TestMigrateAddsCountToOldRows(t *testing.T) {
	eachDBRaw(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		type oldEntry struct {
			ID     int64     `gorm:"primaryKey;autoIncrement"`
			At     time.Time `gorm:"not null;index"`
			Who    string    `gorm:"size:200;not null;index"`
			Role   string    `gorm:"size:20;not null"`
			Via    string    `gorm:"size:20;not null"`
			From   string    `gorm:"size:100;not null"`
			Action string    `gorm:"size:100;not null;index"`
			Result string    `gorm:"size:20;not null"`
		}
		old := db.Table("canal_audit")
		if err := old.AutoMigrate(&oldEntry{}); err != nil {
			t.Fatal(err)
		}
		if err := old.Create(&oldEntry{At: time.Now(), Who: "operator", Role: "operator", Via: "bearer", From: "x", Action: "jobs.stop", Result: "ok"}).Error; err != nil {
			t.Fatal(err)
		}
		if err := audit.Migrate(ctx, db); err != nil {
			t.Fatal(err)
		}
		page, err := audit.New(db).List(ctx, audit.Filter{})
		if err != nil || len(page.Items) != 1 || page.Items[0].Count != 1 {
			t.Fatalf("%+v, %v; want the old row counting 1", page.Items, err)
		}
	})
}

func eachDBRaw(t *testing.T, f func(t *testing.T, db *gorm.DB)) {
	for _, d := range []struct {
		name string
		open func(testing.TB) *gorm.DB
	}{{"sqlite", testenv.SQLite}, {"postgres", testenv.Postgres}} {
		t.Run(d.name, func(t *testing.T) { f(t, d.open(t)) })
	}
}
