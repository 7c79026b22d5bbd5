package deploy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/certd/certd/deploy"
)

var ctx = context.Background()

// testCA issues bundles for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour * 24), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key}
}

func (ca *testCA) bundle(t *testing.T, serial int64, names ...string) deploy.Bundle {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return deploy.Bundle{Domains: names, Serial: leaf.SerialNumber.Text(16), Leaf: leaf, Chain: []*x509.Certificate{ca.cert},
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}
}

func spec(dir string) deploy.Spec {
	return deploy.Spec{Name: "www", Dir: dir, CertMode: 0o644, KeyMode: 0o600, Keep: 2, Timeout: 5 * time.Second}
}

func TestLayoutAndModesWhateverTheUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	ca := newCA(t)
	dir := t.TempDir()
	s := spec(dir)
	s.Combined = true
	d := &deploy.Deployer{}
	res, err := d.Deploy(ctx, s, ca.bundle(t, 10, "www.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "www")
	for name, mode := range map[string]os.FileMode{"cert.pem": 0o644, "chain.pem": 0o644, "fullchain.pem": 0o644, "privkey.pem": 0o600, "combined.pem": 0o600} {
		fi, err := os.Stat(filepath.Join(live, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: %04o, want %04o", name, fi.Mode().Perm(), mode)
		}
	}
	if fi, _ := os.Lstat(live); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("live path is not a symlink")
	}
	full, _ := os.ReadFile(filepath.Join(live, "fullchain.pem"))
	if strings.Count(string(full), "BEGIN CERTIFICATE") != 2 {
		t.Errorf("fullchain has %d certificates", strings.Count(string(full), "BEGIN CERTIFICATE"))
	}
	if res.Previous != "" || res.Version == "" {
		t.Errorf("result %+v", res)
	}
}

func TestRefusesAMismatchedBundle(t *testing.T) {
	ca := newCA(t)
	a, b := ca.bundle(t, 1, "a.example.com"), ca.bundle(t, 2, "a.example.com")
	a.KeyPEM = b.KeyPEM
	if _, err := (&deploy.Deployer{}).Deploy(ctx, spec(t.TempDir()), a); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched key deployed: %v", err)
	}
}

func TestFailingCheckRollsBack(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	s := spec(dir)
	d := &deploy.Deployer{}
	first := ca.bundle(t, 1, "www.example.com")
	if _, err := d.Deploy(ctx, s, first); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "reloaded")
	s.Check = []string{"false"}
	s.Reload = [][]string{{"touch", marker}}
	_, err := d.Deploy(ctx, s, ca.bundle(t, 2, "www.example.com"))
	if err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("failing check: %v", err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "www", "cert.pem"))
	if !strings.Contains(string(got), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: first.Leaf.Raw}))) {
		t.Error("the first certificate is not live after the rollback")
	}
	if _, err := os.Stat(marker); err != nil {
		t.Error("no reload after the rollback")
	}
}

func TestHookTimeoutKillsTheProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	start := time.Now()
	run := deploy.RunHook(ctx, []string{"sh", "-c", "sleep 60 & echo $! > " + pidFile + "; wait"}, nil, 300*time.Millisecond)
	if run.Err == nil || !strings.Contains(run.Err.Error(), "timed out") {
		t.Fatalf("hook: %v", run.Err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	for _, c := range strings.TrimSpace(string(b)) {
		pid = pid*10 + int(c-'0')
	}
	time.Sleep(100 * time.Millisecond)
	if err := syscall.Kill(pid, 0); err == nil {
		// A zombie still answers; check its state.
		stat, _ := os.ReadFile(filepath.Join("/proc", string(b[:len(b)-1]), "stat"))
		if !strings.Contains(string(stat), ") Z ") {
			t.Fatalf("child %d survived the timeout", pid)
		}
	}
}

func TestHookEnvironmentHasNoSecrets(t *testing.T) {
	t.Setenv("CERTD_ATLAS_SECRET", "CANARY-secret-value")
	ca := newCA(t)
	dir := t.TempDir()
	s := spec(dir)
	out := filepath.Join(dir, "env.txt")
	s.Reload = [][]string{{"sh", "-c", "env > " + out + "; cat $CERTD_KEY"}}
	res, err := (&deploy.Deployer{}).Deploy(ctx, s, ca.bundle(t, 3, "www.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := os.ReadFile(out)
	if strings.Contains(string(env), "CANARY") {
		t.Error("a hook saw certd's environment")
	}
	for _, want := range []string{"CERTD_NAME=www", "CERTD_DOMAINS=www.example.com", "CERTD_SERIAL=3", "CERTD_FINGERPRINT=", "CERTD_FULLCHAIN=" + filepath.Join(dir, "www", "fullchain.pem")} {
		if !strings.Contains(string(env), want) {
			t.Errorf("hook environment lacks %s", want)
		}
	}
	if o := res.Hooks[0].Output; strings.Contains(o, "BEGIN PRIVATE KEY") || !strings.Contains(o, "[private key redacted]") {
		t.Errorf("hook output not redacted: %q", o)
	}
}

func TestRollbackAndPruning(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	s := spec(dir)
	d := &deploy.Deployer{}
	var versions []string
	for i := range 5 {
		res, err := d.Deploy(ctx, s, ca.bundle(t, int64(i+1), "www.example.com"))
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, res.Version)
		time.Sleep(1100 * time.Millisecond / 10)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, ".certd-versions", "www"))
	if len(entries) != 3 {
		t.Errorf("%d versions kept, want 3 (keep 2 + current)", len(entries))
	}
	res, err := d.Rollback(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != versions[3] {
		t.Errorf("rolled back to %s, want %s", res.Version, versions[3])
	}
	target, _ := os.Readlink(filepath.Join(dir, "www"))
	if target != versions[3] {
		t.Errorf("live path -> %s", target)
	}
}

func TestDoesNotTakeOverForeignFiles(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := (&deploy.Deployer{}).Deploy(ctx, spec(dir), ca.bundle(t, 1, "www.example.com")); err == nil || !strings.Contains(err.Error(), "not a symlink certd made") {
		t.Fatalf("foreign directory: %v", err)
	}
}

func parseSerial(t *testing.T, pemData []byte) string {
	t.Helper()
	block, _ := pem.Decode(pemData)
	if block == nil {
		t.Fatal("no PEM")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.Text(16)
}

// TestLiveDirectoryIsNeverMixed reads the live set the way a careful
// consumer does (open the live directory once, read both files through
// it) while 200 deploys run back to back: every read is one complete
// version whose key matches its certificate (N4).
func TestLiveDirectoryIsNeverMixed(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	s := spec(dir)
	s.Keep = 5
	d := &deploy.Deployer{}
	if _, err := d.Deploy(ctx, s, ca.bundle(t, 1, "www.example.com")); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var reads, bad atomic.Int64
	var firstBad atomic.Value
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			if err := readConsistent(filepath.Join(dir, "www")); err != nil {
				bad.Add(1)
				firstBad.CompareAndSwap(nil, err.Error())
			}
			reads.Add(1)
		}
	}()
	for i := 2; i <= 201; i++ {
		if _, err := d.Deploy(ctx, s, ca.bundle(t, int64(i), "www.example.com")); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	<-done
	if bad.Load() != 0 {
		t.Fatalf("%d of %d reads saw an inconsistent set; first: %v", bad.Load(), reads.Load(), firstBad.Load())
	}
	t.Logf("200 deploys, %d consistent reads", reads.Load())
}

// readConsistent opens the live directory once and reads cert and key
// through that handle, so a switch between the two reads cannot mix them.
func readConsistent(live string) error {
	dfd, err := unix.Open(live, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	read := func(name string) ([]byte, error) {
		fd, err := unix.Openat(dfd, name, unix.O_RDONLY, 0)
		if err != nil {
			return nil, err
		}
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		return io.ReadAll(f)
	}
	certPEM, err := read("cert.pem")
	if err != nil {
		return err
	}
	keyPEM, err := read("privkey.pem")
	if err != nil {
		return err
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fmt.Errorf("key and certificate do not match: %w", err)
	}
	return nil
}

func TestRollbackOrderWithinOneSecond(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	s := spec(dir)
	fixed := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	n := 0
	// Every deploy within the same second; serials chosen so that sorting
	// by serial would give the wrong order.
	d := &deploy.Deployer{Now: func() time.Time { n++; return fixed.Add(time.Duration(n) * time.Millisecond) }}
	first := ca.bundle(t, 0xFFFF, "www.example.com")
	if _, err := d.Deploy(ctx, s, first); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Deploy(ctx, s, ca.bundle(t, 0x1, "www.example.com")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Rollback(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got := readLeaf(t, filepath.Join(dir, "www", "cert.pem")); got != first.Serial {
		t.Fatalf("rolled back to %s, want %s", got, first.Serial)
	}
}
