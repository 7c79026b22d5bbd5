package deploy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certd/certd/deploy"
)

// snapshot is every entry under root: its kind, and its content or link
// target, so that any file written, removed or changed shows.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link " + target
		case d.IsDir():
			out[rel] = "dir"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			out[rel] = "file " + hex.EncodeToString(sum[:])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// moveAndLink moves path to elsewhere and plants a symlink to it at path,
// so that what was there still resolves, through a link.
func moveAndLink(t *testing.T, path, elsewhere string) {
	t.Helper()
	if err := os.Rename(path, elsewhere); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, path); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

// TestPlantedLinksAreRefused plants a symlink at each place of the deploy
// directory certd writes through, pointing outside it (or, for the live
// link, out of the versions). A deploy and a rollback must fail loudly,
// naming the planted path, write nothing outside, and leave the live link
// as it was: the set served before keeps being served.
func TestPlantedLinksAreRefused(t *testing.T) {
	ca := newCA(t)
	cases := []struct {
		name    string
		deploys int // before planting
		plant   func(t *testing.T, dir, outside string, versions []string) (planted string)
	}{
		{"versions dir before the first deploy", 0, func(t *testing.T, dir, outside string, _ []string) string {
			p := filepath.Join(dir, ".certd-versions")
			if err := os.Symlink(outside, p); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"versions dir", 1, func(t *testing.T, dir, outside string, _ []string) string {
			p := filepath.Join(dir, ".certd-versions")
			moveAndLink(t, p, filepath.Join(outside, "versions"))
			return p
		}},
		{"per-certificate dir", 1, func(t *testing.T, dir, outside string, _ []string) string {
			p := filepath.Join(dir, ".certd-versions", "www")
			moveAndLink(t, p, filepath.Join(outside, "www"))
			return p
		}},
		{"per-certificate dir to a sibling inside the deploy dir", 1, func(t *testing.T, dir, _ string, _ []string) string {
			// A link that stays inside the deploy directory is refused
			// too: certd made no link there.
			p := filepath.Join(dir, ".certd-versions", "www")
			moveAndLink(t, p, filepath.Join(dir, ".certd-versions", "elsewhere"))
			return p
		}},
		{"live version dir", 1, func(t *testing.T, dir, outside string, versions []string) string {
			p := filepath.Join(dir, versions[0])
			moveAndLink(t, p, filepath.Join(outside, "v1"))
			return p
		}},
		{"older version dir", 2, func(t *testing.T, dir, outside string, versions []string) string {
			p := filepath.Join(dir, versions[0])
			moveAndLink(t, p, filepath.Join(outside, "v1"))
			return p
		}},
		{"live link to a directory outside", 1, func(t *testing.T, dir, outside string, _ []string) string {
			p := filepath.Join(dir, "www")
			copyDir(t, p+"/", filepath.Join(outside, "set"))
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(outside, "set"), p); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"live link climbing out of the versions", 1, func(t *testing.T, dir, outside string, _ []string) string {
			p := filepath.Join(dir, "www")
			copyDir(t, p+"/", filepath.Join(outside, "set"))
			rel, err := filepath.Rel(dir, filepath.Join(outside, "set"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			// Starts like a version of www, then climbs out (not
			// filepath.Join: it would clean the climb away).
			if err := os.Symlink(".certd-versions/www/../../"+rel, p); err != nil {
				t.Fatal(err)
			}
			return p
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			dir, outside := filepath.Join(base, "live"), filepath.Join(base, "outside")
			for _, d := range []string{dir, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			s := spec(dir)
			d := &deploy.Deployer{}
			var versions []string
			var lastSerial string
			for i := range c.deploys {
				b := ca.bundle(t, int64(100+i), "www.example.com")
				res, err := d.Deploy(ctx, s, b)
				if err != nil {
					t.Fatal(err)
				}
				versions, lastSerial = append(versions, res.Version), b.Serial
			}
			planted := c.plant(t, dir, outside, versions)
			live := filepath.Join(dir, "www")
			linkBefore, _ := os.Readlink(live)
			outsideBefore := snapshot(t, outside)

			marker := filepath.Join(base, "reloaded")
			s.Reload = [][]string{{"touch", marker}}
			_, err := d.Deploy(ctx, s, ca.bundle(t, 999, "www.example.com"))
			if err == nil || !errors.Is(err, deploy.ErrPlantedLink) || !strings.Contains(err.Error(), planted) {
				t.Errorf("deploy through a planted link at %s: %v", planted, err)
			}
			t.Logf("deploy: %v", err)
			if c.deploys > 0 {
				if _, err := d.Rollback(ctx, s); err == nil || !errors.Is(err, deploy.ErrPlantedLink) || !strings.Contains(err.Error(), planted) {
					t.Errorf("rollback through a planted link at %s: %v", planted, err)
				}
			}

			if after := snapshot(t, outside); !maps.Equal(after, outsideBefore) {
				t.Errorf("certd wrote outside the deploy directory:\nbefore %v\nafter  %v", outsideBefore, after)
			}
			if linkAfter, _ := os.Readlink(live); linkAfter != linkBefore {
				t.Errorf("live link changed from %q to %q", linkBefore, linkAfter)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("reload hooks ran for a refused deploy")
			}
			if c.deploys == 0 {
				if _, err := os.Lstat(live); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a live path was made: %v", err)
				}
				return
			}
			// The set served before is still served, whole.
			if err := readConsistent(live); err != nil {
				t.Fatalf("the previous set no longer resolves: %v", err)
			}
			if got := readLeaf(t, filepath.Join(live, "cert.pem")); got != lastSerial {
				t.Fatalf("live set holds %s, want the previous %s", got, lastSerial)
			}
		})
	}
}

// Inspect reads the live set through the live link, one directory handle
// for all three files.
func TestInspectReadsTheLiveSet(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	s := spec(dir)
	if st := deploy.Inspect(s); !st.Missing {
		t.Fatalf("nothing deployed: %+v", st)
	}
	b := ca.bundle(t, 5, "www.example.com")
	if _, err := (&deploy.Deployer{}).Deploy(ctx, s, b); err != nil {
		t.Fatal(err)
	}
	if st := deploy.Inspect(s); st.Missing || !st.KeyMatches || st.Fingerprint != deploy.Fingerprint(b.Leaf) {
		t.Fatalf("after deploy: %+v", st)
	}
	if err := os.Remove(filepath.Join(dir, "www", "privkey.pem")); err != nil {
		t.Fatal(err)
	}
	if st := deploy.Inspect(s); !st.Missing {
		t.Fatalf("key removed: %+v", st)
	}
}
