package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Pebble210Version is the Pebble that serves ACME profiles
// (meta.profiles), IP identifiers over http-01 and a real renewalInfo
// (RFC 9773): Debian's Pebble 2.4 has none of them. .ci/run builds it from
// the Go module proxy into $HOME/go/bin/pebble-2.10.3:
//
//	GOBIN=$tmp go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.3
const Pebble210Version = "v2.10.3"

// Pebble210Bin is the installed name of Pebble v2.10.3.
const Pebble210Bin = "pebble-2.10.3"

// PebbleProfile is one entry of Pebble 2.10's profiles block.
type PebbleProfile struct {
	Description string `json:"description"`
	// ValidityPeriod is the certificates' lifetime in whole seconds.
	ValidityPeriod int64 `json:"validityPeriod"`
}

// Profile is a PebbleProfile of lifetime d.
func Profile(description string, d time.Duration) PebbleProfile {
	return PebbleProfile{Description: description, ValidityPeriod: int64(d / time.Second)}
}

// DefaultProfiles are Pebble's own test configuration's: a 90-day default
// and a six-day shortlived.
func DefaultProfiles() map[string]PebbleProfile {
	return map[string]PebbleProfile{
		"default":    Profile("The profile you know and love", 90*24*time.Hour),
		"shortlived": Profile("A short-lived cert profile, without actual enforcement", 6*24*time.Hour),
	}
}

// NeedPebble210 returns the path of Pebble v2.10.3: $PEBBLE210, else
// pebble-2.10.3 on PATH or in $HOME/go/bin. It skips the test when there
// is none, and fails it under CI=true (.ci/run installs it).
func NeedPebble210(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("PEBBLE210"); p != "" {
		if !fileExists(p) {
			t.Fatalf("PEBBLE210=%s does not exist", p)
		}
		return p
	}
	if p, err := exec.LookPath(Pebble210Bin); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		if p := filepath.Join(home, "go", "bin", Pebble210Bin); fileExists(p) {
			return p
		}
	}
	const how = "GOBIN=$(mktemp -d) go install github.com/letsencrypt/pebble/v2/cmd/pebble@" + Pebble210Version +
		" and copy it to $HOME/go/bin/" + Pebble210Bin + " (or set PEBBLE210)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("Pebble %s is not installed; .ci/run must install it: %s", Pebble210Version, how)
	}
	t.Skipf("Pebble %s is not installed (%s); skipping", Pebble210Version, how)
	return ""
}

// StartPebble210 is StartPebble with Pebble v2.10.3; o.Profiles default
// to DefaultProfiles.
func StartPebble210(t testing.TB, o PebbleOptions) *Pebble {
	t.Helper()
	o.bin = NeedPebble210(t)
	if len(o.Profiles) == 0 {
		o.Profiles = DefaultProfiles()
	}
	return StartPebble(t, o)
}
