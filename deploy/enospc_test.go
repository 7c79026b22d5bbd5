package deploy_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/certd/certd/deploy"
)

// A version that runs out of space part-way (ENOSPC on a small tmpfs, for
// real) is removed: left among the versions, it is what a rollback after
// the next deploy would switch the live path to, half a set.
func TestVersionCutShortBySpaceIsRemoved(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test mounts a tmpfs and needs root; CI=true must run it as root")
		}
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	ca := newCA(t)
	s := spec(dir)
	d := &deploy.Deployer{}
	first, err := d.Deploy(ctx, s, ca.bundle(t, 1, "www.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	// Fill the file system, then free two pages: the new version gets
	// its first files and not the rest.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = f.Write(make([]byte, 4096))
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling: %v", err)
	}
	fi, _ := f.Stat()
	if err := f.Truncate(fi.Size() - 8192); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = d.Deploy(ctx, s, ca.bundle(t, 2, "www.example.com"))
	var fail *deploy.Failure
	if !errors.As(err, &fail) || fail.Step != "write" || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("deploy onto a full file system: %v, want a write failure with ENOSPC", err)
	}
	versions := filepath.Join(dir, ".certd-versions", "www")
	if entries, _ := os.ReadDir(versions); len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("versions after the failed write: %v, want only %s", names, first.Version)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Deploy(ctx, s, ca.bundle(t, 3, "www.example.com")); err != nil {
		t.Fatal(err)
	}
	// The rollback goes to the first version, whole.
	res, err := d.Rollback(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != first.Version {
		t.Fatalf("rolled back to %s, want %s", res.Version, first.Version)
	}
	if st := deploy.Inspect(s); st.Missing || !st.KeyMatches {
		t.Fatalf("the set rolled back to: %+v", st)
	}
	if got := parseSerial(t, readFile(t, filepath.Join(dir, "www", deploy.CertFile))); got != fmt.Sprintf("%x", 1) {
		t.Fatalf("live serial %s after the rollback, want 1", got)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
