package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certd/certd/ca/atlas/atlassim"
	"github.com/certd/certd/ca/markmonitor/mmsim"
	"github.com/certd/certd/ca/reseller/resellersim"
	"github.com/certd/certd/ca/sectigo/sectigosim"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/store"
)

// The CA fault campaign (issue 18): every commercial CA and ACME (Pebble,
// behind testenv's fault proxy), through the real binary, answers one request at its submit step or its status step with
// each way a CA (or what stands in front of it) fails: it hangs after
// committing, answers 5xx, 429 with Retry-After, a 2xx cut mid-body, or
// an HTML error page. certd must end the pass in bounded time without
// crashing, say what went wrong (no raw HTML), never buy a certificate
// twice (N1), and once the fault is gone issue and deploy a set that
// verifies.

// caFault is one way a CA answer fails, in each simulator's Fault terms.
type caFault struct {
	name       string
	status     int
	retryAfter time.Duration
	hang       bool
	truncate   bool
	html       bool
	steps      []string // where it is injected (default: every step)
}

var caFaults = []caFault{
	{name: "hang", hang: true},
	{name: "5xx", status: 503},
	{name: "429", status: 429, retryAfter: time.Second},
	{name: "truncated", truncate: true},
	{name: "html", html: true, status: 502},
	// A proxy's page with 200 OK: at the submit step the order was never
	// passed on, but certd cannot know that: it is ambiguous, looked up,
	// found absent, and ordered once.
	{name: "html200", html: true},
}

// faultCA is one simulator as this campaign drives it.
type faultCA struct {
	account string
	routes  map[string]string // step -> route (or API name)
	// bodyless steps answer 2xx with no body (Atlas's 201 to POST
	// /certificates names the order in Location): a cut body loses
	// nothing, and certd rightly carries on without a word.
	bodyless map[string]bool
	// retriedUnseen are the faults (step/name) a CA client library
	// retries inside the pass without a word certd can log (none now:
	// acmez's retries reach ca/acme's logger).
	retriedUnseen map[string]bool
	inject        func(route string, f caFault)
	sim           interface {
		OrdersFor(names []string) int
		Requests(route string) int
	}
}

func faultCAs(w *chaosWorld) []faultCA {
	return []faultCA{
		{"atlas", map[string]string{"submit": "POST /certificates", "status": "GET /certificates/{serial}"}, map[string]bool{"submit": true}, nil,
			func(route string, f caFault) {
				w.atlas.InjectFault(route, atlassim.Fault{Status: f.status, RetryAfter: f.retryAfter, Hang: f.hang, Truncate: f.truncate, HTML: f.html})
			}, w.atlas},
		{"sectigo", map[string]string{"submit": "AutoApplySSL", "status": "CollectSSL"}, nil, nil,
			func(route string, f caFault) {
				w.sectigo.InjectFault(route, sectigosim.Fault{Status: f.status, RetryAfter: f.retryAfter, Hang: f.hang, Truncate: f.truncate, HTML: f.html})
			}, w.sectigo},
		{"reseller", map[string]string{"submit": "POST /ssl-certificate", "status": "GET /ssl-certificate/{id}"}, nil, nil,
			func(route string, f caFault) {
				w.reseller.InjectFault(route, resellersim.Fault{Status: f.status, RetryAfter: f.retryAfter, Hang: f.hang, Truncate: f.truncate, HTML: f.html})
			}, w.reseller},
		{"mm", map[string]string{"submit": mmsim.RouteCreateOrder, "status": mmsim.RouteGetOrder}, nil, nil,
			func(route string, f caFault) {
				w.mm.InjectFault(route, mmsim.Fault{Status: f.status, RetryAfter: f.retryAfter, Hang: f.hang, Truncate: f.truncate, HTML: f.html})
			}, w.mm},
	}
}

// acmeFaultCA is Pebble behind testenv's fault proxy: its submit step is
// newOrder, its status step the order's POST-as-GET; what N1 counts is
// the certificates Pebble issued (an ACME order costs nothing until it
// is finalized).
func acmeFaultCA(t *testing.T, w *chaosWorld) (faultCA, string) {
	t.Helper()
	p := testenv.StartPebble(t, testenv.PebbleOptions{DNSServer: w.knot.Addr,
		Env: []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}})
	proxy := testenv.StartACMEFaultProxy(t, p)
	roots := p.RootsFile(t)
	w.roots.AppendCertsFromPEM(mustReadFile(t, roots))
	block := fmt.Sprintf(`  acme:
    type: acme
    directory: %s
    email: hostmaster@example.com
    ca: %s
    roots: %s
    request_timeout: %s
`, proxy.Directory, p.TLSCA, roots, requestTimeout)
	return faultCA{"acme", map[string]string{"submit": testenv.ACMERouteNewOrder, "status": testenv.ACMERouteOrder}, nil,
		nil, // acmez's own retries are logged through ca/acme's logger
		func(route string, f caFault) {
			proxy.InjectFault(route, testenv.ACMEFault{Status: f.status, RetryAfter: f.retryAfter, Hang: f.hang, Truncate: f.truncate, HTML: f.html})
		}, proxy}, block
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// requestTimeout is the accounts' request_timeout here: a hang costs this.
const requestTimeout = 2 * time.Second

