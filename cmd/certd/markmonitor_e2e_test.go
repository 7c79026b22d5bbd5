package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certd/certd/ca/markmonitor/mmsim"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/store"
)

// mmWorld is the Markmonitor (DigiCert) simulator checking the order's
// DCV tokens for real against Knot and nginx, with the real binary.
type mmWorld struct {
	sim     *mmsim.Server
	knot    *testenv.Knot
	web     string
	webroot string
	url     string
	dir     string
}

func newMMWorld(t *testing.T, mods ...func(*mmsim.Options)) *mmWorld {
	t.Helper()
	w := &mmWorld{dir: t.TempDir()}
	w.knot = testenv.StartKnot(t, map[string]string{
		"example.com": testenv.Zone("example.com", `@ TXT "v=spf1 -all"`),
	})
	w.webroot = filepath.Join(w.dir, "htdocs")
	if err := os.MkdirAll(w.webroot, 0o755); err != nil {
		t.Fatal(err)
	}
	w.web = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	testenv.StartNginx(t, fmt.Sprintf("server { listen %s; root %s; }", w.web, w.webroot))
	testenv.WaitListening(t, w.web)
	opts := mmsim.Options{APIKey: "e2e-mm-key", Username: "e2e-user", Password: "e2e-mm-password", DNSServer: w.knot.Addr, HTTPAddr: w.web,
		IssueDelay: 300 * time.Millisecond, RateLimit: 1000}
	for _, m := range mods {
		m(&opts)
	}
	sim, err := mmsim.New(opts)
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
	t.Cleanup(func() { cancel(); <-done })
	w.url = "https://" + ln.Addr().String()
	for name, data := range map[string][]byte{"api-key": []byte("e2e-mm-key\n"), "password": []byte("e2e-mm-password\n"), "api-ca.pem": sim.APICAPEM(),
		"root.pem": sim.RootPEM(), "tsig": []byte(w.knot.Secret + "\n")} {
		if err := os.WriteFile(filepath.Join(w.dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *mmWorld) config(schedule, extra, certs string) string {
	return fmt.Sprintf(`
schedule: %q
store: {sqlite: state/certd.db}
log: {level: debug, format: json}
dcv:
  resolvers: [%[2]q]
  check_servers: {knot: [%[2]q]}
  http_check_address: %[7]q
  timeout: 20s
accounts:
  mm:
    type: markmonitor
    url: %[3]s/cert/v1
    auth_url: %[3]s/auth/v1
    api_key: file:api-key
    username: e2e-user
    password: file:password
    certificate_type: SSL_DV_GEOTRUST
    organization:
      name: Example Corp
      address: 1 Main Street
      city: Boise
      state: ID
      country: US
      zip: "83702"
      phone: "+1.2085550100"
      contacts:
        - {first_name: Jane, last_name: Doe, job_title: CTO, email: jane.doe@example.com, phone: "+1.2085550101", types: [ORGANIZATION_CONTACT]}
    ca: %[4]s/api-ca.pem
    roots: %[4]s/root.pem
    poll_interval: 1s
    recheck_interval: 1s
    requests_per_minute: 1000
%[6]s
dns:
  knot: {type: rfc2136, server: %[2]q, key_name: %[5]s, key: file:tsig}
http:
  web: {type: webroot, root: %[8]s}
defaults:
  account: mm
  dcv: {method: dns, provider: knot}
  deploy: {dir: %[4]s/live, keep: 2}
certificates:
%[9]s`, schedule, w.knot.Addr, w.url, w.dir, w.knot.KeyName, extra, w.web, w.webroot, certs)
}

func (w *mmWorld) verifyLive(t *testing.T, name, host string) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(w.sim.RootPEM())
	live := filepath.Join(w.dir, "live", name)
	leaf := readCert(t, filepath.Join(live, "cert.pem"))
	inter := x509.NewCertPool()
	chainPEM, _ := os.ReadFile(filepath.Join(live, "chain.pem"))
	inter.AppendCertsFromPEM(chainPEM)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter}); err != nil {
		t.Errorf("%s: the deployed set does not verify to the simulator's root: %v", name, err)
	}
}

func (w *mmWorld) noLeftovers(t *testing.T) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(w.dir, "state", "certd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if live, _ := st.LiveArtefacts(context.Background()); len(live) != 0 {
		t.Errorf("DCV artefacts still live: %+v", live)
	}
	files, _ := filepath.Glob(filepath.Join(w.webroot, ".well-known", "pki-validation", "*"))
	if len(files) != 0 {
		t.Errorf("token files left in the webroot: %v", files)
	}
	if got := w.knot.TXT(t, "example.com"); len(got) != 1 || got[0] != "v=spf1 -all" {
		t.Errorf("foreign TXT at example.com: %v", got)
	}
}

