package main

import (
	"context"
	"crypto/x509"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	_ "modernc.org/sqlite"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/acme"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/store"
)

const pebbleKID, pebbleHMAC = "kid-1", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"

// acmeE2E is Knot and Debian's Pebble (EAB required) for `certd run`.
type acmeE2E struct {
	knot   *testenv.Knot
	pebble *testenv.Pebble
	dir    string
	roots  string
}

func newACMEE2E(t *testing.T, validity time.Duration) *acmeE2E {
	t.Helper()
	w := &acmeE2E{dir: t.TempDir()}
	w.knot = testenv.StartKnot(t, map[string]string{
		"example.com": testenv.Zone("example.com", "www A 127.0.0.1", "app A 127.0.0.1"),
	})
	w.pebble = testenv.StartPebble(t, testenv.PebbleOptions{DNSServer: w.knot.Addr, Validity: validity,
		EAB: map[string]string{pebbleKID: pebbleHMAC}, Env: []string{"PEBBLE_VA_SLEEPTIME=2"}})
	w.roots = w.pebble.RootsFile(t)
	for name, data := range map[string]string{"tsig": w.knot.Secret, "eab": pebbleHMAC} {
		if err := os.WriteFile(filepath.Join(w.dir, name), []byte(data+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *acmeE2E) config(schedule string) string {
	return fmt.Sprintf(`
schedule: %[7]q
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
    email: hostmaster@example.com
    ca: %[3]s
    roots: %[4]s
    eab: {kid: %[8]s, hmac_key: file:eab}
dns:
  knot: {type: rfc2136, server: %[1]q, key_name: %[5]s, key: file:tsig}
http:
  web: {type: responder, listen: 127.0.0.1:%[6]d}
defaults:
  account: pebble
  deploy: {dir: %[9]s/live, keep: 3}
certificates:
  - name: www
    domains: [www.example.com]
    dcv: {method: dns, provider: knot}
  - name: app
    domains: [app.example.com]
    dcv: {method: http, target: web}
`, w.knot.Addr, w.pebble.Directory, w.pebble.TLSCA, w.roots, w.knot.KeyName, w.pebble.HTTPPort, schedule, pebbleKID, w.dir)
}

func versionCount(t *testing.T, dbPath, name string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM cert_versions WHERE cert_name = ?", name).Scan(&n); err != nil {
		return 0
	}
	return n
}

// `certd run` against Pebble with 20-second certificates: both are issued
// (DNS-01 through Knot, HTTP-01 through the built-in responder) and then
// renewed by the daemon on its own, with no failure on the way.
func TestEndToEndACMERenewsShortLivedCertificates(t *testing.T) {
	t.Parallel()
	w := newACMEE2E(t, 20*time.Second)
	cfgPath := filepath.Join(w.dir, "certd.yaml")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	writeFile(t, cfgPath, "metrics: {listen: \""+metricsAddr+"\"}\n"+w.config("@every 1s"))
	dbPath := filepath.Join(w.dir, "state", "certd.db")

	var logs syncBuffer
	cmd := exec.Command(binary(t), "run", "-config", cfgPath)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	logs.waitFor(t, "certd started")
	deadline := time.Now().Add(90 * time.Second)
	for versionCount(t, dbPath, "www") < 3 || versionCount(t, dbPath, "app") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("not renewed twice in time (www %d, app %d versions); log:\n%s", versionCount(t, dbPath, "www"), versionCount(t, dbPath, "app"), logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// ACME traffic is visible by route, without ids in the labels.
	fams := scrape(t, metricsAddr)
	// Challenges: at least one; Pebble reuses valid authorizations at times.
	for route, min := range map[string]float64{"newAccount": 1, "newOrder": 6, "finalize": 6, "authz": 6, "challenge": 1} {
		var n float64
		for _, code := range []string{"200", "201"} {
			v, _ := value(fams, "certd_ca_requests_total", map[string]string{"account": "pebble", "endpoint": route, "code": code})
			n += v
		}
		if n < min {
			t.Errorf("certd_ca_requests_total for %s: %v, want at least %v", route, n, min)
		}
	}
	if v, _ := value(fams, "certd_renewals_total", map[string]string{"account": "pebble"}); v < 6 {
		t.Errorf("certd_renewals_total: %v, want at least 6", v)
	}
	for _, f := range fams["certd_ca_requests_total"].GetMetric() {
		for _, l := range f.GetLabel() {
			if l.GetName() == "endpoint" && strings.Contains(l.GetValue(), "/") {
				t.Errorf("a URL became a label: %s", l.GetValue())
			}
		}
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
	for _, secret := range []string{pebbleHMAC, w.knot.Secret, "PRIVATE KEY"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatal("a secret appears in the log")
		}
	}
	st, err := store.Open(ctx, dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rootsPEM, _ := os.ReadFile(w.roots)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootsPEM)
	for _, name := range []string{"www", "app"} {
		c, err := st.GetCertificate(ctx, name)
		if err != nil || c.State != store.StateValid || c.Failures != 0 {
			t.Fatalf("%s: %+v %v", name, c, err)
		}
		leaf, chain := readLive(t, filepath.Join(w.dir, "live", name))
		inter := x509.NewCertPool()
		for _, ic := range chain {
			inter.AddCert(ic)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
			t.Fatalf("%s: the live chain does not verify to Pebble's root: %v", name, err)
		}
		if fmt.Sprintf("%X", leaf.SerialNumber) != c.Current.Serial {
			t.Fatalf("%s: live serial %X, stored %s", name, leaf.SerialNumber, c.Current.Serial)
		}
	}
	if fi, err := os.Stat(dbPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the store holding the account key is not 0600: %v %v", fi.Mode(), err)
	}
}

// `certd run -once` issues what is due and exits 0; a second run finds
// nothing due and buys nothing.
func TestRunOnceIssuesThenExits(t *testing.T) {
	t.Parallel()
	w := newACMEE2E(t, 0)
	cfgPath := filepath.Join(w.dir, "certd.yaml")
	writeFile(t, cfgPath, w.config("@every 1h"))
	dbPath := filepath.Join(w.dir, "state", "certd.db")
	for run := 1; run <= 2; run++ {
		out, err := exec.Command(binary(t), "run", "-once", "-config", cfgPath).CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, out)
		}
		if !strings.Contains(string(out), `"not_valid":0`) {
			t.Fatalf("run %d did not report every certificate valid:\n%s", run, out)
		}
		if n, m := versionCount(t, dbPath, "www"), versionCount(t, dbPath, "app"); n != 1 || m != 1 {
			t.Fatalf("after run %d: %d and %d versions, want 1 each", run, n, m)
		}
	}
	// The dry run rehearses where ACME looks: _acme-challenge TXT, and the
	// acme-challenge path.
	for name, where := range map[string]string{"www": "_acme-challenge.www.example.com", "app": "/.well-known/acme-challenge/"} {
		out, err := exec.Command(binary(t), "renew", "-dry-run", "-config", cfgPath, name).CombinedOutput()
		if err != nil || !strings.Contains(string(out), where) {
			t.Fatalf("dry run of %s: %v\n%s", name, err, out)
		}
	}
	if n, m := versionCount(t, dbPath, "www"), versionCount(t, dbPath, "app"); n != 1 || m != 1 {
		t.Fatalf("the dry run issued something: %d and %d versions", n, m)
	}
}

var ctx = context.Background()

// readLive parses the live fullchain of a certificate: leaf, then chain.
func readLive(t *testing.T, dir string) (*x509.Certificate, []*x509.Certificate) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "fullchain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pemutil.Certificates(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) < 2 {
		t.Fatalf("%s: %d certificates in the fullchain", dir, len(certs))
	}
	return certs[0], certs[1:]
}

