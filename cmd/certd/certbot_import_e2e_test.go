package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/store"
)

// A tree made by Debian's certbot for real (DNS-01 through RFC 2136 into
// Knot, against Pebble) is imported: the certificate certbot got is
// served from certd's layout, the first run orders nothing, and a renewal
// is then a normal order on the same ACME server.
func TestImportARealCertbotTree(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("certbot"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("certbot is not installed (.ci/run installs certbot and python3-certbot-dns-rfc2136)")
		}
		t.Skip("certbot is not installed")
	}
	dir := t.TempDir()
	knot := testenv.StartKnot(t, map[string]string{"example.com": testenv.Zone("example.com")})
	peb := testenv.StartPebble(t, testenv.PebbleOptions{DNSServer: knot.Addr, Env: []string{"PEBBLE_VA_NOSLEEP=1"}})
	roots := peb.RootsFile(t)

	host, port, _ := net.SplitHostPort(knot.Addr)
	ini := filepath.Join(dir, "rfc2136.ini")
	writeFile(t, ini, fmt.Sprintf("dns_rfc2136_server = %s\ndns_rfc2136_port = %s\ndns_rfc2136_name = %s\ndns_rfc2136_secret = %s\ndns_rfc2136_algorithm = %s\n",
		host, port, knot.KeyName, knot.Secret, strings.ToUpper(knot.KeyAlg)))
	if err := os.Chmod(ini, 0o600); err != nil {
		t.Fatal(err)
	}
	bot := filepath.Join(dir, "letsencrypt")
	cmd := exec.Command("certbot", "certonly", "--non-interactive", "--agree-tos", "--email", "ops@example.com", "--server", peb.Directory,
		"--config-dir", bot, "--work-dir", filepath.Join(dir, "work"), "--logs-dir", filepath.Join(dir, "logs"),
		"--key-type", "ecdsa", "--elliptic-curve", "secp256r1",
		"--dns-rfc2136", "--dns-rfc2136-credentials", ini, "--dns-rfc2136-propagation-seconds", "0", "-d", "www.example.com")
	cmd.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+peb.TLSCA)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("certbot: %v\n%s", err, out)
	}
	botCert := readCert(t, filepath.Join(bot, "live", "www.example.com", "cert.pem"))

	if err := os.WriteFile(filepath.Join(dir, "tsig"), []byte(knot.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "certd.yaml")
	writeFile(t, cfg, fmt.Sprintf(`
store: {sqlite: state/certd.db}
log: {level: debug, format: json}
dcv:
  resolvers: [%[1]q]
  check_servers: {knot: [%[1]q]}
  timeout: 20s
accounts:
  pebble: {type: acme, directory: %[2]s, email: ops@example.com, ca: %[3]s, roots: %[4]s}
dns:
  knot: {type: rfc2136, server: %[1]q, key_name: %[5]s, key: file:tsig}
defaults:
  account: pebble
  deploy: {dir: %[6]s/live}
certificates:
  - {name: www, domains: [www.example.com], key_type: ecdsa-p256, dcv: {method: dns, provider: knot}}
`, knot.Addr, peb.Directory, peb.TLSCA, roots, knot.KeyName, dir))

	var out, errb strings.Builder
	if code := run([]string{"import", "certbot", "-config", cfg, bot}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "www: adopted serial") {
		t.Fatalf("import: exit %d\n%s%s", code, out.String(), errb.String())
	}
	live := readCert(t, filepath.Join(dir, "live", "www", "cert.pem"))
	if !live.Equal(botCert) {
		t.Fatalf("serving serial %X, not certbot's %X", live.SerialNumber, botCert.SerialNumber)
	}
	if code, logs, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("run -once after import: exit %d\n%s", code, logs)
	}
	dbPath := filepath.Join(dir, "state", "certd.db")
	orders := func() []store.Order {
		st, err := store.Open(context.Background(), dbPath, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		o, err := st.LatestOrder(context.Background(), "www")
		if err != nil {
			t.Fatal(err)
		}
		open, _ := st.OpenOrders(context.Background())
		return append([]store.Order{o}, open...)
	}
	if got := orders(); len(got) != 1 || !strings.HasPrefix(got[0].CARef, "imported from certbot") {
		t.Fatalf("after the first run: latest order %+v (want only the import)", got)
	}
	if got := readCert(t, filepath.Join(dir, "live", "www", "cert.pem")); !got.Equal(botCert) {
		t.Fatal("the first run replaced the imported certificate")
	}

	// Renewal: a normal order on the same Pebble, deployed over it.
	out.Reset()
	errb.Reset()
	if code := run([]string{"renew", "-force", "-config", cfg, "www"}, &out, &errb); code != exitOK {
		t.Fatalf("renew -force: exit %d\n%s%s", code, out.String(), errb.String())
	}
	renewed := readCert(t, filepath.Join(dir, "live", "www", "cert.pem"))
	if renewed.Equal(botCert) {
		t.Fatal("renewal deployed nothing new")
	}
	pool := x509.NewCertPool()
	rootsPEM, _ := os.ReadFile(roots)
	pool.AppendCertsFromPEM(rootsPEM)
	inter := x509.NewCertPool()
	chainPEM, _ := os.ReadFile(filepath.Join(dir, "live", "www", "chain.pem"))
	inter.AppendCertsFromPEM(chainPEM)
	if _, err := renewed.Verify(x509.VerifyOptions{DNSName: "www.example.com", Roots: pool, Intermediates: inter}); err != nil {
		t.Fatalf("the renewed set does not verify to Pebble's root: %v", err)
	}
	if got := orders(); strings.HasPrefix(got[0].CARef, "imported") || got[0].Generation != 2 {
		t.Fatalf("renewal order: %+v", got[0])
	}
}
