package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certd/certd/internal/simpki"
)

// A certificate whose configuration names existing files (adopt) starts
// from them: nothing is ordered while they are valid, and they are
// deployed in certd's layout. Files that do not fit are refused by
// check-config, and a start says so and orders as usual.
func TestConfiguredAdoptOrdersNothing(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t)
	now := time.Now()
	root, err := simpki.NewAuthority("elsewhere", "Old CA Root", nil, now, 24*time.Hour*365, 1)
	if err != nil {
		t.Fatal(err)
	}
	ica, err := simpki.NewAuthority("elsewhere", "Old CA Issuing", root, now, 24*time.Hour*365, 0)
	if err != nil {
		t.Fatal(err)
	}
	adoptDir := filepath.Join(w.dir, "adopt")
	if err := os.MkdirAll(adoptDir, 0o700); err != nil {
		t.Fatal(err)
	}
	issue := func(file string, names ...string) *x509.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		serial, _ := simpki.NewSerial()
		der, err := ica.IssueLeaf(serial, key.Public(), names[0], names, now.Add(-time.Hour), now.Add(60*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalPKCS8PrivateKey(key)
		writeFile(t, filepath.Join(adoptDir, file+".pem"), simpki.PEMCert(der)+ica.PEM)
		writeFile(t, filepath.Join(adoptDir, file+".key"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})))
		leaf, _ := x509.ParseCertificate(der)
		return leaf
	}
	good := issue("c0", "c0.example.com")
	issue("c1", "other.example.com") // names that are not c1's
	cfgText := w.lifecycleConfig("@every 1h", "", 2)
	cfgText = strings.Replace(cfgText, "{name: c0, domains: [c0.example.com]}", "{name: c0, domains: [c0.example.com], adopt: {cert: adopt/c0.pem, key: adopt/c0.key}}", 1)
	withBad := strings.Replace(cfgText, "{name: c1, domains: [c1.example.com]}", "{name: c1, domains: [c1.example.com], adopt: {cert: adopt/c1.pem, key: adopt/c1.key}}", 1)
	cfg := w.writeConfig(t, withBad)

	var out, errb strings.Builder
	if code := run([]string{"check-config", cfg}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "adopt") ||
		!strings.Contains(errb.String(), "other.example.com") || strings.Contains(errb.String(), "c0.pem") {
		t.Fatalf("check-config with one bad adopt: exit %d\n%s", code, errb.String())
	}
	if code, logs, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("run -once: exit %d\n%s", code, logs)
	} else if !strings.Contains(logs, "the adopt files cannot be used") {
		t.Errorf("the refused adopt was not said:\n%s", logs)
	}
	if n := w.sim.OrdersFor([]string{"c0.example.com"}); n != 0 {
		t.Errorf("c0 was ordered %d times although its adopted files are valid", n)
	}
	if n := w.sim.OrdersFor([]string{"c1.example.com"}); n != 1 {
		t.Errorf("c1 (adopt refused) ordered %d times, want 1", n)
	}
	live := readCert(t, filepath.Join(w.dir, "live", "c0", "cert.pem"))
	if !bytes.Equal(live.Raw, good.Raw) {
		t.Errorf("live c0 is serial %X, not the adopted %X", live.SerialNumber, good.SerialNumber)
	}
	// A second start adopts nothing again and orders nothing.
	if code, logs, _ := runOnceBin(t, cfg); code != exitOK || w.sim.OrdersFor([]string{"c0.example.com"}) != 0 {
		t.Fatalf("second run: exit %d, %d orders for c0\n%s", code, w.sim.OrdersFor([]string{"c0.example.com"}), logs)
	}
	out.Reset()
	if code := run([]string{"events", "-config", cfg, "c1"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "adopt") {
		t.Errorf("no adopt_failed event for c1:\n%s", out.String())
	}
}
