package main

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDemoOnce(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(binary(t), "demo", "-once", "-dir", dir, "-timeout", "60s")
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	t.Logf("demo took %v", time.Since(start))
	rootPEM, err := os.ReadFile(filepath.Join(dir, "sim-root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatal("sim-root.pem holds no certificate")
	}
	for name, host := range map[string]string{"www": "www.example.com", "shop": "shop.example.com", "blog": "blog.example.com"} {
		live := filepath.Join(dir, "live", name)
		leaf := readCert(t, filepath.Join(live, "cert.pem"))
		chain, _ := os.ReadFile(filepath.Join(live, "chain.pem"))
		inter := x509.NewCertPool()
		inter.AppendCertsFromPEM(chain)
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter}); err != nil {
			t.Errorf("%s does not verify against sim-root.pem: %v", name, err)
		}
	}
	// The lifecycle was shown as it happened.
	for _, want := range []string{"claim token issued", "TXT record published", "token file published", "claim verified",
		"certificate issued", "certificate deployed", "hook ran", "renew_at"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("the demo's log does not show %q", want)
		}
	}
	if !strings.Contains(out.String(), "every certificate is deployed") || !strings.Contains(out.String(), "renew in") {
		t.Errorf("summary missing:\n%s", out.String())
	}
	// Secrets stay private.
	for _, f := range []string{"atlas-client.key", "atlas-api-secret", "tsig.key", "certd.db"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, fi.Mode().Perm(), err)
		}
	}
}
