package deploy

import (
	"os"
	"path/filepath"
	"testing"
)

// Remove takes away only certd's own tree for the name: a live path that
// is not certd's link, or a planted link among the versions, is refused
// and what it points to survives.
func TestRemoveRefusesWhatCertdDidNotMake(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, dir, outside string)
	}{
		{"live path is a file", func(t *testing.T, dir, _ string) {
			mustRm(t, os.WriteFile(filepath.Join(dir, "www"), []byte("someone's"), 0o644))
		}},
		{"live link points elsewhere", func(t *testing.T, dir, outside string) {
			mustRm(t, os.Symlink(outside, filepath.Join(dir, "www")))
		}},
		{"versions of the name planted", func(t *testing.T, dir, outside string) {
			mustRm(t, os.MkdirAll(filepath.Join(dir, versionsDir), 0o755))
			mustRm(t, os.Symlink(outside, filepath.Join(dir, versionsDir, "www")))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, outside := t.TempDir(), t.TempDir()
			keep := filepath.Join(outside, "privkey.pem")
			mustRm(t, os.WriteFile(keep, []byte("not certd's"), 0o600))
			tc.plant(t, dir, outside)
			if _, err := Remove(Spec{Name: "www", Dir: dir}); err == nil {
				t.Fatal("Remove went through something certd did not make")
			}
			if _, err := os.Stat(keep); err != nil {
				t.Fatalf("a file outside the tree was removed: %v", err)
			}
		})
	}
	// Nothing there: not an error, nothing found.
	if found, err := Remove(Spec{Name: "www", Dir: filepath.Join(t.TempDir(), "missing")}); err != nil || found {
		t.Fatalf("missing dir: %v %v", found, err)
	}
}

func mustRm(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
