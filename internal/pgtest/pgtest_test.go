package pgtest_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certd/certd/internal/pgtest"
)

func query(t *testing.T, dsn, q string) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, q).Scan(&n)
	return n, err
}

// TestSharedDatabases: each NewDatabase is a fresh empty database, and the
// password is required.
func TestSharedDatabases(t *testing.T) {
	s := pgtest.Shared(t)
	a, b := s.NewDatabase(t), s.NewDatabase(t)
	if a == b {
		t.Fatal("two databases with one DSN")
	}
	if n, err := query(t, a, "SELECT 1"); err != nil || n != 1 {
		t.Fatalf("first database: %d %v", n, err)
	}
	exec(t, a, "CREATE TABLE x (id int)")
	n, err := query(t, b, "SELECT count(*) FROM pg_tables WHERE tablename = 'x'")
	if err != nil || n != 0 {
		t.Fatalf("second database is not empty: %d %v", n, err)
	}
	if pgtest.Shared(t) != s {
		t.Fatal("Shared started a second server")
	}
	wrong := "postgres://postgres:wrong@127.0.0.1:" + strconv.Itoa(s.Port()) + "/postgres?sslmode=disable"
	if _, err := query(t, wrong, "SELECT 1"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
}

// TestStopStartKill: a server of the test's own survives a stop and a
// crash (SIGKILL) with its data.
func TestStopStartKill(t *testing.T) {
	s := pgtest.New(t)
	dsn := s.NewDatabase(t)
	if _, err := query(t, dsn, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	exec(t, dsn, "CREATE TABLE kept (id int); INSERT INTO kept VALUES (1), (2)")
	s.Stop()
	if _, err := query(t, dsn, "SELECT 1"); err == nil {
		t.Fatal("a stopped server answered")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if n, err := query(t, dsn, "SELECT count(*) FROM kept"); err != nil || n != 2 {
		t.Fatalf("after restart: %d rows, %v", n, err)
	}
	s.Kill()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if n, err := query(t, dsn, "SELECT count(*) FROM kept"); err != nil || n != 2 {
		t.Fatalf("after a crash: %d rows, %v", n, err)
	}
}

func exec(t *testing.T, dsn, q string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, q); err != nil {
		t.Fatal(err)
	}
}