// certd killed (SIGKILL) at random instants while it orders five
// certificates from Pebble, five times over; a last run finishes them.
// Every order Pebble holds for the account is one certd journaled (N2),
// each certificate was bought once (N1), and no DNS record is left (N6).
func TestACMEKilledAtRandomInstantsResumes(t *testing.T) {
	t.Parallel()
	w := newACMEE2E(t, 0)
	cfg := w.config("@every 1s")
	for i := range 5 {
		cfg += fmt.Sprintf("  - {name: c%d, domains: [c%d.example.com], dcv: {method: dns, provider: knot}}\n", i, i)
	}
	cfgPath := filepath.Join(w.dir, "certd.yaml")
	writeFile(t, cfgPath, cfg)
	dbPath := filepath.Join(w.dir, "state", "certd.db")
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for round := range 5 {
		cmd := exec.Command(binary(t), "run", "-config", cfgPath)
		var logs syncBuffer
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(50+rnd.IntN(400)) * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Logf("round %d killed; log lines: %d", round, strings.Count(logs.String(), "\n"))
	}
	out, err := exec.Command(binary(t), "run", "-once", "-config", cfgPath).CombinedOutput()
	if err != nil {
		t.Fatalf("the run after the kills: %v\n%s", err, out)
	}
	st, err := store.Open(ctx, dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	journaled := map[string]bool{}
	for _, name := range []string{"www", "app", "c0", "c1", "c2", "c3", "c4"} {
		c, err := st.GetCertificate(ctx, name)
		if err != nil || c.State != store.StateValid {
			t.Fatalf("%s: %+v %v", name, c, err)
		}
		if n := versionCount(t, dbPath, name); n != 1 {
			t.Fatalf("%s has %d versions, want 1: bought twice (N1)", name, n)
		}
	}
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT ca_ref FROM orders WHERE ca_ref != ''")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var ref string
		_ = rows.Scan(&ref)
		journaled[ref] = true
	}
	rows.Close()
	cfgLoaded, err := loadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	built, err := acme.Kind().New(ca.Env{Name: "pebble", Settings: cfgLoaded.Accounts["pebble"].Settings, Keys: accountKeys{st}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	iss := built.(*acme.Issuer)
	urls, listed, err := iss.Orders(ctx)
	if err != nil || !listed {
		t.Fatalf("Pebble's order list: %v", err)
	}
	for _, u := range urls {
		if !journaled[u] {
			t.Errorf("Pebble holds order %s that certd never journaled (N2)", u)
		}
	}
	if a, err := st.LiveArtefacts(ctx); err != nil || len(a) != 0 {
		t.Fatalf("DNS records left journaled as live: %v %v", a, err)
	}
	t.Logf("%d orders at Pebble, all journaled (%d journaled)", len(urls), len(journaled))
}
