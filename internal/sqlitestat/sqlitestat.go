// Package sqlitestat reads the memory SQLite (modernc.org/sqlite, pure Go)
// holds below the Go heap: in total (sqlite3_memory_used) and per pool
// (prepared statements and page cache of each connection). Benchmarks and
// tests use it to show where a process's memory goes.
package sqlitestat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"modernc.org/libc"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// EnableMemStatus turns on SQLite's memory accounting, which modernc's
// build leaves off (SQLITE_DEFAULT_MEMSTATUS=0) so that MemoryUsed reads 0.
// SQLite accepts it only before its first connection in the process: call
// it first thing. It costs a mutex per allocation, hence a bench option,
// not a default.
func EnableMemStatus() error {
	tls := libc.NewTLS()
	defer tls.Close()
	va := libc.NewVaList(int32(1))
	if va == 0 {
		return errors.New("sqlitestat: out of memory")
	}
	defer libc.Xfree(tls, va)
	if rc := sqlite3.Xsqlite3_config(tls, sqlite3.SQLITE_CONFIG_MEMSTATUS, va); rc != sqlite3.SQLITE_OK {
		return fmt.Errorf("sqlitestat: sqlite3_config(MEMSTATUS) = %d (too late: a connection was opened first)", rc)
	}
	return nil
}

// MemoryUsed is the bytes SQLite has allocated in the process (0 unless
// EnableMemStatus ran first).
func MemoryUsed() int64 {
	tls := libc.NewTLS()
	defer tls.Close()
	return sqlite3.Xsqlite3_memory_used(tls)
}

// MemoryHighwater is the most bytes SQLite has held at once in the process
// (0 unless EnableMemStatus ran first).
func MemoryHighwater() int64 {
	tls := libc.NewTLS()
	defer tls.Close()
	return sqlite3.Xsqlite3_memory_highwater(tls, 0)
}

// Allocator is what modernc's C allocator (libc malloc, under SQLite) has
// outstanding: zero unless the program was built with -tags
// memory.counters.
func Allocator() (allocs, bytes, mmaps int) {
	st := libc.MemStat()
	return st.Allocs, st.Bytes, st.Mmaps
}

// Pool is what the connections of one pool hold.
type Pool struct {
	Conns     int   // connections read
	StmtBytes int64 // prepared statements
	CacheUsed int64 // page cache
}

// ReadPool sums the statement and page-cache memory of n connections of
// db, all held at once so that each is a different one: n should be the
// pool's open connections (db.Stats().OpenConnections) and at most its
// maximum, or it waits for ctx.
func ReadPool(ctx context.Context, db *sql.DB, n int) (Pool, error) {
	var p Pool
	conns := make([]*sql.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range n {
		c, err := db.Conn(ctx)
		if err != nil {
			return p, err
		}
		conns = append(conns, c)
		err = c.Raw(func(dc any) error {
			st, ok := dc.(sqlite.DBStatus)
			if !ok {
				return fmt.Errorf("sqlitestat: %T is not a modernc SQLite connection", dc)
			}
			stmts, _, err := st.Status(sqlite.DBStatusStmtUsed, false)
			if err != nil {
				return err
			}
			cache, _, err := st.Status(sqlite.DBStatusCacheUsed, false)
			if err != nil {
				return err
			}
			p.Conns++
			p.StmtBytes += int64(stmts)
			p.CacheUsed += int64(cache)
			return nil
		})
		if err != nil {
			return p, err
		}
	}
	return p, nil
}
