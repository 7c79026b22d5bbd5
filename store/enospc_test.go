package store_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/certd/certd/store"
)

// A store that runs out of space (a small tmpfs, filled for real) says so
// with its path: SQLite's own "database or disk is full" names no file,
// and its "disk I/O error" not even the cause. The key and its order's
// intent are stored together or not at all.
func TestFullStoreNamesItsPath(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test mounts a tmpfs and needs root; CI=true must run it as root")
		}
		t.Skip("mounting a tmpfs needs root")
	}
	ctx := context.Background()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	path := filepath.Join(dir, "certd.db")
	s, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SaveCertificate(ctx, store.Certificate{Name: "www", Domains: []string{"a.example"}, State: store.StatePending}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = f.Write(make([]byte, 4096))
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling: %v", err)
	}
	// A key larger than the WAL's free frames: the transaction must grow
	// the file.
	key := store.PrivateKey{CertName: "www", KeyType: "rsa-4096", PEM: bytes.Repeat([]byte("k"), 64<<10), PublicSHA: "abc"}
	_, err = s.CreateOrder(ctx, store.Order{IdempotencyKey: "www-1", CertName: "www", Generation: 1, State: store.OrderIntent}, key)
	if err == nil {
		t.Fatal("storing a key on a full file system succeeded")
	}
	for _, want := range []string{path, "no space left on device", "storing key for www"} {
		if !strings.Contains(err.Error(), want) && !strings.Contains(err.Error(), strings.Replace(want, "storing key for www", "committing", 1)) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// Nothing of the order is left behind.
	if _, err := s.LatestOrder(ctx, "www"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after the failed write: %v, want no order", err)
	}
	if _, err := s.GetKey(ctx, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after the failed write: key 1: %v, want none", err)
	}
}
