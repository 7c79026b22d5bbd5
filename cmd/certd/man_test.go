package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// certd(1) is generated from the help text: every command and every flag
// the completions know is in it, and groff renders it without a warning.
func TestManPageCoversEveryCommandAndRenders(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"man"}, &out, &errb); code != exitOK {
		t.Fatalf("certd man: exit %d: %s", code, errb.String())
	}
	page := out.String()
	if !strings.HasPrefix(page, ".\\\"") || !strings.Contains(page, ".TH CERTD 1") {
		t.Fatalf("not a man page:\n%.300s", page)
	}
	for _, c := range cliCommands {
		if c.name == "help" || c.name == "man" || c.name == "version" {
			continue
		}
		if !strings.Contains(page, ".SS "+roffEscape(c.name)+"\n") {
			t.Errorf("no section for %s", c.name)
		}
		for _, f := range c.flags {
			if !strings.Contains(page, `\-`+roffEscape(f)) {
				t.Errorf("%s: flag -%s missing", c.name, f)
			}
		}
	}
	for _, want := range []string{".SH EXIT STATUS", "CERTD_CONFIG", "the store is in use by another certd"} {
		if !strings.Contains(page, want) {
			t.Errorf("missing %q", want)
		}
	}
	if code := run([]string{"man", "extra"}, &out, &errb); code != exitUsage {
		t.Errorf("certd man extra: exit %d, want %d", code, exitUsage)
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("groff is not installed (.ci/run installs groff-base)")
		}
		t.Skip("groff is not installed")
	}
	p := filepath.Join(t.TempDir(), "certd.1")
	if err := os.WriteFile(p, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", p)
	if msg, err := cmd.CombinedOutput(); err != nil || len(msg) > 0 {
		t.Fatalf("groff warns: %v\n%s", err, msg)
	}
}
