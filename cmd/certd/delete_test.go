package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// certd delete removes a retired certificate's files (live link, versions,
// key) and nothing else, keeps its history, refuses a configured one, and
// is safe to run twice.
func TestDeleteRemovesARetiredCertificatesFilesOnly(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t)
	cfg := w.writeConfig(t, w.lifecycleConfig("@every 1h", "", 2))
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("run -once: %d\n%s", code, out)
	}
	live := filepath.Join(w.dir, "live")
	var out, errb strings.Builder
	if code := run([]string{"delete", "-config", cfg, "c1"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "in the configuration") {
		t.Fatalf("delete of a configured certificate: exit %d: %s", code, errb.String())
	}
	if _, err := os.Lstat(filepath.Join(live, "c1")); err != nil {
		t.Fatalf("a refused delete touched the files: %v", err)
	}
	// c1 leaves the configuration: the next run retires it.
	w.writeConfig(t, w.lifecycleConfig("@every 1h", "", 1))
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("run -once: %d\n%s", code, out)
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"delete", "c1", "-config", cfg}, &out, &errb); code != exitOK {
		t.Fatalf("delete c1: exit %d: %s", code, errb.String())
	}
	for _, p := range []string{filepath.Join(live, "c1"), filepath.Join(live, ".certd-versions", "c1")} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
	w.verifyLive(t, "c0", "c0.example.com") // the other certificate is untouched
	out.Reset()
	if code := run([]string{"events", "-config", cfg, "c1"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "removed by an operator") ||
		!strings.Contains(out.String(), "issued") {
		t.Errorf("history after delete (exit %d):\n%s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"status", "-no-daemon", "-config", cfg}, &out, &errb); code != exitOK {
		t.Errorf("status after delete: exit %d, want 0 (no files left to warn about)\n%s", code, out.String())
	}
	if code := run([]string{"delete", "-config", cfg, "c1"}, &out, &errb); code != exitOK {
		t.Errorf("second delete: exit %d: %s", code, errb.String())
	}
	if code := run([]string{"delete", "-config", cfg, "nosuch"}, &out, &errb); code != exitUsage {
		t.Errorf("delete of an unknown name: exit %d, want 2", code)
	}
}
