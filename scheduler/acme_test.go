package scheduler_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/libdns/rfc2136"
	acmez "github.com/mholt/acmez/v3/acme"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/acme"
	"github.com/certd/certd/ca/acme/acmetest"
	"github.com/certd/certd/ca/catest"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/providers"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// pebbleEAB is the binding every Pebble in these tests requires.
var pebbleEAB = map[string]string{"kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"}

// acmeWorld is ACME issuance against real servers: Knot (authoritative
// for example.com, taking RFC 2136 updates; Pebble asks it directly and
// does not recurse, so delegation stays inside the zone), Debian's Pebble validating over that DNS, the built-in
// responder on Pebble's http-01 port, and certd's store, engine, deployer.
type acmeWorld struct {
	knot    *testenv.Knot
	pebble  *testenv.Pebble
	proxy   *acmetest.Proxy
	st      *store.SQLite
	engine  *dcv.Engine
	resp    *providers.Responder
	webroot string
	dir     string
	domains []string
	proofs  map[string]scheduler.Proof
	tune    func(*acme.Options) // issuer options a test sets (a profile)
}

type acmeOpts struct {
	validity time.Duration
	env      []string // Pebble settings; none: Pebble's defaults
	proxy    bool     // put acmetest's proxy (ARI) in front
	nginx    bool     // http-01 through a webroot served by nginx, not the responder
	// pebble210: Pebble v2.10.3 (profiles, IP identifiers, renewalInfo)
	// instead of Debian's 2.4, with these profiles (default: Pebble's own).
	pebble210 bool
	profiles  map[string]testenv.PebbleProfile
}

func newACMEWorld(t testing.TB, o acmeOpts) *acmeWorld {
	t.Helper()
	w := &acmeWorld{dir: t.TempDir(), domains: []string{"www.example.com"}}
	w.knot = testenv.StartKnot(t, map[string]string{
		"example.com": testenv.Zone("example.com", "www A 127.0.0.1", "app A 127.0.0.1", "_acme-challenge.app CNAME app.acme-dns.example.com."),
		"example.net": testenv.Zone("example.net"),
	})
	po := testenv.PebbleOptions{DNSServer: w.knot.Addr, EAB: pebbleEAB, Validity: o.validity, Env: o.env, Profiles: o.profiles}
	if o.pebble210 {
		w.pebble = testenv.StartPebble210(t, po)
	} else {
		w.pebble = testenv.StartPebble(t, po)
	}
	if o.proxy {
		caPEM, err := os.ReadFile(w.pebble.TLSCA)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		if w.proxy, err = acmetest.New(w.pebble.Directory, &tls.Config{RootCAs: pool}, w.dir); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.proxy.Close)
	}
	var err error
	if w.st, err = store.Open(ctx, filepath.Join(w.dir, "certd.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.st.Close() })
	httpAddr := fmt.Sprintf("127.0.0.1:%d", w.pebble.HTTPPort)
	var web dcv.HTTPTarget
	if o.nginx {
		w.webroot = filepath.Join(w.dir, "htdocs")
		if err := os.Mkdir(w.webroot, 0o755); err != nil {
			t.Fatal(err)
		}
		testenv.StartNginx(t, fmt.Sprintf("server { listen %s; root %s; }", httpAddr, w.webroot))
		testenv.WaitListening(t, httpAddr)
		web = &providers.Webroot{Root: w.webroot}
	} else {
		w.resp = providers.NewResponder(httpAddr)
		ln, err := net.Listen("tcp", w.resp.Addr)
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go func() { _ = w.resp.Serve(rctx, ln) }()
		web = w.resp
	}
	prov := &rfc2136.Provider{Server: w.knot.Addr, KeyName: w.knot.KeyName, KeyAlg: w.knot.KeyAlg, Key: w.knot.Secret}
	w.engine, err = dcv.NewEngine(dcv.Options{
		DNS: map[string]dcv.DNSProvider{"knot": prov}, HTTP: map[string]dcv.HTTPTarget{"web": web},
		Journal: journal{w.st}, Resolvers: []string{w.knot.Addr}, AuthServers: map[string][]string{"knot": {w.knot.Addr}},
		HTTPDial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, httpAddr)
		},
		Timeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.proofs = map[string]scheduler.Proof{
		"www.example.com": {CA: ca.Proof{Method: dcv.DNSTXT}, Target: dcv.Target{DNS: "knot"}},
	}
	return w
}

// accounts keeps ACME accounts in the store (as cmd/certd does).
type accounts struct{ s *store.SQLite }

func (a accounts) LoadAccount(ctx context.Context, name, dir string) (acme.AccountRecord, bool, error) {
	r, err := a.s.GetCAAccount(ctx, name, dir)
	if errors.Is(err, store.ErrNotFound) {
		return acme.AccountRecord{}, false, nil
	}
	return acme.AccountRecord{Name: r.Account, Directory: r.Endpoint, KeyPEM: r.KeyPEM, URL: r.Ref, EABKeyID: r.BindingID}, err == nil, err
}

func (a accounts) SaveAccount(ctx context.Context, r acme.AccountRecord) error {
	return a.s.SaveCAAccount(ctx, store.CAAccount{Account: r.Name, Endpoint: r.Directory, KeyPEM: r.KeyPEM, Ref: r.URL, BindingID: r.EABKeyID})
}

// issuer is a new ACME issuer over the world's store: a new one models a
// restart of certd.
func (w *acmeWorld) issuer(t testing.TB) *acme.Issuer {
	t.Helper()
	dirURL, caFile := w.pebble.Directory, w.pebble.TLSCA
	if w.proxy != nil {
		dirURL, caFile = w.proxy.Directory, w.proxy.CAFile
	}
	macKey, err := acme.DecodeMACKey(pebbleEAB["kid-1"])
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	rootsPEM, _ := os.ReadFile(w.pebble.RootsFile(t))
	roots, err := parseCerts(rootsPEM)
	if err != nil {
		t.Fatal(err)
	}
	opts := acme.Options{Name: "pebble", Directory: dirURL, Accounts: accounts{w.st}, Roots: roots,
		EAB:        &acme.EABKey{KeyID: "kid-1", MACKey: macKey},
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	if w.tune != nil {
		w.tune(&opts)
	}
	iss, err := acme.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func (w *acmeWorld) plan(iss ca.Issuer) scheduler.Plan {
	return scheduler.Plan{
		Spec:   scheduler.CertSpec{Name: "www", Account: "pebble", Domains: w.domains, KeyType: "ecdsa-p256"},
		Issuer: iss, Engine: w.engine, Policy: scheduler.Policy{RemainingFraction: 1.0 / 3},
		Deploy: deploy.Spec{Name: "www", Dir: filepath.Join(w.dir, "live"), CertMode: 0o644, KeyMode: 0o600, Keep: 2},
		Proofs: w.proofs,
	}
}

func (w *acmeWorld) issuing(st scheduler.IssueStore, iss ca.Issuer) *scheduler.Issuing {
	return &scheduler.Issuing{Store: st, Plans: func(string) (scheduler.Plan, error) { return w.plan(iss), nil },
		Deployer: &deploy.Deployer{}, ARIMinRecheck: time.Second}
}

func (w *acmeWorld) due(t testing.TB) store.Certificate {
	t.Helper()
	s, err := scheduler.New(scheduler.Options{Store: w.st, Work: func(context.Context, store.Certificate) error { return nil }, Schedule: "@every 1h"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, []scheduler.CertSpec{w.plan(nil).Spec}); err != nil {
		t.Fatal(err)
	}
	c, err := w.st.GetCertificate(ctx, "www")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkIssued: the live set verifies to Pebble's root for the stored key
// and names, and every challenge record is gone from Knot (N6).
func (w *acmeWorld) checkIssued(t testing.TB) store.Certificate {
	t.Helper()
	c, err := w.st.GetCertificate(ctx, "www")
	if err != nil {
		t.Fatal(err)
	}
	if c.State != store.StateValid || c.Current == nil {
		t.Fatalf("certificate not valid: %+v", c)
	}
	live := deploy.Inspect(w.plan(nil).Deploy)
	if live.Missing || !live.KeyMatches || live.Fingerprint != c.Current.Fingerprint {
		t.Fatalf("live set: %+v", live)
	}
	pemData, err := os.ReadFile(filepath.Join(w.plan(nil).Deploy.LivePath(), deploy.FullchainFile))
	if err != nil {
		t.Fatal(err)
	}
	chain, err := parseCerts(pemData)
	if err != nil || len(chain) < 2 {
		t.Fatalf("fullchain: %d certificates, %v", len(chain), err)
	}
	rootsPEM, _ := os.ReadFile(w.pebble.RootsFile(t))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootsPEM)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
		t.Fatalf("the deployed chain does not verify to Pebble's root: %v", err)
	}
	got := slices.Clone(chain[0].DNSNames)
	slices.Sort(got)
	want := slices.Clone(w.domains)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("names %v, want %v", got, want)
	}
	for _, d := range w.domains {
		base := strings.TrimPrefix(d, "*.")
		if txt := w.knot.TXT(t, "_acme-challenge."+base); len(txt) != 0 {
			t.Fatalf("challenge TXT left behind at _acme-challenge.%s: %v", base, txt)
		}
	}
	if txt := w.knot.TXT(t, "app.acme-dns.example.com"); len(txt) != 0 {
		t.Fatalf("delegated challenge TXT left behind: %v", txt)
	}
	arts, err := w.st.LiveArtefacts(ctx)
	if err != nil || len(arts) != 0 {
		t.Fatalf("artefacts still live: %v %v", arts, err)
	}
	return c
}

func orderCount(t testing.TB, iss *acme.Issuer) int {
	t.Helper()
	urls, listed, err := iss.Orders(ctx)
	if err != nil || !listed {
		t.Fatalf("listing Pebble's orders: listed=%v %v", listed, err)
	}
	return len(urls)
}

var fastPebble = []string{"PEBBLE_VA_SLEEPTIME=2"}

func TestACMEIssuesOverDNS01WithEAB(t *testing.T) {
	t.Parallel()
	w := newACMEWorld(t, acmeOpts{env: fastPebble})
	// A wildcard and a name proved through CNAME delegation into
	// example.net, beside the plain name.
	w.domains = []string{"www.example.com", "*.www.example.com", "app.example.com"}
	w.proofs["*.www.example.com"] = scheduler.Proof{CA: ca.Proof{Method: dcv.DNSTXT}, Target: dcv.Target{DNS: "knot"}}
	w.proofs["app.example.com"] = scheduler.Proof{CA: ca.Proof{Method: dcv.DNSTXT}, Target: dcv.Target{DNS: "knot", Delegate: "app.acme-dns.example.com"}}
	iss := w.issuer(t)
	c := w.due(t)
	if err := w.issuing(w.st, iss).Work(ctx, c); err != nil {
		t.Fatalf("%v\npebble log:\n%s", err, tail(w.pebble.Log()))
	}
	c = w.checkIssued(t)
	if n := orderCount(t, iss); n != 1 {
		t.Fatalf("Pebble lists %d orders, want 1", n)
	}
	// Pebble has no renewalInfo: the local renewal time stands.
	if want := scheduler.RenewalTime(c.Current.NotBefore, c.Current.NotAfter, scheduler.Policy{RemainingFraction: 1.0 / 3}, 0); c.NextAction != scheduler.ActionRenew || c.NextActionAt.Before(want.Add(-time.Duration(float64(c.Current.NotAfter.Sub(want))*0.11))) || c.NextActionAt.After(want) {
		t.Fatalf("without ARI: next %s at %s, want renew at about %s", c.NextAction, c.NextActionAt, want)
	}
	// The account key is stored, and a restart reuses the account.
	a, err := w.st.GetCAAccount(ctx, "pebble", w.pebble.Directory)
	if err != nil || a.Ref == "" || a.BindingID != "kid-1" {
		t.Fatalf("stored account: %+v %v", a, err)
	}
	again := w.issuer(t)
	if n := orderCount(t, again); n != 1 {
		t.Fatalf("a restarted issuer sees %d orders: a new account was registered?", n)
	}
	if a2, _ := w.st.GetCAAccount(ctx, "pebble", w.pebble.Directory); a2.Ref != a.Ref {
		t.Fatalf("account URL changed: %s -> %s", a.Ref, a2.Ref)
	}
}

func TestACMEIssuesOverHTTP01(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		nginx bool
	}{{"responder", false}, {"nginx webroot", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testHTTP01(t, tc.nginx)
		})
	}
}

