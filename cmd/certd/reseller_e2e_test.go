package main

import (
	"context"
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

	"github.com/certd/certd/ca/reseller/resellersim"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/store"
)

// resellerWorld is the reseller /ssl-certificate simulator, which reads
// what to publish from its upstream CA's rules and checks it for real
// against Knot and nginx, with the real binary in between.
type resellerWorld struct {
	sim     *resellersim.Server
	knot    *testenv.Knot
	web     string
	webroot string
	url     string
	dir     string
}

func newResellerWorld(t *testing.T, mods ...func(*resellersim.Options)) *resellerWorld {
	t.Helper()
	w := &resellerWorld{dir: t.TempDir()}
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
	opts := resellersim.Options{Username: "e2e-user", APIKey: "e2e-reseller-key", DNSServer: w.knot.Addr, HTTPAddr: w.web, IssueDelay: 300 * time.Millisecond}
	for _, m := range mods {
		m(&opts)
	}
	sim, err := resellersim.New(opts)
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
	for name, data := range map[string][]byte{"api-key": []byte("e2e-reseller-key\n"), "api-ca.pem": sim.APICAPEM(),
		"root.pem": sim.RootPEM(), "tsig": []byte(w.knot.Secret + "\n")} {
		if err := os.WriteFile(filepath.Join(w.dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *resellerWorld) config(schedule, plan, extra, certs string) string {
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
  reseller:
    type: reseller
    url: %[3]s
    username: e2e-user
    api_key: file:api-key
    plan: %[9]s
    ca: %[4]s/api-ca.pem
    roots: %[4]s/root.pem
    poll_interval: 1s
%[6]s
dns:
  knot: {type: rfc2136, server: %[2]q, key_name: %[5]s, key: file:tsig}
http:
  web: {type: webroot, root: %[8]s}
defaults:
  account: reseller
  dcv: {method: dns, provider: knot}
  deploy: {dir: %[4]s/live, keep: 2}
certificates:
%[10]s`, schedule, w.knot.Addr, w.url, w.dir, w.knot.KeyName, extra, w.web, w.webroot, plan, certs)
}

func (w *resellerWorld) verifyLive(t *testing.T, name, host string) {
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

func (w *resellerWorld) noLeftovers(t *testing.T) {
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

// The reseller API end to end under both upstream CAs' rules: what to
// publish is read from validation-details (a DigiCert-style TXT and
// fileauth.txt, a Sectigo-style CNAME and hash file), published through
// Knot and nginx, checked by the simulator, removed after issuance; a
// lost create answer is found by client_reference; a second run orders
// nothing.
func TestResellerEndToEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, plan string }{
		{"digicert", resellersim.DigiCertDVPlan},
		{"sectigo", resellersim.SectigoDVPlan},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newResellerWorld(t)
			// The answer to one create is lost after the charge.
			w.sim.InjectFault("POST /ssl-certificate", resellersim.Fault{DropAfterCommit: true})
			cfg := filepath.Join(w.dir, "certd.yaml")
			writeFile(t, cfg, w.config("@every 1h", tc.plan, "", `
  - {name: dns, domains: [dns.example.com, www.example.com]}
  - {name: file, domains: [file.example.com], dcv: {method: http, target: web}}
`))
			code, out, took := runOnceBin(t, cfg)
			if code != exitOK {
				t.Fatalf("run -once: exit %d after %s\n%s", code, took, out)
			}
			w.verifyLive(t, "dns", "www.example.com")
			w.verifyLive(t, "file", "file.example.com")
			for _, names := range [][]string{{"dns.example.com", "www.example.com"}, {"file.example.com"}} {
				if n := w.sim.OrdersFor(names); n != 1 {
					t.Errorf("%v: %d charges, want 1 (N1)", names, n)
				}
			}
			if !strings.Contains(out, "order found at the CA") {
				t.Errorf("the lost create was not found by its client reference:\n%s", out)
			}
			w.noLeftovers(t)
			if strings.Contains(out, "e2e-reseller-key") {
				t.Error("the API key reached the log")
			}
			if code, out, _ := runOnceBin(t, cfg); code != exitOK || len(w.sim.Ledger()) != 2 {
				t.Fatalf("second run: exit %d, ledger %d\n%s", code, len(w.sim.Ledger()), out)
			}
		})
	}
}

// certd SIGKILLed at random instants while it orders 20 certificates from
// the reseller API: every lost answer is found by client_reference, so
// every certificate ends with exactly one charge.
func TestResellerKilledAtRandomInstantsChargesOnce(t *testing.T) {
	t.Parallel()
	const certs, kills = 20, 10
	w := newResellerWorld(t)
	var b strings.Builder
	var names []string
	for i := range certs {
		fmt.Fprintf(&b, "  - {name: r%d, domains: [r%d.example.com]}\n", i, i)
		names = append(names, fmt.Sprintf("r%d", i))
	}
	cfg := filepath.Join(w.dir, "certd.yaml")
	writeFile(t, cfg, w.config("@every 1s", resellersim.DigiCertDVPlan, "", b.String()))
	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, 9))
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
	maxCharges := 0
	for i := range certs {
		n := w.sim.OrdersFor([]string{fmt.Sprintf("r%d.example.com", i)})
		maxCharges = max(maxCharges, n)
		if n != 1 {
			t.Errorf("r%d: %d charges, want 1 (N1, seed %d)", i, n, seed)
		}
		w.verifyLive(t, names[i], fmt.Sprintf("r%d.example.com", i))
	}
	w.noLeftovers(t)
	t.Logf("reseller kill campaign: kills=%d certificates=%d ledger=%d max_charges_per_certificate=%d seed=%d", kills, certs, len(w.sim.Ledger()), maxCharges, seed)
}

// The reseller's own lifecycle actions, against its ledger: a renewal is
// POST /{id}/renew on the same object (charged again), a key change is a
// reissue (no charge), and an order abandoned before it is active is
// deleted inside the refund window (refunded).
func TestResellerRenewReissueAbandon(t *testing.T) {
	t.Parallel()
	w := newResellerWorld(t)
	cfg := filepath.Join(w.dir, "certd.yaml")
	certs := "  - {name: r, domains: [r.example.com]}\n"
	writeFile(t, cfg, w.config("@every 1h", resellersim.DigiCertDVPlan, "", certs))
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("first run: %d\n%s", code, out)
	}
	first := w.sim.Ledger()[0]
	var out, errb strings.Builder
	if code := run([]string{"renew", "-config", cfg, "-force", "r"}, &out, &errb); code != exitOK {
		t.Fatalf("renew: %d\n%s\n%s", code, out.String(), errb.String())
	}
	led := w.sim.Ledger()
	if len(led) != 2 || led[1].Kind != "renew" || led[1].ID != first.ID {
		t.Fatalf("ledger after the renewal: %+v; want a renew charge on object %s", led, first.ID)
	}
	// A key change: reissued under the same object, not charged.
	writeFile(t, cfg, w.config("@every 1h", resellersim.DigiCertDVPlan, "", "  - {name: r, domains: [r.example.com], key_type: ecdsa-p384}\n"))
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("run after the key change: %d\n%s", code, out)
	}
	if led := w.sim.Ledger(); len(led) != 2 {
		t.Fatalf("a key change was charged: %+v", led)
	}
	if k := readCert(t, filepath.Join(w.dir, "live", "r", "cert.pem")).PublicKey; fmt.Sprintf("%T", k) != "*ecdsa.PublicKey" {
		t.Fatalf("live key %T", k)
	}
	// An order that cannot become active (its proof never passes) is
	// abandoned: deleted at the CA inside the refund window.
	w.sim.SetIssueDelay(time.Hour)
	writeFile(t, cfg, w.config("@every 1h", resellersim.DigiCertDVPlan, "    order_wait: 1s", certs+"  - {name: stuck, domains: [stuck.example.com]}\n"))
	_, _, _ = runOnceBin(t, cfg)
	out.Reset()
	errb.Reset()
	if code := run([]string{"orders", "abandon", "-config", cfg, "stuck"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "refunded") {
		t.Fatalf("abandon: %d\n%s\n%s", code, out.String(), errb.String())
	}
	refunded := false
	for _, e := range w.sim.Ledger() {
		refunded = refunded || slicesEqual(e.DNSNames, []string{"stuck.example.com"}) && e.Refunded
	}
	if !refunded {
		t.Fatalf("the abandoned order was not refunded: %+v", w.sim.Ledger())
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }
