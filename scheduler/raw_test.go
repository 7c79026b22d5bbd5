package scheduler_test

import (
	"database/sql"
	"testing"

	_ "modernc.org/sqlite"
)

func openRaw(b testing.TB, path string) *sql.DB {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		b.Fatal(err)
	}
	return db
}
