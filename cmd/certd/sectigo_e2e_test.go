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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certd/certd/ca/sectigo/sectigosim"
	"github.com/certd/certd/internal/failpoint"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/store"
)

// sectigoWorld is the Sectigo simulator checking CSR-hash artefacts for
// real against Knot (CNAME_CSR_HASH) and nginx (HTTP_CSR_HASH), with the
// real binary in between.
type sectigoWorld struct {
	sim     *sectigosim.Server
	knot    *testenv.Knot
	web     string // nginx's address
	webroot string
	url     string
	dir     string
}

func newSectigoWorld(t *testing.T, mods ...func(*sectigosim.Options)) *sectigoWorld {
	t.Helper()
	w := &sectigoWorld{dir: t.TempDir()}
	w.knot = testenv.StartKnot(t, map[string]string{
		"example.com": testenv.Zone("example.com", `@ TXT "v=spf1 -all"`, `_foreign CNAME elsewhere.example.net.`),
	})
	w.webroot = filepath.Join(w.dir, "htdocs")
	if err := os.MkdirAll(w.webroot, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	w.web = fmt.Sprintf("127.0.0.1:%d", port)
	testenv.StartNginx(t, fmt.Sprintf("server { listen %s; root %s; }", w.web, w.webroot))
	testenv.WaitListening(t, w.web)
	opts := sectigosim.Options{LoginName: "e2e-login", LoginPassword: "e2e-password", DNSServer: w.knot.Addr, HTTPAddr: w.web,
		IssueDelay: 500 * time.Millisecond, RecheckEvery: time.Hour}
	for _, m := range mods {
		m(&opts)
	}
	sim, err := sectigosim.New(opts)
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
	for name, data := range map[string][]byte{"password": []byte("e2e-password\n"), "api-ca.pem": sim.APICAPEM(),
		"root.pem": sim.RootPEM(), "tsig": []byte(w.knot.Secret + "\n")} {
		if err := os.WriteFile(filepath.Join(w.dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func freePort(t testing.TB) int {
	t.Helper()
	return testenv.FreePort(t) // below the kernel's ephemeral range
}

// config: a multi-domain (UCC) Sectigo account; certs is the
// certificates block.
func (w *sectigoWorld) config(schedule, extra, certs string) string {
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
  sectigo:
    type: sectigo
    url: %[3]s
    login_name: e2e-login
    login_password: file:password
    product: 492
    days: 365
    ca: %[4]s/api-ca.pem
    roots: %[4]s/root.pem
    recheck_interval: 1s
%[6]s
dns:
  knot: {type: rfc2136, server: %[2]q, key_name: %[5]s, key: file:tsig}
http:
  web: {type: webroot, root: %[8]s}
defaults:
  account: sectigo
  dcv: {method: dns, provider: knot}
  deploy: {dir: %[4]s/live, keep: 2}
certificates:
%[9]s`, schedule, w.knot.Addr, w.url, w.dir, w.knot.KeyName, extra, w.web, w.webroot, certs)
}

func (w *sectigoWorld) verifyLive(t *testing.T, name, host string) {
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

// noLeftovers: no DCV artefact live in the journal, no CSR-hash CNAME left
// in Knot, no token file in the webroot, and the foreign records intact.
func mustOrderID(owner string) int64 {
	id, _ := strconv.ParseInt(strings.TrimPrefix(owner, "order:"), 10, 64)
	return id
}

func (w *sectigoWorld) noLeftovers(t *testing.T) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(w.dir, "state", "certd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if live, _ := st.LiveArtefacts(context.Background()); len(live) != 0 {
		t.Errorf("DCV artefacts still live: %+v", live)
		// Which orders own them, for the diagnosis.
		for _, a := range live {
			if id, err := strconv.ParseInt(strings.TrimPrefix(a.Owner, "order:"), 10, 64); err == nil {
				o, err := st.GetOrder(context.Background(), id)
				t.Errorf("  owner %s: %+v %v", a.Owner, o, err)
			}
		}
		for _, a := range live {
			o, _ := st.GetOrder(context.Background(), mustOrderID(a.Owner))
			evs, _ := st.ListEvents(context.Background(), store.EventFilter{CertName: o.CertName})
			for _, e := range evs {
				t.Logf("  event %s %s %s: %s", e.At.Format("15:04:05.000"), e.CertName, e.Kind, e.Message)
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(w.webroot, ".well-known", "pki-validation", "*"))
	if len(files) != 0 {
		t.Errorf("token files left in the webroot: %v", files)
	}
	if got := w.knot.TXT(t, "example.com"); len(got) != 1 || got[0] != "v=spf1 -all" {
		t.Errorf("foreign TXT at example.com: %v", got)
	}
	if got := strings.TrimSuffix(w.knot.CNAME(t, "_foreign.example.com"), "."); got != "elsewhere.example.net" {
		t.Errorf("foreign CNAME: %q", got)
	}
}

// Sectigo end to end: a CNAME proof, an HTTP file through nginx, and one
// multi-domain order with both methods; each published before the order,
// checked for real by the simulator, removed after issuance.
func TestSectigoEndToEnd(t *testing.T) {
	t.Parallel()
	w := newSectigoWorld(t)
	cfg := filepath.Join(w.dir, "certd.yaml")
	writeFile(t, cfg, w.config("@every 1h", "    order_wait: 20s\n    poll_interval: 1s", `
  - {name: cn, domains: [cn.example.com]}
  - {name: web, domains: [web.example.com], dcv: {method: http, target: web}}
  - name: multi
    domains: [a.example.com, b.example.com]
    domain_dcv:
      b.example.com: {method: http, target: web}
`))
	code, out, took := runOnceBin(t, cfg)
	if code != exitOK {
		t.Fatalf("run -once: exit %d after %s\n%s", code, took, out)
	}
	for name, host := range map[string]string{"cn": "cn.example.com", "web": "web.example.com", "multi": "b.example.com"} {
		w.verifyLive(t, name, host)
	}
	for _, names := range [][]string{{"cn.example.com"}, {"web.example.com"}, {"a.example.com", "b.example.com"}} {
		if n := w.sim.OrdersFor(names); n != 1 {
			t.Errorf("%v: %d paid orders, want 1", names, n)
		}
	}
	w.noLeftovers(t)
	if strings.Contains(out, "e2e-password") {
		t.Error("the login password reached the log")
	}
	// A second run orders nothing.
	if code, out, _ := runOnceBin(t, cfg); code != exitOK || len(w.sim.Ledger()) != 3 {
		t.Fatalf("second run: exit %d, ledger %d\n%s", code, len(w.sim.Ledger()), out)
	}
}

// A check that fails at Sectigo (an artefact found wrong or late) is asked
// again within the same paid order: one order in the ledger.
func TestSectigoFailedCheckIsAskedAgainNotReordered(t *testing.T) {
	t.Parallel()
	w := newSectigoWorld(t)
	cfg := filepath.Join(w.dir, "certd.yaml")
	writeFile(t, cfg, w.config("@every 1s", "    order_wait: 10s\n    poll_interval: 1s", "  - {name: cn, domains: [cn.example.com]}\n"))
	w.sim.FailChecksOf("cn.example.com", 1)
	cmd := exec.Command(binary(t), "run", "-config", cfg)
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	waitValid(t, filepath.Join(w.dir, "state", "certd.db"), &logs, "cn")
	if n := w.sim.OrdersFor([]string{"cn.example.com"}); n != 1 {
		t.Fatalf("%d paid orders, want 1", n)
	}
	if w.sim.Requests("AutoUpdateDCV")+w.sim.Requests("ResendDCVEmail") == 0 {
		t.Fatalf("the failed check was never asked again; log:\n%s", logs.String())
	}
	w.verifyLive(t, "cn", "cn.example.com")
}

// certd SIGKILLed at random instants while it orders from Sectigo. An
// order whose answer was lost cannot be looked up at Sectigo: it waits for
// an operator (needs-operator), never a second apply. The operator then
// says what the ledger shows (found or absent) and every certificate ends
// valid with one paid order.
func TestSectigoKilledAtRandomInstantsNeverAppliesTwice(t *testing.T) {
	t.Parallel()
	certs, kills := 20, 10
	if v, _ := strconv.Atoi(os.Getenv("CERTD_CHAOS_CERTS")); v > 0 {
		certs = v
	}
	if v, _ := strconv.Atoi(os.Getenv("CERTD_CHAOS_KILLS")); v > 0 {
		kills = v
	}
	w := newSectigoWorld(t)
	var b strings.Builder
	var names []string
	for i := range certs {
		fmt.Fprintf(&b, "  - {name: s%d, domains: [s%d.example.com]}\n", i, i)
		names = append(names, fmt.Sprintf("s%d", i))
	}
	cfg := filepath.Join(w.dir, "certd.yaml")
	writeFile(t, cfg, w.config("@every 1s", "    order_wait: 5s\n    poll_interval: 1s", b.String()))
	// One answer is lost for certain, besides what the kills lose.
	w.sim.InjectFault("AutoApplySSL", sectigosim.Fault{DropAfterCommit: true})
	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, 5))
	for range kills {
		cmd := exec.Command(binary(t), "run", "-config", cfg)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rnd.Int64N(int64(2500 * time.Millisecond))))
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	// A run settles what it can; orders it cannot settle need an operator.
	_, _, _ = runOnceBin(t, cfg)
	ledger := map[string]string{}
	for _, e := range w.sim.Ledger() {
		if len(e.DNSNames) == 1 {
			ledger[e.DNSNames[0]] = e.OrderNumber
		}
	}
	dbPath := filepath.Join(w.dir, "state", "certd.db")
	st, err := store.Open(context.Background(), dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	open, _ := st.OpenOrders(context.Background())
	st.Close()
	resolved := 0
	for _, o := range open {
		if o.State != store.OrderAmbiguous {
			continue
		}
		var out, errb strings.Builder
		args := []string{"orders", "absent", "-config", cfg, o.CertName}
		if ref, ok := ledger[o.CertName+".example.com"]; ok {
			args = []string{"orders", "found", "-config", cfg, o.CertName, ref}
		}
		if code := run(args, &out, &errb); code != exitOK {
			t.Fatalf("%v: %d %s", args, code, errb.String())
		}
		resolved++
	}
	if resolved == 0 {
		t.Fatal("no order waited for an operator although an answer was lost")
	}
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("the run after the operator (seed %d): %d\n%s", seed, code, out)
	}
	maxOrders := 0
	for i := range certs {
		n := w.sim.OrdersFor([]string{fmt.Sprintf("s%d.example.com", i)})
		maxOrders = max(maxOrders, n)
		if n != 1 {
			t.Errorf("s%d: %d paid orders, want 1 (N1, seed %d)", i, n, seed)
		}
		w.verifyLive(t, fmt.Sprintf("s%d", i), fmt.Sprintf("s%d.example.com", i))
	}
	w.noLeftovers(t)
	t.Logf("sectigo kill campaign: kills=%d certificates=%d ledger=%d max_orders_per_certificate=%d resolved_by_operator=%d seed=%d",
		kills, certs, len(w.sim.Ledger()), maxOrders, resolved, seed)
}

// Killed after the certificate was stored but before its order was ended:
// the next run deploys the stored certificate and ends the order too, so
// its proofs are removed (N6) and the next renewal places a new order
// instead of collecting the same certificate again.
func TestSectigoKilledAfterTheCertificateWasStoredEndsItsOrder(t *testing.T) {
	t.Parallel()
	w := newSectigoWorld(t)
	cfg := filepath.Join(w.dir, "certd.yaml")
	writeFile(t, cfg, w.config("@every 1h", "    order_wait: 10s\n    poll_interval: 1s", "  - {name: kv, domains: [kv.example.com]}\n"))
	cmd := exec.Command(binary(t), "run", "-once", "-config", cfg)
	cmd.Env = append(os.Environ(), "CERTD_FAILPOINT="+failpoint.OrderAfterVersion)
	out, err := cmd.CombinedOutput()
	if code := exitCode(err); code != -1 {
		t.Fatalf("the failpoint did not kill certd (exit %d):\n%s", code, out)
	}
	if code, logs, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("run -once after the kill: exit %d\n%s", code, logs)
	}
	w.verifyLive(t, "kv", "kv.example.com")
	if n := w.sim.OrdersFor([]string{"kv.example.com"}); n != 1 {
		t.Fatalf("%d paid orders, want 1", n)
	}
	st, err := store.Open(context.Background(), filepath.Join(w.dir, "state", "certd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	open, _ := st.OpenOrders(context.Background())
	st.Close()
	if len(open) != 0 {
		t.Errorf("the order of the stored certificate is still open: %+v", open)
	}
	w.noLeftovers(t)
}
