package main

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/store"
)

// `certd run` against Pebble v2.10.3 with its profiles compressed to
// seconds: an account asking for the shortlived profile gets a DNS-name
// certificate (dns-01 through Knot) and an IP-address certificate
// (http-01 fetched by Pebble from 127.0.0.1 through the built-in
// responder), and the daemon renews both on its own, each renewal before
// the emergency window of the certificate it replaces.
func TestEndToEndACMEShortlivedProfileAndIPAddress(t *testing.T) {
	t.Parallel()
	const life = 20 * time.Second
	dir := t.TempDir()
	knot := testenv.StartKnot(t, map[string]string{"example.com": testenv.Zone("example.com", "www A 127.0.0.1")})
	pebble := testenv.StartPebble210(t, testenv.PebbleOptions{DNSServer: knot.Addr,
		EAB: map[string]string{pebbleKID: pebbleHMAC}, Env: []string{"PEBBLE_VA_NOSLEEP=1"},
		Profiles: map[string]testenv.PebbleProfile{
			"default":    testenv.Profile("ninety days, compressed", time.Hour),
			"shortlived": testenv.Profile("six days, compressed", life),
		}})
	roots := pebble.RootsFile(t)
	for name, data := range map[string]string{"tsig": knot.Secret, "eab": pebbleHMAC} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "certd.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`
schedule: "@every 1s"
store: {sqlite: state/certd.db}
log: {level: debug, format: json}
dcv:
  resolvers: [%[1]q]
  check_servers: {knot: [%[1]q]}
  http_check_address: 127.0.0.1:%[6]d
  timeout: 20s
accounts:
  pebble:
    type: acme
    directory: %[2]s
    ca: %[3]s
    roots: %[4]s
    eab: {kid: %[7]s, hmac_key: file:eab}
    profile: shortlived
dns:
  knot: {type: rfc2136, server: %[1]q, key_name: %[5]s, key: file:tsig}
http:
  web: {type: responder, listen: 127.0.0.1:%[6]d}
defaults:
  account: pebble
  deploy: {dir: %[8]s/live, keep: 3}
certificates:
  - name: www
    domains: [www.example.com]
    dcv: {method: dns, provider: knot}
  - name: addr
    domains: [127.0.0.1]
    dcv: {method: http, target: web}
`, knot.Addr, pebble.Directory, pebble.TLSCA, roots, knot.KeyName, pebble.HTTPPort, pebbleKID, dir))
	dbPath := filepath.Join(dir, "state", "certd.db")

	var logs syncBuffer
	cmd := exec.Command(binary(t), "run", "-config", cfgPath)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	logs.waitFor(t, "certd started")
	deadline := time.Now().Add(3*life + 30*time.Second)
	for versionCount(t, dbPath, "www") < 3 || versionCount(t, dbPath, "addr") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("not renewed twice in time (www %d, addr %d versions); log:\n%s", versionCount(t, dbPath, "www"), versionCount(t, dbPath, "addr"), logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
	if strings.Contains(logs.String(), "job failed") {
		t.Fatalf("a job failed on the way:\n%s", logs.String())
	}
	st, err := store.Open(ctx, dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rootsPEM, _ := os.ReadFile(roots)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootsPEM)
	for name, host := range map[string]string{"www": "www.example.com", "addr": "127.0.0.1"} {
		c, err := st.GetCertificate(ctx, name)
		if err != nil || c.State != store.StateValid || c.Failures != 0 {
			t.Fatalf("%s: %+v %v", name, c, err)
		}
		leaf, chain := readLive(t, filepath.Join(dir, "live", name))
		inter := x509.NewCertPool()
		for _, ic := range chain {
			inter.AddCert(ic)
		}
		// Verified as a client would: by name, or by IP SAN.
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, Intermediates: inter, CurrentTime: leaf.NotBefore}); err != nil {
			t.Fatalf("%s: the live certificate does not verify for %s: %v", name, host, err)
		}
		if got := leaf.NotAfter.Sub(leaf.NotBefore); got < life-2*time.Second || got > life {
			t.Fatalf("%s lives %s: the shortlived profile (%s) was not used", name, got, life)
		}
		if name == "addr" && (len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || len(leaf.DNSNames) != 0) {
			t.Fatalf("addr: SANs DNS %v IP %v, want the IP address only", leaf.DNSNames, leaf.IPAddresses)
		}
		versions, err := st.ListVersions(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for k := 1; k < len(versions); k++ {
			prev, next := versions[k-1], versions[k]
			life := prev.NotAfter.Sub(prev.NotBefore)
			if emergency := prev.NotAfter.Add(-life / 20); !next.NotBefore.Before(emergency) {
				t.Fatalf("%s: version %d issued at %s, inside the emergency window of the one before (from %s)", name, k+1, next.NotBefore, emergency)
			}
		}
	}
}

// An IP address with a DNS method is refused at load, with file:line.
func TestCheckConfigRefusesIPAddressWithDNSMethod(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "certd.yaml")
	writeFile(t, cfgPath, `accounts:
  le: {type: acme, directory: letsencrypt, profile: shortlived}
dns:
  zone: {type: rfc2136, server: "127.0.0.1:5353", key_name: k, key: env:TSIG}
certificates:
  - name: addr
    domains: [192.0.2.7]
    account: le
    dcv: {method: dns, provider: zone}
    deploy: {dir: /srv/tls}
`)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(binary(t), "check-config", cfgPath)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "TSIG=c2VjcmV0")
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("check-config: %v, want exit 2\n%s%s", err, stdout.String(), stderr.String())
	}
	want := cfgPath + `:7:`
	if out := stdout.String() + stderr.String(); !strings.Contains(out, want) || !strings.Contains(out, `"192.0.2.7" is an IP address: it can be proved only by method http`) {
		t.Fatalf("check-config output lacks %s and the reason:\n%s", want, out)
	}
}
