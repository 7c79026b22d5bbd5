package store

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lockFile is an exclusive, non-blocking flock on PATH.lock. The kernel
// drops it when the process dies, so a crash never leaves a stale lock.
type lockFile struct{ f *os.File }

func acquireLock(path string) (*lockFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: opening lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if pid := holderPID(path); pid > 0 {
				holder = fmt.Sprintf("pid %d", pid)
			}
			return nil, fmt.Errorf("%w: %s holds %s; only one daemon may use a store", ErrLocked, holder, path)
		}
		return nil, fmt.Errorf("store: locking %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		_ = f.Sync()
	}
	return &lockFile{f: f}, nil
}

func (l *lockFile) release() error {
	if l == nil {
		return nil
	}
	return l.f.Close() // closing the descriptor drops the flock
}

// LockHolder reports the pid of the daemon holding the store at path, if
// one does.
func LockHolder(path string) (pid int, held bool) {
	f, err := os.OpenFile(path+".lock", os.O_RDONLY, 0)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return 0, false
	}
	return holderPID(path + ".lock"), true
}

// holderPID reads the pid the lock's holder wrote. A holder that has just
// taken the lock writes its pid a moment later: an empty file is read
// again for up to half a second before the holder is called unknown (0).
func holderPID(lockPath string) int {
	for range 50 {
		b, _ := os.ReadFile(lockPath)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0
}
