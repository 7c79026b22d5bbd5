package main

import (
	"bytes"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// verifyDemo checks that every demo certificate deployed in dir verifies
// against dir/sim-root.pem now.
func verifyDemo(t *testing.T, dir string) {
	t.Helper()
	rootPEM, err := os.ReadFile(filepath.Join(dir, "sim-root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	for _, name := range []string{"www", "shop", "blog"} {
		live := filepath.Join(dir, "live", name)
		leaf := readCert(t, filepath.Join(live, "cert.pem"))
		chain, _ := os.ReadFile(filepath.Join(live, "chain.pem"))
		inter := x509.NewCertPool()
		inter.AppendCertsFromPEM(chain)
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name + ".example.com", Roots: roots, Intermediates: inter}); err != nil {
			t.Errorf("%s does not verify against sim-root.pem: %v", name, err)
		}
	}
}

// Item 8: `certd demo` runs again in the same folder (as `make demo` after
// `make demo DEMO_FLAGS=-once` does): the simulator of the first run comes
// back with its root and claims, so what was deployed still verifies and
// nothing fails; a state it cannot read is replaced, and it says so.
func TestDemoRunsAgainInTheSameFolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	demo := func() (string, string) {
		t.Helper()
		cmd := exec.Command(binary(t), "demo", "-once", "-dir", dir, "-timeout", "60s")
		var out, errb syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
		}
		return out.String(), errb.String()
	}
	demo()
	root1, _ := os.ReadFile(filepath.Join(dir, "sim-root.pem"))
	if fi, err := os.Stat(filepath.Join(dir, "atlas-sim.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the simulator's state is not kept privately: %v %v", fi, err)
	}
	out, errb := demo()
	root2, _ := os.ReadFile(filepath.Join(dir, "sim-root.pem"))
	if !bytes.Equal(root1, root2) || !strings.Contains(out, "the simulator of the earlier run is back") {
		t.Fatalf("the second run has another CA:\n%s", out)
	}
	if strings.Contains(errb, "job failed") || strings.Contains(errb, "ERROR") {
		t.Errorf("the second run failed on the way:\n%s", errb)
	}
	verifyDemo(t, dir)
	// A state that cannot be read: a clean start, said.
	if err := os.WriteFile(filepath.Join(dir, "atlas-sim.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ = demo()
	if !strings.Contains(out, "cannot be read") || !strings.Contains(out, "starting clean") {
		t.Errorf("a clean start is not said:\n%s", out)
	}
	verifyDemo(t, dir)
}

// Item 8: a plain `certd demo` shows a renewal within its first minute,
// and says beforehand when and why it will happen.
func TestDemoShowsARenewalWithinTheFirstMinute(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(binary(t), "demo", "-dir", dir)
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for !strings.Contains(out.String(), "renewed: serial") {
		if time.Since(start) > time.Minute {
			t.Fatalf("no renewal shown within a minute:\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("first renewal shown after %s", time.Since(start).Round(time.Second))
	if !strings.Contains(out.String(), "next renewals: each certificate is renewed at most 40s after it is issued") {
		t.Errorf("the demo does not say when and why it renews:\n%s", out.String())
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("demo after Ctrl-C: %v\n%s", err, errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "atlas-sim.json")); err != nil {
		t.Fatalf("no simulator state kept for the next run: %v", err)
	}
	verifyDemo(t, dir)
}
