package testenv

import (
	"database/sql"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
)

func TestPrivatePostgresStopsAndStarts(t *testing.T) {
	pg := PrivatePostgres(t)
	db, err := sql.Open("pgx", pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ping(); err != nil {
		t.Fatalf("ping a fresh cluster: %v", err)
	}
	pg.Stop()
	if err := db.Ping(); err == nil {
		t.Fatal("ping answered while the cluster was stopped")
	}
	pg.Start()
	if _, err := db.Exec(`SELECT 1`); err != nil {
		t.Fatalf("query after the start: %v", err)
	}
	pg.Restart()
	if _, err := db.Exec(`SELECT 1`); err != nil {
		t.Fatalf("query after the restart: %v", err)
	}
}