func testHTTP01(t *testing.T, nginx bool) {
	w := newACMEWorld(t, acmeOpts{env: fastPebble, nginx: nginx})
	w.domains = []string{"www.example.com", "app.example.com"}
	w.proofs = map[string]scheduler.Proof{
		"www.example.com": {CA: ca.Proof{Method: dcv.HTTPFile}, Target: dcv.Target{HTTP: "web"}},
		"app.example.com": {CA: ca.Proof{Method: dcv.HTTPFile}, Target: dcv.Target{HTTP: "web"}},
	}
	iss := w.issuer(t)
	if err := w.issuing(w.st, iss).Work(ctx, w.due(t)); err != nil {
		t.Fatalf("%v\npebble log:\n%s", err, tail(w.pebble.Log()))
	}
	w.checkIssued(t)
	db := openRaw(t, filepath.Join(w.dir, "certd.db"))
	defer db.Close()
	var files int
	if err := db.QueryRow("SELECT count(*) FROM dcv_artefacts WHERE kind = 'http-file' AND name LIKE '/.well-known/acme-challenge/%' AND state = 'removed'").Scan(&files); err != nil || files != 2 {
		t.Fatalf("%d http-01 token files served and removed, want 2 (%v)", files, err)
	}
	if nginx {
		left, _ := filepath.Glob(filepath.Join(w.webroot, ".well-known", "acme-challenge", "*"))
		if len(left) != 0 {
			t.Fatalf("token files left in the webroot: %v", left)
		}
	}
}

