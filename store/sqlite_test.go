package store_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certd/certd/internal/pgtest"
	"github.com/certd/certd/store"
	"github.com/certd/certd/store/storetest"
)

var ctx = context.Background()

func openTemp(t *testing.T, opts store.Options) (*store.SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", "certd.db")
	s, err := store.Open(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTemp(t, store.Options{})
		return s
	})
}

// TestMain lets the test binary act as a second certd process for the
// lock and crash tests.
func TestMain(m *testing.M) {
	switch os.Getenv("CERTD_STORE_HELPER") {
	case "hold-lock":
		helperHoldLock()
	case "crash-mid-tx":
		helperCrashMidTx()
	}
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

func helperHoldLock() {
	s, err := store.Open(ctx, os.Getenv("CERTD_STORE_PATH"), store.Options{Exclusive: true})
	if err != nil {
		os.Stdout.WriteString("error " + err.Error() + "\n")
		os.Exit(1)
	}
	defer s.Close()
	os.Stdout.WriteString("locked\n")
	time.Sleep(time.Minute) // killed by the parent
	os.Exit(0)
}

func helperCrashMidTx() {
	path := os.Getenv("CERTD_STORE_PATH")
	s, err := store.Open(ctx, path, store.Options{Exclusive: true})
	if err != nil {
		os.Exit(1)
	}
	if err := s.SaveCertificate(ctx, store.Certificate{Name: "before", Domains: []string{"a.example"}, State: store.StateValid}); err != nil {
		os.Exit(1)
	}
	// A multi-statement transaction, cut short by SIGKILL before COMMIT.
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		os.Exit(1)
	}
	tx, err := db.Begin()
	if err != nil {
		os.Exit(1)
	}
	for _, q := range []string{
		`UPDATE certificates SET state = 'half-written' WHERE name = 'before'`,
		`INSERT INTO certificates (name, account, domains, key_type, spec_hash, state, created_at, updated_at) VALUES ('during', '', '[]', '', '', 'x', 0, 0)`,
		`INSERT INTO events (at, level, kind, message) VALUES (0, 'info', 'k', 'during')`,
	} {
		if _, err := tx.Exec(q); err != nil {
			os.Stdout.WriteString("error " + err.Error() + "\n")
			os.Exit(1)
		}
	}
	os.Stdout.WriteString("in-transaction\n")
	time.Sleep(time.Minute) // killed by the parent
	os.Exit(0)
}

// startHelper runs this test binary as a helper and waits for its first
// line of output.
func startHelper(t *testing.T, role, path string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CERTD_STORE_HELPER="+role, "CERTD_STORE_PATH="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper %s: %v", role, err)
	}
	return cmd, strings.TrimSpace(line)
}

func TestMigratesFromEmptyAndReopens(t *testing.T) {
	s, path := openTemp(t, store.Options{Exclusive: true})
	if err := s.SaveCertificate(ctx, store.Certificate{Name: "www", Domains: []string{"example.com"}, State: store.StatePending}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := store.Open(ctx, path, store.Options{Exclusive: true})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	if c, err := s2.GetCertificate(ctx, "www"); err != nil || c.Domains[0] != "example.com" {
		t.Fatalf("after reopen: %+v %v", c, err)
	}
	if v := userVersion(t, path); v != store.SchemaVersion() {
		t.Fatalf("user_version %d, want %d", v, store.SchemaVersion())
	}
}

func userVersion(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRefusesNewerSchema(t *testing.T) {
	s, path := openTemp(t, store.Options{})
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = store.Open(ctx, path, store.Options{Exclusive: true})
	if !errors.Is(err, store.ErrSchemaNewer) || !strings.Contains(err.Error(), "99") {
		t.Fatalf("want ErrSchemaNewer naming version 99, got %v", err)
	}
	// Refusing changed nothing.
	if v := userVersion(t, path); v != 99 {
		t.Fatalf("user_version changed to %d", v)
	}
	// And the lock was released: a later open is not blocked by it.
	if _, err := store.Open(ctx, path, store.Options{Exclusive: true}); !errors.Is(err, store.ErrSchemaNewer) {
		t.Fatalf("second attempt: %v", err)
	}
}

func TestSecondDaemonIsRefusedAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certd.db")
	holder, line := startHelper(t, "hold-lock", path)
	if line != "locked" {
		t.Fatalf("helper: %s", line)
	}
	start := time.Now()
	_, err := store.Open(ctx, path, store.Options{Exclusive: true})
	elapsed := time.Since(start)
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("want ErrLocked, got %v", err)
	}
	if elapsed > time.Second {
		t.Errorf("refusal took %v; it must come within a second", elapsed)
	}
	if !strings.Contains(err.Error(), "pid "+strconv.Itoa(holder.Process.Pid)) {
		t.Errorf("error does not name the holder's pid %d: %v", holder.Process.Pid, err)
	}
	// Readers (certd status) are not blocked by the daemon.
	r, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	r.Close()
	// A daemon that dies leaves no stale lock.
	if err := holder.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = holder.Wait()
	s, err := store.Open(ctx, path, store.Options{Exclusive: true})
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	s.Close()
}

func TestCrashMidTransactionKeepsPreviousState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certd.db")
	helper, line := startHelper(t, "crash-mid-tx", path)
	if line != "in-transaction" {
		t.Fatalf("helper: %s", line)
	}
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	s, err := store.Open(ctx, path, store.Options{Exclusive: true})
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer s.Close()
	c, err := s.GetCertificate(ctx, "before")
	if err != nil || c.State != store.StateValid {
		t.Fatalf("committed row: %+v %v (want state valid, untouched by the cut transaction)", c, err)
	}
	if _, err := s.GetCertificate(ctx, "during"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("row from the cut transaction survived: %v", err)
	}
	if ev, _ := s.ListEvents(ctx, store.EventFilter{}); len(ev) != 0 {
		t.Fatalf("event from the cut transaction survived: %+v", ev)
	}
}

func TestFilesArePrivateWhateverTheUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	s, path := openTemp(t, store.Options{Exclusive: true})
	if err := s.SaveCertificate(ctx, store.Certificate{Name: "x", Domains: []string{"a.example"}, State: "pending"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + ".lock"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", filepath.Base(p), perm)
		}
	}
	if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o700 {
		t.Errorf("store directory mode %04o, want 0700", fi.Mode().Perm())
	}
}

func TestEventsCannotBeRewritten(t *testing.T) {
	s, path := openTemp(t, store.Options{})
	if _, err := s.AppendEvent(ctx, store.Event{Level: "info", Kind: "k", Message: "original"}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{"UPDATE events SET message = 'forged'", "DELETE FROM events"} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want refusal", q, err)
		}
	}
}

func TestDueQueryUsesItsIndex(t *testing.T) {
	_, path := openTemp(t, store.Options{})
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		"EXPLAIN QUERY PLAN SELECT name FROM certificates c WHERE c.next_action_at IS NOT NULL AND c.next_action_at <= 0 ORDER BY c.next_action_at LIMIT 10",
		"EXPLAIN QUERY PLAN SELECT domain FROM claims WHERE next_action_at IS NOT NULL AND next_action_at <= 0 ORDER BY next_action_at LIMIT 10",
	} {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if p := strings.Join(plan, "; "); !strings.Contains(p, "USING INDEX") {
			t.Errorf("due query does not use its index: %s", p)
		}
	}
}