// Markmonitor end to end: a TXT token and a CNAME token through Knot, a
// fileauth.txt through nginx; the organisation created once; issued,
// verified, cleaned up; a second run orders nothing; a key change is a
// reissue under the same order (one purchase, two certificates).
func TestMarkmonitorEndToEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, extra, certs string }{
		{"txt", "", "  - {name: txt, domains: [txt.example.com]}\n  - {name: file, domains: [file.example.com], dcv: {method: http, target: web}}\n"},
		{"cname", "    dns_method: cname", "  - {name: cname, domains: [cname.example.com]}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newMMWorld(t)
			cfg := filepath.Join(w.dir, "certd.yaml")
			writeFile(t, cfg, w.config("@every 1h", tc.extra, tc.certs))
			code, out, took := runOnceBin(t, cfg)
			if code != exitOK {
				t.Fatalf("run -once: exit %d after %s\n%s", code, took, out)
			}
			for _, line := range strings.Split(strings.TrimSpace(tc.certs), "\n") {
				name := strings.TrimSuffix(strings.Fields(line)[2], ",")
				host := name + ".example.com"
				w.verifyLive(t, name, host)
				if n := w.sim.OrdersFor([]string{host}); n != 1 {
					t.Errorf("%s: %d purchases, want 1", host, n)
				}
			}
			if orgs := w.sim.Organizations("Example Corp"); len(orgs) != 1 {
				t.Errorf("organisations created: %d, want 1", len(orgs))
			}
			w.noLeftovers(t)
			for _, secret := range []string{"e2e-mm-key", "e2e-mm-password"} {
				if strings.Contains(out, secret) {
					t.Errorf("a secret reached the log: %s", secret)
				}
			}
			ledger := len(w.sim.Ledger())
			if code, out, _ := runOnceBin(t, cfg); code != exitOK || len(w.sim.Ledger()) != ledger {
				t.Fatalf("second run: exit %d, ledger %d (was %d)\n%s", code, len(w.sim.Ledger()), ledger, out)
			}
			if tc.name != "txt" {
				return
			}
			// A key change: a reissue, not a purchase.
			writeFile(t, cfg, w.config("@every 1h", tc.extra, strings.Replace(tc.certs, "domains: [txt.example.com]}", "domains: [txt.example.com], key_type: ecdsa-p384}", 1)))
			if code, out, _ := runOnceBin(t, cfg); code != exitOK {
				t.Fatalf("run after the key change: %d\n%s", code, out)
			}
			if n := w.sim.OrdersFor([]string{"txt.example.com"}); n != 1 {
				t.Fatalf("a key change was bought: %d purchases", n)
			}
			if k, ok := readCert(t, filepath.Join(w.dir, "live", "txt", "cert.pem")).PublicKey.(*ecdsa.PublicKey); !ok || k.Curve.Params().BitSize != 384 {
				t.Fatal("the reissued certificate is not for the new P-384 key")
			}
		})
	}
}

// certd SIGKILLed at random instants while it orders 20 certificates from
// Markmonitor: every lost answer is found by the order search, so every
// certificate ends with one purchase.
func TestMarkmonitorKilledAtRandomInstantsBuysOnce(t *testing.T) {
	t.Parallel()
	const certs, kills = 20, 10
	w := newMMWorld(t)
	var b strings.Builder
	for i := range certs {
		fmt.Fprintf(&b, "  - {name: m%d, domains: [m%d.example.com]}\n", i, i)
	}
	cfg := filepath.Join(w.dir, "certd.yaml")
	writeFile(t, cfg, w.config("@every 1s", "    search_window: 5s", b.String()))
	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, 13))
	for range kills {
		cmd := exec.Command(binary(t), "run", "-config", cfg)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rnd.Int64N(int64(2 * time.Second))))
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("the run after the kills (seed %d): %d\n%s", seed, code, out)
	}
	maxOrders := 0
	for i := range certs {
		n := w.sim.OrdersFor([]string{fmt.Sprintf("m%d.example.com", i)})
		maxOrders = max(maxOrders, n)
		if n != 1 {
			t.Errorf("m%d: %d purchases, want 1 (N1, seed %d)", i, n, seed)
		}
		w.verifyLive(t, fmt.Sprintf("m%d", i), fmt.Sprintf("m%d.example.com", i))
	}
	w.noLeftovers(t)
	t.Logf("markmonitor kill campaign: kills=%d certificates=%d ledger=%d max_orders_per_certificate=%d seed=%d", kills, certs, len(w.sim.Ledger()), maxOrders, seed)
}