// faultCaseConfig is the chaos world's accounts with one certificate,
// its own store, and short request timeouts.
func faultCaseConfig(t *testing.T, w *chaosWorld, dir, account, name, acmeBlock string) string {
	t.Helper()
	cfg := w.config(0, 5*time.Second) // how long an absent order may still appear
	cfg = strings.ReplaceAll(cfg, "file:", "file:"+w.dir+"/")
	cfg = strings.ReplaceAll(cfg, "    order_wait: 2s\n", fmt.Sprintf("    order_wait: 2s\n    request_timeout: %s\n", requestTimeout))
	if strings.Count(cfg, "request_timeout") != len(chaosCAs) {
		t.Fatalf("request_timeout not set on every account:\n%s", cfg)
	}
	cfg = strings.Replace(cfg, "\ndns:\n", "\n"+acmeBlock+"dns:\n", 1)
	cfg += fmt.Sprintf("  - {name: %s, account: %s, domains: [%s.example.com]}\n", name, account, name)
	path := filepath.Join(dir, "certd.yaml")
	writeFile(t, path, cfg)
	return path
}

// runBounded runs certd with args and kills it if it outlives limit.
func runBounded(t *testing.T, limit time.Duration, args ...string) (code int, out string, took time.Duration, hung bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	b, err := exec.CommandContext(ctx, binary(t), args...).CombinedOutput()
	return exitCode(err), string(b), time.Since(start), errors.Is(ctx.Err(), context.DeadlineExceeded)
}

func TestCAFaultsEveryCAEveryFaultEveryStep(t *testing.T) {
	t.Parallel()
	w := newChaosWorld(t, 0)
	acme, acmeBlock := acmeFaultCA(t, w)
	start := time.Now()
	for _, ca := range append(faultCAs(w), acme) {
		t.Run(ca.account, func(t *testing.T) {
			t.Parallel()
			// Cases of one CA run in turn: a fault is queued on a route,
			// not on a certificate.
			for _, step := range []string{"submit", "status"} {
				for _, f := range caFaults {
					if f.steps != nil && !slices.Contains(f.steps, step) {
						continue
					}
					t.Run(step+"/"+f.name, func(t *testing.T) {
						faultCase(t, w, ca, step, f, acmeBlock)
					})
				}
			}
		})
	}
	t.Cleanup(func() {
		t.Logf("CA fault campaign: %d CAs × %d faults at up to 2 steps in %s", len(chaosCAs)+1, len(caFaults), time.Since(start).Round(time.Second))
	})
}

