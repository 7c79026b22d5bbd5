package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certd/certd/ca/atlas/atlassim"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/store"
)

// atlasWorld is an Atlas simulator and a Knot server for end-to-end runs.
type atlasWorld struct {
	sim  *atlassim.Server
	knot *testenv.Knot
	url  string
	dir  string
	// stopSim stops the simulator before the test ends (idempotent).
	stopSim func()
}

func newAtlasWorld(t *testing.T, mods ...func(*atlassim.Options)) *atlasWorld {
	t.Helper()
	w := &atlasWorld{dir: t.TempDir()}
	w.knot = testenv.StartKnot(t, map[string]string{
		"example.com": testenv.Zone("example.com", `@ TXT "v=spf1 -all"`),
		"example.org": testenv.Zone("example.org", "_acme-challenge.shop CNAME shop.example.org.validation.example.net."),
		"example.net": testenv.Zone("example.net"),
	})
	opts := atlassim.Options{APIKey: "e2e-key", APISecret: "e2e-secret", DNSServer: w.knot.Addr, RotateEvery: 1}
	for _, m := range mods {
		m(&opts)
	}
	sim, err := atlassim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	w.sim = sim
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = sim.Serve(ctx, ln); close(done) }()
	w.stopSim = func() { cancel(); <-done }
	t.Cleanup(w.stopSim)
	w.url = "https://" + ln.Addr().String() + "/v2"
	certPEM, keyPEM, err := sim.ClientCredentials("certd-e2e")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"client.pem": certPEM, "client.key": keyPEM, "api-key": []byte("e2e-key\n"),
		"api-secret": []byte("e2e-secret\n"), "api-ca.pem": sim.APICAPEM(), "tsig": []byte(w.knot.Secret + "\n")}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(w.dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *atlasWorld) config() string {
	return fmt.Sprintf(`
schedule: "@every 1h"
store: {sqlite: state/certd.db}
log: {level: debug, format: json}
dcv:
  resolvers: [%[1]q]
  check_servers: {knot: [%[1]q]}
  timeout: 20s
accounts:
  atlas:
    type: globalsign-atlas
    url: %[2]s
    api_key: file:api-key
    api_secret: file:api-secret
    client_cert: %[3]s/client.pem
    client_key: file:client.key
    ca: %[3]s/api-ca.pem
    claim_domains: [example.com]
dns:
  knot: {type: rfc2136, server: %[1]q, key_name: %[4]s, key: file:tsig}
defaults:
  account: atlas
  deploy: {dir: %[3]s/live, keep: 2}
certificates:
  - name: www
    domains: [www.example.com, example.com]
    dcv: {method: dns, provider: knot}
  - name: shop
    domains: [shop.example.org]
    dcv: {method: dns-delegated, delegate: shop.example.org.validation.example.net, provider: knot}
`, w.knot.Addr, w.url, w.dir, w.knot.KeyName)
}

// runUntil runs certd until every named certificate is valid, then stops
// it with SIGTERM.
func runUntil(t *testing.T, cfgPath string, names ...string) string {
	t.Helper()
	var logs syncBuffer
	cmd := exec.Command(binary(t), "run", "-config", cfgPath)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	dbPath := filepath.Join(filepath.Dir(cfgPath), "state", "certd.db")
	// A signal that arrives before the Go runtime has installed handlers
	// kills any process; wait until certd says it runs.
	logs.waitFor(t, "certd started")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if allValid(dbPath, names) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificates %v not valid in time; log:\n%s", names, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
	return logs.String()
}