func TestACMEWithoutEABIsRefused(t *testing.T) {
	t.Parallel()
	w := newACMEWorld(t, acmeOpts{env: fastPebble})
	caPEM, _ := os.ReadFile(w.pebble.TLSCA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, tc := range []struct {
		name string
		eab  *acme.EABKey
		want string
	}{
		{"none", nil, "externalAccountRequired"},
		{"wrong key", &acme.EABKey{KeyID: "kid-1", MACKey: []byte("not the key")}, "unauthorized"},
	} {
		iss, err := acme.New(acme.Options{Name: tc.name, Directory: w.pebble.Directory, Accounts: accounts{w.st}, EAB: tc.eab, HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		_, err = iss.Submit(ctx, ca.Request{Domains: []string{"www.example.com"}})
		var ae *acme.Error
		if !errors.As(err, &ae) || !strings.Contains(ae.Code, tc.want) {
			t.Fatalf("%s: %v, want an ACME %s problem", tc.name, err, tc.want)
		}
		if strings.Contains(err.Error(), pebbleEAB["kid-1"]) {
			t.Fatal("the HMAC key appears in an error")
		}
	}
}

// A crash between Pebble's answer to newOrder and storing the order URL:
// the restarted certd finds the order in the account's order list and
// finishes it; Pebble's list shows one order.
func TestACMERestartBetweenNewOrderAndStoringItResumes(t *testing.T) {
	t.Parallel()
	w := newACMEWorld(t, acmeOpts{env: fastPebble})
	c := w.due(t)
	crash := &crashingStore{SQLite: w.st}
	if err := w.issuing(crash, w.issuer(t)).Work(ctx, c); err == nil {
		t.Fatal("expected the simulated crash")
	}
	if o, _ := w.st.LatestOrder(ctx, "www"); o.State != store.OrderIntent || o.CARef != "" {
		t.Fatalf("order after the crash: %+v", o)
	}
	iss := w.issuer(t)
	c, _ = w.st.GetCertificate(ctx, "www")
	if err := w.issuing(w.st, iss).Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	w.checkIssued(t)
	if n := orderCount(t, iss); n != 1 {
		t.Fatalf("Pebble lists %d orders after the restart, want 1 (N1)", n)
	}
}

// A newOrder whose answer is lost after Pebble created the order is
// ambiguous: certd never resends it, and looks it up instead.
func TestACMELostNewOrderAnswerIsLookedUpNotResent(t *testing.T) {
	t.Parallel()
	w := newACMEWorld(t, acmeOpts{env: fastPebble, proxy: true})
	c := w.due(t)
	w.proxy.DropNextNewOrder()
	iss := w.issuer(t)
	// Looked up in the same pass, found in the account's order list.
	if err := w.issuing(w.st, iss).Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	w.checkIssued(t)
	if n, o := w.proxy.NewOrders(), orderCount(t, iss); n != 1 || o != 1 {
		t.Fatalf("newOrder sent %d times, Pebble lists %d orders; want 1 and 1 (N1)", n, o)
	}
}

// A restart after the authorizations were proved but before the order was
// finalized: the order is resumed and nothing is proved again.
func TestACMERestartAfterAuthorizationResumesWithoutProvingAgain(t *testing.T) {
	t.Parallel()
	w := newACMEWorld(t, acmeOpts{env: fastPebble})
	c := w.due(t)
	iss := w.issuer(t)
	// The first run stops after the authorizations (Fetch never runs).
	stop := &stopAtFetch{Issuer: iss}
	if err := w.issuing(w.st, stop).Work(ctx, c); !errors.Is(err, errStopped) {
		t.Fatalf("first run: %v", err)
	}
	before := w.artefacts(t)
	iss2 := w.issuer(t)
	c, _ = w.st.GetCertificate(ctx, "www")
	if err := w.issuing(w.st, iss2).Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	w.checkIssued(t)
	after := w.artefacts(t)
	if before == 0 || after != before {
		t.Fatalf("challenges published: %d before the restart, %d after; want the same, non-zero", before, after)
	}
	if n := orderCount(t, iss2); n != 1 {
		t.Fatalf("Pebble lists %d orders, want 1", n)
	}
}

var errStopped = errors.New("stopped before fetching")

type stopAtFetch struct{ *acme.Issuer }

func (s *stopAtFetch) Fetch(context.Context, ca.Order, ca.Request) (*ca.Result, error) {
	return nil, errStopped
}

// artefacts counts the challenges ever journaled for the certificate.
func (w *acmeWorld) artefacts(t *testing.T) int {
	t.Helper()
	db := openRaw(t, filepath.Join(w.dir, "certd.db"))
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM dcv_artefacts WHERE owner LIKE 'order:%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func parseCerts(p []byte) ([]*x509.Certificate, error) { return pemutil.Certificates(p) }

func tail(s string) string {
	if len(s) > 3000 {
		return s[len(s)-3000:]
	}
	return s
}

// currentLeaf is the certificate's deployed leaf.
func (w *acmeWorld) currentLeaf(t *testing.T) *x509.Certificate {
	t.Helper()
	c, err := w.st.GetCertificate(ctx, "www")
	if err != nil {
		t.Fatal(err)
	}
	v, err := w.st.GetVersion(ctx, c.CurrentVersion)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := parseCerts(v.CertPEM)
	if err != nil || len(certs) == 0 {
		t.Fatalf("stored version: %v", err)
	}
	return certs[0]
}

// setDue makes the certificate's next action due now.
func (w *acmeWorld) setDue(t testing.TB, action string) store.Certificate {
	t.Helper()
	c, err := w.st.GetCertificate(ctx, "www")
	if err != nil {
		t.Fatal(err)
	}
	c.NextAction, c.NextActionAt = action, time.Now()
	if err := w.st.SaveCertificate(ctx, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// ARI (RFC 9773) through a proxy in front of Pebble that serves the
// renewalInfo Pebble 2.4 lacks: each answer the CA can give, and what
// certd schedules for it.
func TestACMERenewalFollowsARI(t *testing.T) {
	t.Parallel()
	w := newACMEWorld(t, acmeOpts{env: fastPebble, proxy: true, validity: time.Hour})
	iss := w.issuer(t)
	x := w.issuing(w.st, iss)
	now := time.Now()

	// 1. A window ahead: renewal is scheduled at a random time inside it.
	start, end := now.Add(20*time.Minute), now.Add(30*time.Minute)
	w.proxy.SetWindow("", acmetest.Window{Start: start, End: end, RetryAfter: 3 * 3600})
	if err := x.Work(ctx, w.due(t)); err != nil {
		t.Fatal(err)
	}
	first := w.currentLeaf(t)
	id, err := acmeID(first)
	if err != nil {
		t.Fatal(err)
	}
	if w.proxy.ARICalls(id) != 1 {
		t.Fatalf("renewalInfo asked %d times for the new certificate, want 1", w.proxy.ARICalls(id))
	}
	c, _ := w.st.GetCertificate(ctx, "www")
	if c.NextAction != scheduler.ActionRenew || c.NextActionAt.Before(start.Add(-time.Second)) || !c.NextActionAt.Before(end) {
		t.Fatalf("window %s..%s: next %s at %s", start, end, c.NextAction, c.NextActionAt)
	}
	fallback := scheduler.RenewalTime(first.NotBefore, first.NotAfter, scheduler.Policy{RemainingFraction: 1.0 / 3}, 0)

	steps := []struct {
		name       string
		win        acmetest.Window
		wantAction string
		wantAt     func(c store.Certificate) bool
	}{
		{"invalid window is ignored", acmetest.Window{Start: end, End: start},
			scheduler.ActionRenew, func(c store.Certificate) bool { return c.NextActionAt.Sub(fallback).Abs() < time.Second }},
		{"malformed answer is an error: the fallback comes first", acmetest.Window{Raw: `{"suggestedWindow": 7}`},
			scheduler.ActionRenew, func(c store.Certificate) bool { return c.NextActionAt.Sub(fallback).Abs() < time.Second }},
		{"error with Retry-After is asked again then", acmetest.Window{Status: 503, RetryAfter: 120},
			scheduler.ActionARI, func(c store.Certificate) bool {
				d := time.Until(c.NextActionAt)
				return d > 110*time.Second && d <= 120*time.Second
			}},
		{"window too late is cut to before the emergency window", acmetest.Window{Start: first.NotAfter.Add(time.Hour), End: first.NotAfter.Add(2 * time.Hour)},
			scheduler.ActionRenew, func(c store.Certificate) bool {
				e := scheduler.EmergencyTime(first.NotBefore, first.NotAfter)
				return c.NextActionAt.Before(e) && !c.NextActionAt.Before(fallback.Truncate(time.Millisecond))
			}},
	}
	for _, s := range steps {
		w.proxy.SetWindow("", s.win)
		if err := x.Work(ctx, w.setDue(t, scheduler.ActionARI)); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		c, _ := w.st.GetCertificate(ctx, "www")
		if c.NextAction != s.wantAction || !s.wantAt(c) {
			t.Fatalf("%s: next %s at %s (fallback %s)", s.name, c.NextAction, c.NextActionAt, fallback)
		}
		if c.CurrentVersion == 0 || w.currentLeaf(t).SerialNumber.Cmp(first.SerialNumber) != 0 {
			t.Fatalf("%s: the certificate was replaced", s.name)
		}
	}

	// 2. ARI failing does not block renewal: once the local renewal time
	// has passed, the certificate is renewed whatever ARI says.
	w.proxy.SetWindow("", acmetest.Window{Status: 500})
	late := &scheduler.Issuing{Store: w.st, Plans: x.Plans, Deployer: x.Deployer, ARIMinRecheck: time.Second,
		Now: func() time.Time { return fallback.Add(time.Minute) }}
	if err := late.Work(ctx, w.setDue(t, scheduler.ActionARI)); err != nil {
		t.Fatal(err)
	}
	second := w.currentLeaf(t)
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("ARI errors blocked a renewal that was due")
	}
	if rep := w.proxy.Replaces(); len(rep) != 2 || rep[0] != "" || rep[1] != id {
		t.Fatalf("replaces sent: %q, want [\"\" %q]", rep, id)
	}

	// 3. A window in the past (a mass revocation): renewed now, and a CA
	// that refuses the replaces hint gets the order without it.
	id2, _ := acmeID(second)
	w.proxy.SetWindow(id2, acmetest.Window{Start: now.Add(-2 * time.Hour), End: now.Add(-time.Hour), Explanation: "https://ca.example/incident"})
	w.proxy.RefuseReplaces()
	if err := x.Work(ctx, w.setDue(t, scheduler.ActionARI)); err != nil {
		t.Fatal(err)
	}
	third := w.currentLeaf(t)
	if third.SerialNumber.Cmp(second.SerialNumber) == 0 {
		t.Fatal("an open window in the past did not renew now")
	}
	if rep := w.proxy.Replaces(); len(rep) != 4 || rep[2] != id2 || rep[3] != "" {
		t.Fatalf("replaces sent: %q, want the refused hint then none", rep)
	}
	w.checkIssued(t)

}

func acmeID(c *x509.Certificate) (string, error) { return acmez.ARIUniqueIdentifier(c) }

// Five issuances in a row against Pebble with every default on (nonce
// rejection, authorization reuse, validation sleeps): each succeeds at
// its first attempt.
func TestACMEFiveIssuancesInARow(t *testing.T) {
	t.Parallel()
	w := newACMEWorld(t, acmeOpts{})
	w.domains = []string{"www.example.com", "app.example.com"}
	w.proofs["app.example.com"] = scheduler.Proof{CA: ca.Proof{Method: dcv.HTTPFile}, Target: dcv.Target{HTTP: "web"}}
	iss := w.issuer(t)
	x := w.issuing(w.st, iss)
	c := w.due(t)
	serials := map[string]bool{}
	for n := range 5 {
		if err := x.Work(ctx, c); err != nil {
			t.Fatalf("issuance %d: %v\n%s", n+1, err, tail(w.pebble.Log()))
		}
		c = w.checkIssued(t)
		serials[c.Current.Serial] = true
		c = w.setDue(t, scheduler.ActionRenew)
	}
	if len(serials) != 5 {
		t.Fatalf("%d distinct certificates, want 5", len(serials))
	}
	if n := orderCount(t, iss); n != 5 {
		t.Fatalf("Pebble lists %d orders, want 5", n)
	}
}

// A CA that no longer knows the stored account (a reset, a deletion):
// the attempt fails, the account is registered again with the stored key,
// and the next attempt issues.
func TestACMEForgottenAccountIsRegisteredAgain(t *testing.T) {
	t.Parallel()
	w := newACMEWorld(t, acmeOpts{env: fastPebble, proxy: true})
	iss := w.issuer(t)
	x := w.issuing(w.st, iss)
	if err := x.Work(ctx, w.due(t)); err != nil {
		t.Fatal(err)
	}
	w.proxy.ForgetAccountOnce()
	c := w.setDue(t, scheduler.ActionRenew)
	var ae *acme.Error
	if err := x.Work(ctx, c); !errors.As(err, &ae) || !strings.Contains(ae.Code, "accountDoesNotExist") {
		t.Fatalf("renewal with a forgotten account: %v", err)
	}
	c, _ = w.st.GetCertificate(ctx, "www")
	if err := x.Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	w.checkIssued(t)
	if n := w.proxy.NewAccounts(); n != 2 {
		t.Fatalf("%d registrations, want 2 (the first, and once after the CA forgot it)", n)
	}
	if a, err := w.st.GetCAAccount(ctx, "pebble", w.proxy.Directory); err != nil || a.Ref == "" {
		t.Fatalf("stored account after re-registering: %+v %v", a, err)
	}
}

// failBehindCertd removes the published TXT record before letting the CA
// check it, and "crashes" once the CA has decided: the order stays open
// in the journal while its authorization is invalid at the CA.
type failBehindCertd struct {
	*acme.Issuer
	prov *rfc2136.Provider
}

func (f *failBehindCertd) Respond(ctx context.Context, auth ca.OrderAuthorization, ch dcv.Challenge) (ca.OrderAuthorization, error) {
	rr := libdns.TXT{Name: libdns.RelativeName(ch.RecordName+".", "example.com."), Text: ch.Value}
	if _, err := f.prov.DeleteRecords(ctx, "example.com.", []libdns.Record{rr}); err != nil {
		return auth, err
	}
	got, err := f.Issuer.Respond(ctx, auth, ch)
	if err != nil || got.Status != ca.AuthInvalid {
		return got, fmt.Errorf("the CA did not fail the check: %v %v", got.Status, err)
	}
	return got, errStopped
}

// A resumed order whose authorization failed while certd was down is
// replaced by a new order in the same attempt, not after a backoff.
func TestACMEResumedOrderWithFailedAuthorizationIsReplacedAtOnce(t *testing.T) {
	t.Parallel()
	w := newACMEWorld(t, acmeOpts{env: fastPebble})
	iss := w.issuer(t)
	prov := &rfc2136.Provider{Server: w.knot.Addr, KeyName: w.knot.KeyName, KeyAlg: w.knot.KeyAlg, Key: w.knot.Secret}
	c := w.due(t)
	if err := w.issuing(w.st, &failBehindCertd{Issuer: iss, prov: prov}).Work(ctx, c); !errors.Is(err, errStopped) {
		t.Fatalf("first run: %v", err)
	}
	first, _ := w.st.LatestOrder(ctx, "www")
	if first.State != store.OrderPending {
		t.Fatalf("the first order should still be open in the journal: %+v", first)
	}
	c, _ = w.st.GetCertificate(ctx, "www")
	if err := w.issuing(w.st, w.issuer(t)).Work(ctx, c); err != nil {
		t.Fatalf("the resumed run did not replace the failed order at once: %v", err)
	}
	w.checkIssued(t)
	done, _ := w.st.GetOrder(ctx, first.ID)
	last, _ := w.st.LatestOrder(ctx, "www")
	if done.State != store.OrderFailed || last.Generation != first.Generation+1 || last.State != store.OrderIssued {
		t.Fatalf("orders: first %s, last gen %d %s", done.State, last.Generation, last.State)
	}
	// Pebble lists the issued order only: invalid orders are left out of
	// account order lists (RFC 8555 §7.1.2.1 says servers SHOULD).
	if n := orderCount(t, iss); n != 1 {
		t.Fatalf("Pebble lists %d orders, want 1", n)
	}
}

// The ACME issuer passes the CA conformance suite against Pebble (through
// the proxy that can lose or rate-limit a newOrder). Pebble cannot be
// slowed or made to reject on demand: those cases are skipped here.
func TestACMEConformance(t *testing.T) {
	t.Parallel()
	w := newACMEWorld(t, acmeOpts{env: []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}, proxy: true})
	var n atomic.Int64
	catest.Run(t, catest.Harness{
		New: func(t *testing.T) ca.Issuer { return w.issuer(t) },
		Names: func(*testing.T) []string {
			return []string{fmt.Sprintf("n%d.example.com", n.Add(1))}
		},
		// The order's authorizations, proved over DNS-01 through Knot.
		Prove: func(t *testing.T, iss ca.Issuer, o ca.Order, req ca.Request) {
			if o.Ref == "" {
				return
			}
			oa := iss.(ca.OrderAuthorizer)
			auths, err := oa.Authorizations(ctx, o, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range auths {
				if a.Status == ca.AuthValid {
					continue
				}
				var ch dcv.Challenge
				for _, c := range a.Challenges {
					if c.Method == dcv.DNSTXT {
						ch = c
					}
				}
				pub, err := w.engine.Present(ctx, "catest", ch, dcv.Target{DNS: "knot"})
				if err != nil {
					t.Fatal(err)
				}
				if err := w.engine.Wait(ctx, []*dcv.Published{pub}); err != nil {
					t.Fatal(err)
				}
				if r, err := oa.Respond(ctx, a, ch); err != nil || r.Status != ca.AuthValid {
					t.Fatalf("proving %s: %v %+v", a.Domain, err, r)
				}
				_ = w.engine.CleanUp(ctx, []*dcv.Published{pub})
			}
		},
		Wait:                 30 * time.Second,
		DropNextSubmitAnswer: w.proxy.DropNextNewOrder,
		RateLimitNextSubmit:  w.proxy.RateLimitNextNewOrder,
	})
}
