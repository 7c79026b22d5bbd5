package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certd/certd/store"
)

// check-config in fleet mode resolves the DSN and checks the encryption
// key, without asking the database; `certd fleet keygen` prints a key it
// accepts.
func TestCheckConfigFleet(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "certd.yaml")
	writeFile(t, cfg, "store: {postgres: env:CERTD_TEST_FLEET_DSN}\nfleet: {host: web1, encryption_key: file:fleet.key}\nallow_empty: true\n")
	code, out, _ := inProcess("fleet", "keygen")
	if code != exitOK {
		t.Fatalf("keygen: exit %d", code)
	}
	if _, err := store.ParseEncryptionKey(out); err != nil {
		t.Fatalf("keygen printed %q: %v", out, err)
	}
	cases := []struct {
		name, key, dsn string
		code           int
		want           string
	}{
		{"good", out, "postgres://certd:s3cret-pw@127.0.0.1:1/certd", exitOK, "ok"},
		{"short key", "c2hvcnQ=", "postgres://certd:s3cret-pw@127.0.0.1:1/certd", exitUsage, "fleet.encryption_key: the encryption key must be 32 bytes"},
		{"no DSN", out, "", exitUsage, "store.postgres: environment variable CERTD_TEST_FLEET_DSN is not set"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, "fleet.key"), []byte(tc.key), 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.dsn != "" {
				t.Setenv("CERTD_TEST_FLEET_DSN", tc.dsn)
			} else {
				os.Unsetenv("CERTD_TEST_FLEET_DSN")
			}
			code, stdout, stderr := inProcess("check-config", "-config", cfg)
			all := stdout + stderr
			if code != tc.code || !strings.Contains(all, tc.want) {
				t.Fatalf("exit %d, want %d with %q:\n%s", code, tc.code, tc.want, all)
			}
			if strings.Contains(all, "s3cret-pw") || strings.Contains(all, strings.TrimSpace(out)) {
				t.Fatalf("a secret in check-config's output:\n%s", all)
			}
		})
	}
}