func TestEndToEndAtlasThroughKnot(t *testing.T) {
	w := newAtlasWorld(t)
	cfgPath := filepath.Join(w.dir, "certd.yaml")
	writeFile(t, cfgPath, w.config())
	logs := runUntil(t, cfgPath, "www", "shop")
	if strings.Contains(logs, "e2e-secret") || strings.Contains(logs, w.knot.Secret) || strings.Contains(logs, "PRIVATE KEY") {
		t.Error("a secret reached the log")
	}

	// Every deployed set verifies against the simulator's root, with its key.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(w.sim.RootPEM())
	for name, host := range map[string]string{"www": "www.example.com", "shop": "shop.example.org"} {
		live := filepath.Join(w.dir, "live", name)
		leaf := readCert(t, filepath.Join(live, "cert.pem"))
		inter := x509.NewCertPool()
		chainPEM, _ := os.ReadFile(filepath.Join(live, "chain.pem"))
		inter.AppendCertsFromPEM(chainPEM)
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		keyPEM, _ := os.ReadFile(filepath.Join(live, "privkey.pem"))
		block, _ := pem.Decode(keyPEM)
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		spkiLeaf, _ := x509.MarshalPKIXPublicKey(leaf.PublicKey)
		spkiKey, _ := x509.MarshalPKIXPublicKey(key.(crypto.Signer).Public())
		if !bytes.Equal(spkiLeaf, spkiKey) {
			t.Errorf("%s: deployed key does not match the deployed certificate", name)
		}
		if fi, _ := os.Stat(filepath.Join(live, "privkey.pem")); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: key mode %04o", name, fi.Mode().Perm())
		}
	}

	// Exactly one paid request per certificate.
	if l := w.sim.Ledger(); len(l) != 2 {
		t.Fatalf("ledger has %d requests, want 2", len(l))
	}
	// No DCV record left behind; the foreign TXT is untouched.
	if got := w.knot.TXT(t, "example.com"); len(got) != 1 || got[0] != "v=spf1 -all" {
		t.Errorf("example.com TXT after the run: %v", got)
	}
	if got := w.knot.TXT(t, "shop.example.org.validation.example.net"); len(got) != 0 {
		t.Errorf("delegated TXT left behind: %v", got)
	}

	// status shows the claims and the certificates.
	var out, errb strings.Builder
	if code := run([]string{"status", "-config", cfgPath, "-no-daemon"}, &out, &errb); code != exitOK {
		t.Fatalf("status: exit %d %s\n%s", code, errb.String(), out.String())
	}
	for _, want := range []string{"www.example.com", "shop.example.org", "valid", "VERIFIED", "example.com", "renew in"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}

	// certd events shows the lifecycle, filtered by certificate.
	out.Reset()
	if code := run([]string{"events", "-config", cfgPath, "www"}, &out, &errb); code != exitOK {
		t.Fatalf("events: %d %s", code, errb.String())
	}
	for _, want := range []string{"configured", "issued", "deployed", "www"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("events lack %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "shop") {
		t.Errorf("events for www show shop:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"events", "-config", cfgPath, "-since", "1h", "-json", "-n", "3"}, &out, &errb); code != exitOK || strings.Count(out.String(), "\n") != 3 {
		t.Errorf("events -json -n 3: %d\n%s", code, out.String())
	}
	if !strings.Contains(func() string {
		var b strings.Builder
		run([]string{"status", "-config", cfgPath, "-no-daemon"}, &b, &errb)
		return b.String()
	}(), "globalsign-atlas") {
		t.Error("status does not show the issuer")
	}

	// certd claims: list, reassert (a new token, proved again), delete.
	out.Reset()
	if code := run([]string{"claims", "list", "-config", cfgPath}, &out, &errb); code != exitOK {
		t.Fatalf("claims list: %d %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "example.com") || !strings.Contains(out.String(), "shop.example.org") || !strings.Contains(out.String(), "in 364d") {
		t.Errorf("claims list:\n%s", out.String())
	}
	st, _ := store.Open(context.Background(), filepath.Join(w.dir, "state", "certd.db"), store.Options{})
	before, _ := st.GetClaim(context.Background(), "atlas", "example.com")
	out.Reset()
	if code := run([]string{"claims", "reassert", "-config", cfgPath, "example.com"}, &out, &errb); code != exitOK {
		t.Fatalf("claims reassert: %d %s", code, errb.String())
	}
	after, _ := st.GetClaim(context.Background(), "atlas", "example.com")
	if after.Token == before.Token || after.Status != "VERIFIED" || after.CAClaimID != before.CAClaimID {
		t.Errorf("reassert: before %+v after %+v", before, after)
	}
	if code := run([]string{"claims", "delete", "-config", cfgPath, "shop.example.org"}, &out, &errb); code != exitOK {
		t.Fatalf("claims delete: %d %s", code, errb.String())
	}
	if c, _ := st.GetClaim(context.Background(), "atlas", "shop.example.org"); c.Status != "DELETED" {
		t.Errorf("deleted claim: %+v", c)
	}
	st.Close()
	if got := w.knot.TXT(t, "example.com"); len(got) != 1 || got[0] != "v=spf1 -all" {
		t.Errorf("example.com TXT after the reassertion: %v", got)
	}

	// A restart buys nothing: both certificates are valid and not due.
	runUntil(t, cfgPath, "www", "shop")
	if l := w.sim.Ledger(); len(l) != 2 {
		t.Fatalf("a restart placed new orders: ledger has %d", len(l))
	}

	// certd renew -dry-run rehearses DCV and the deploy, buying nothing.
	out.Reset()
	errb.Reset()
	if code := run([]string{"renew", "-config", cfgPath, "-dry-run", "www"}, &out, &errb); code != exitOK ||
		!strings.Contains(out.String(), "every challenge visible") || !strings.Contains(out.String(), "no order was placed") {
		t.Fatalf("dry run: %d\n%s\n%s", code, out.String(), errb.String())
	}
	if len(w.sim.Ledger()) != 2 {
		t.Fatal("a dry run placed an order")
	}
	if got := w.knot.TXT(t, "example.com"); len(got) != 1 {
		t.Errorf("dry run left TXT records: %v", got)
	}
	// A broken delegation is found by the rehearsal.
	broken := filepath.Join(w.dir, "broken.yaml")
	writeFile(t, broken, strings.Replace(w.config(), "delegate: shop.example.org.validation.example.net", "delegate: shop.example.org.elsewhere.example.net", 1))
	out.Reset()
	if code := run([]string{"renew", "-config", broken, "-dry-run", "shop"}, &out, &errb); code != exitFailure || !strings.Contains(out.String(), "has no CNAME") {
		t.Fatalf("dry run of a broken delegation: %d\n%s", code, out.String())
	}

	// certd renew: not due, so nothing without -force; with it, a new
	// certificate now (no daemon running: done in the foreground).
	out.Reset()
	errb.Reset()
	if code := run([]string{"renew", "-config", cfgPath, "www"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "not due until") {
		t.Fatalf("renew without -force: %d %s %s", code, out.String(), errb.String())
	}
	oldSerial := readCert(t, filepath.Join(w.dir, "live", "www", "cert.pem")).SerialNumber
	out.Reset()
	if code := run([]string{"renew", "-config", cfgPath, "-force", "www"}, &out, &errb); code != exitOK {
		t.Fatalf("renew -force: %d\n%s", code, errb.String())
	}
	newSerial := readCert(t, filepath.Join(w.dir, "live", "www", "cert.pem")).SerialNumber
	if newSerial.Cmp(oldSerial) == 0 || len(w.sim.Ledger()) != 3 || !strings.Contains(out.String(), "deployed") {
		t.Fatalf("renew -force: serial %X -> %X, ledger %d: %s", oldSerial, newSerial, len(w.sim.Ledger()), out.String())
	}
	out.Reset()
	if code := run([]string{"status", "-config", cfgPath, "-json", "-no-daemon"}, &out, &errb); code != exitOK {
		t.Fatalf("status -json after the renewal: %d", code)
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Certificates {
		if c.Name == "www" && (c.Serial != fmt.Sprintf("%X", newSerial) || c.State != "valid" || c.Failures != 0) {
			t.Errorf("status -json after the renewal: %+v, want serial %X", c, newSerial)
		}
	}

	// certd rollback: the previous version is live again, and the store
	// says so.
	out.Reset()
	errb.Reset()
	if code := run([]string{"rollback", "-config", cfgPath, "www"}, &out, &errb); code != exitOK {
		t.Fatalf("rollback: %d %s", code, errb.String())
	}
	if got := readCert(t, filepath.Join(w.dir, "live", "www", "cert.pem")).SerialNumber; got.Cmp(oldSerial) != 0 {
		t.Fatalf("after rollback the live serial is %X, want %X", got, oldSerial)
	}
	st2, _ := store.Open(context.Background(), filepath.Join(w.dir, "state", "certd.db"), store.Options{})
	defer st2.Close()
	if c, _ := st2.GetCertificate(context.Background(), "www"); c.Current == nil || c.Current.Serial != fmt.Sprintf("%X", oldSerial) {
		t.Fatalf("store after rollback: %+v", c.Current)
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
