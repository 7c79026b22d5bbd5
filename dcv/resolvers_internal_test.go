package dcv

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The system's resolvers stand in for a configuration that names none;
// a resolv.conf that cannot be read, or names no server, is an error (a
// start, and check-config, refuse it) rather than an engine that resolves
// nothing.
func TestResolversFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := resolversFrom(write("ok", "nameserver 192.0.2.53\nnameserver 2001:db8::53\n"))
	if err != nil || !slices.Equal(got, []string{"192.0.2.53:53", "[2001:db8::53]:53"}) {
		t.Fatalf("resolvers %v, %v", got, err)
	}
	if _, err := resolversFrom(write("none", "search example.com\n")); err == nil || !strings.Contains(err.Error(), "names none") {
		t.Fatalf("a resolv.conf naming no server: %v", err)
	}
	if _, err := resolversFrom(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "unreadable") {
		t.Fatalf("a missing resolv.conf: %v", err)
	}
}