func faultCase(t *testing.T, w *chaosWorld, ca faultCA, step string, f caFault, acmeBlock string) {
	name := fmt.Sprintf("%s-%s-%s", ca.account, step, f.name)
	host := name + ".example.com"
	dir := filepath.Join(w.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := faultCaseConfig(t, w, dir, ca.account, name, acmeBlock)
	route := ca.routes[step]
	before := ca.sim.Requests(route)
	ca.inject(route, f)

	// The faulty pass: bounded, no crash, the fault met and reported.
	code, out, took, hung := runBounded(t, 30*time.Second, "run", "-once", "-config", cfg)
	if hung {
		t.Fatalf("run -once still running after %s under %s at %s:\n%s", took, f.name, step, tailString(out, 4000))
	}
	if code != exitOK && code != exitFailure || strings.Contains(out, "panic:") {
		t.Fatalf("run -once crashed (exit %d):\n%s", code, tailString(out, 4000))
	}
	if ca.sim.Requests(route) == before {
		t.Fatalf("%s was never called: the fault was not met\n%s", route, tailString(out, 4000))
	}
	if code == exitOK && !reportsTrouble(out) && !(f.truncate && ca.bodyless[step]) && !ca.retriedUnseen[step+"/"+f.name] {
		t.Errorf("the %s fault at %s left no trace: exit 0 and no warning or error logged\n%s", f.name, step, tailString(out, 4000))
	}
	if f.hang && took < requestTimeout {
		t.Errorf("the pass took %s, less than the request timeout %s: the hang was not waited for", took, requestTimeout)
	}
	if strings.Contains(strings.ToLower(out), "<html") || strings.Contains(out, "<center>") {
		t.Errorf("an HTML page is shown raw in certd's output:\n%s", tailString(out, 4000))
	}
	if n := ca.sim.OrdersFor([]string{host}); n > 1 {
		t.Fatalf("%d paid orders after the fault, want at most 1 (N1)\n%s", n, tailString(out, 4000))
	}

	// N8: a certificate the pass did not finish has its next attempt
	// scheduled (a persisted retry), or waits loudly for a person.
	dbPath := filepath.Join(dir, "state", "certd.db")
	if st, err := store.Open(context.Background(), dbPath, store.Options{}); err != nil {
		t.Fatal(err)
	} else {
		c, err := st.GetCertificate(context.Background(), name)
		st.Close()
		switch {
		case err != nil:
			t.Fatalf("%s not in the store after the faulty pass: %v", name, err)
		case c.State == store.StateNeedsOperator:
			if code == exitOK {
				t.Errorf("%s needs an operator but run -once exited 0", name)
			}
		case c.State != store.StateValid && c.NextActionAt.IsZero():
			t.Errorf("%s is %s with no next attempt scheduled (N8)", name, c.State)
		}
	}

	// The fault is gone: certd finishes the certificate, as an operator
	// would have it do now rather than at the next backoff.
	logs := out
	for try := 0; !allValid(dbPath, []string{name}); try++ {
		if try == 4 {
			t.Fatalf("%s not valid after the fault cleared; log:\n%s", name, tailString(logs, 6000))
		}
		time.Sleep(f.retryAfter)
		resolveAmbiguousByLedger(t, w, cfg, dbPath, name)
		code, out, took, hung = runBounded(t, 30*time.Second, "renew", "-config", cfg, name)
		logs += out
		if hung || strings.Contains(out, "panic:") {
			t.Fatalf("renew hung or crashed (exit %d, %s):\n%s", code, took, tailString(out, 4000))
		}
	}
	if n := ca.sim.OrdersFor([]string{host}); n != 1 {
		t.Errorf("%d paid orders for %s, want exactly 1 (N1)\n%s", n, host, tailString(logs, 6000))
	}
	verifyLiveSet(t, w, name, host)
}

// reportsTrouble reports whether a JSON log holds a warning or error
// about the work (the notifier's standing "no channel configured"
// warning aside).
func reportsTrouble(log string) bool {
	for _, line := range strings.Split(log, "\n") {
		if (strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`)) && !strings.Contains(line, `"logger":"notify"`) {
			return true
		}
	}
	return false
}

// resolveAmbiguousByLedger settles, as an operator would from the CA's
// portal, an order certd holds as ambiguous and cannot look up by itself
// (Sectigo has no search by client reference): found with its number, or
// absent.
func resolveAmbiguousByLedger(t *testing.T, w *chaosWorld, cfg, dbPath, name string) {
	t.Helper()
	if !strings.HasPrefix(name, "sectigo") {
		return
	}
	st, err := store.Open(context.Background(), dbPath, store.Options{})
	if err != nil {
		return // no store yet
	}
	open, _ := st.OpenOrders(context.Background())
	st.Close()
	for _, o := range open {
		if o.CertName != name || o.State != store.OrderAmbiguous {
			continue
		}
		args := []string{"orders", "absent", "-config", cfg, name}
		for _, e := range w.sectigo.Ledger() {
			if !e.Replace && len(e.DNSNames) == 1 && e.DNSNames[0] == name+".example.com" {
				args = []string{"orders", "found", "-config", cfg, name, e.OrderNumber}
			}
		}
		var out, errb strings.Builder
		if code := run(args, &out, &errb); code != exitOK {
			t.Fatalf("%v: %d %s", args, code, errb.String())
		}
		t.Logf("operator: %v", args)
	}
}

// verifyLiveSet checks the deployed set of name against every
// simulator's root, for host.
func verifyLiveSet(t *testing.T, w *chaosWorld, name, host string) {
	t.Helper()
	live := filepath.Join(w.dir, "live", name)
	leaf := readCert(t, filepath.Join(live, "cert.pem"))
	inter := x509.NewCertPool()
	chainPEM, _ := os.ReadFile(filepath.Join(live, "chain.pem"))
	inter.AppendCertsFromPEM(chainPEM)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: w.roots, Intermediates: inter}); err != nil {
		t.Errorf("%s: the deployed set does not verify: %v", name, err)
	}
}
