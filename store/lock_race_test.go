package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Two daemons started at the same instant: the loser can read the lock
// file after the winner locked it and before it wrote its pid. It names
// the holder's pid all the same.
func TestLoserNamesTheHolderWrittenAMomentLater(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certd.db.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	// The "winner" holds the lock with an empty file, and writes its pid
	// 100 ms later.
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, _ = f.WriteAt([]byte("4242\n"), 0)
	}()
	_, err = acquireLock(path)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid 4242") {
		t.Fatalf("the loser's error: %v; want the holder's pid", err)
	}
}
