package scheduler_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libdns/rfc2136"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/atlas"
	"github.com/certd/certd/ca/atlas/atlassim"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/authdns"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/providers"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// world is a real issuance setup in one process: the Atlas simulator over
// mTLS, an RFC 2136 DNS server, the real provider, engine, store, deployer.
type world struct {
	sim    *atlassim.Server
	st     *store.SQLite
	issuer *atlas.Issuer
	engine *dcv.Engine
	dir    string
	dns    string // the DNS server's address
}

func newWorld(t *testing.T) *world { return newWorldWith(t, nil) }

func newWorldWith(t *testing.T, mod func(*atlassim.Options)) *world {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w := &world{dir: t.TempDir()}
	secret := "c2VjcmV0LXNlY3JldC1zZWNyZXQ="
	dnsSrv, err := authdns.New("k", secret, map[string][]string{"example.com": nil})
	if err != nil {
		t.Fatal(err)
	}
	if err := dnsSrv.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	w.dns = dnsSrv.Addr
	opts := atlassim.Options{APIKey: "k", APISecret: "s", DNSServer: dnsSrv.Addr}
	if mod != nil {
		mod(&opts)
	}
	if w.sim, err = atlassim.New(opts); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = w.sim.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	certPEM, keyPEM, _ := w.sim.ClientCredentials("t")
	pair, _ := tls.X509KeyPair(certPEM, keyPEM)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(w.sim.APICAPEM())
	client, err := atlas.NewClient(atlas.ClientOptions{URL: "https://" + ln.Addr().String() + "/v2", APIKey: "k", APISecret: "s", Certificate: pair, RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	w.issuer = atlas.NewIssuer(client, atlas.IssuerOptions{})
	prov := &rfc2136.Provider{Server: dnsSrv.Addr, KeyName: "k", KeyAlg: "hmac-sha256", Key: secret}
	if w.st, err = store.Open(ctx, filepath.Join(w.dir, "certd.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.st.Close() })
	w.engine, err = dcv.NewEngine(dcv.Options{DNS: map[string]dcv.DNSProvider{"dns": prov}, Journal: journal{w.st},
		Resolvers: []string{dnsSrv.Addr}, AuthServers: map[string][]string{"dns": {dnsSrv.Addr}}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// journal adapts the store to dcv.Journal (as cmd/certd does).
type journal struct{ s *store.SQLite }

func (j journal) Record(ctx context.Context, r *dcv.Record) error {
	id, err := j.s.JournalArtefact(ctx, store.Artefact{Owner: r.Owner, Kind: r.Kind, Provider: r.Provider, Zone: r.Zone, Name: r.Name, Value: r.Value})
	r.ID = id
	return err
}
func (j journal) Update(ctx context.Context, r dcv.Record) error {
	return j.s.SaveArtefact(ctx, store.Artefact{ID: r.ID, Zone: r.Zone, State: r.State, Attempts: r.Attempts, LastError: r.LastErr})
}
func (j journal) Live(ctx context.Context) ([]dcv.Record, error) {
	live, err := j.s.LiveArtefacts(ctx)
	out := make([]dcv.Record, len(live))
	for i, a := range live {
		out[i] = dcv.Record{ID: a.ID, Owner: a.Owner, Kind: a.Kind, Provider: a.Provider, Zone: a.Zone, Name: a.Name,
			Value: a.Value, State: a.State, Attempts: a.Attempts, LastErr: a.LastError, Updated: a.UpdatedAt}
	}
	return out, err
}

func (w *world) plan() scheduler.Plan {
	return scheduler.Plan{
		Spec:   scheduler.CertSpec{Name: "www", Account: "atlas", Domains: []string{"www.example.com"}, KeyType: "ecdsa-p256"},
		Issuer: w.issuer, Engine: w.engine, Policy: scheduler.Policy{RemainingFraction: 1.0 / 3},
		Deploy: deploy.Spec{Name: "www", Dir: filepath.Join(w.dir, "live"), CertMode: 0o644, KeyMode: 0o600, Keep: 2},
		Proofs: map[string]scheduler.Proof{"www.example.com": {CA: ca.Proof{Method: dcv.DNSTXT}, Target: dcv.Target{DNS: "dns"}}},
	}
}

// issuing returns a fresh Issuing over st: a new one models a restart.
func (w *world) issuing(st scheduler.IssueStore) *scheduler.Issuing {
	return &scheduler.Issuing{Store: st, Plans: func(string) (scheduler.Plan, error) { return w.plan(), nil },
		Claims: &scheduler.Claims{Store: w.st}, Deployer: &deploy.Deployer{}}
}

func (w *world) due(t *testing.T) store.Certificate {
	t.Helper()
	s, err := scheduler.New(scheduler.Options{Store: w.st, Work: func(context.Context, store.Certificate) error { return nil }, Schedule: "@every 1h"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, []scheduler.CertSpec{w.plan().Spec}); err != nil {
		t.Fatal(err)
	}
	c, err := w.st.GetCertificate(ctx, "www")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// crashingStore fails the first SaveOrder that records a CA reference: the
// process dies right after Atlas answered the POST.
type crashingStore struct {
	*store.SQLite
	crashed bool
}

func (c *crashingStore) SaveOrder(ctx context.Context, o store.Order) error {
	if !c.crashed && o.CARef != "" {
		c.crashed = true
		return errors.New("simulated crash before the serial was stored")
	}
	return c.SQLite.SaveOrder(ctx, o)
}

// checkOneOrder: one ledger entry, for the stored key, and the
// certificate deployed.
func (w *world) checkOneOrder(t *testing.T) {
	t.Helper()
	led := w.sim.Ledger()
	if len(led) != 1 {
		t.Fatalf("ledger has %d committed requests, want exactly 1 (N1)", len(led))
	}
	o, err := w.st.LatestOrder(ctx, "www")
	if err != nil {
		t.Fatal(err)
	}
	k, err := w.st.GetKey(ctx, o.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(k.PEM)
	key, _ := x509.ParsePKCS8PrivateKey(block.Bytes)
	spki, _ := x509.MarshalPKIXPublicKey(key.(crypto.Signer).Public())
	if !bytes.Equal(spki, led[0].PublicKey) {
		t.Fatal("the committed request is not for the stored key (N3)")
	}
	c, _ := w.st.GetCertificate(ctx, "www")
	if c.State != store.StateValid || c.Current == nil || c.Current.Serial != led[0].Serial || o.State != store.OrderIssued {
		t.Fatalf("after resuming: cert %+v order %+v", c, o)
	}
}

func TestRestartBetweenPostAndStoringTheSerial(t *testing.T) {
	w := newWorld(t)
	c := w.due(t)
	crash := &crashingStore{SQLite: w.st}
	if err := w.issuing(crash).Work(ctx, c); err == nil {
		t.Fatal("expected the simulated crash")
	}
	o, _ := w.st.LatestOrder(ctx, "www")
	if o.State != store.OrderIntent || o.CARef != "" {
		t.Fatalf("order after the crash: %+v", o)
	}
	// Restart: a new Issuing over the same store resumes by lookup.
	c, _ = w.st.GetCertificate(ctx, "www")
	if err := w.issuing(w.st).Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	w.checkOneOrder(t)
}

func TestPostThatCommitsThenDrops(t *testing.T) {
	w := newWorld(t)
	c := w.due(t)
	w.sim.InjectFault("POST /certificates", atlassim.Fault{DropAfterCommit: true})
	// The lost answer is looked up in the same pass and found: issued,
	// with the one request sent.
	if err := w.issuing(w.st).Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	w.checkOneOrder(t)
	if n := w.sim.Requests("POST /certificates"); n != 1 {
		t.Fatalf("POST sent %d times", n)
	}
}

// A lost answer while Atlas is still issuing (its reports do not list the
// certificate yet) leaves the order ambiguous, loudly and with a next
// look; it is found once issued, never sent twice.
func TestPostThatCommitsThenDropsWhileIssuing(t *testing.T) {
	w := newWorldWith(t, func(o *atlassim.Options) { o.IssueDelay = 1500 * time.Millisecond })
	c := w.due(t)
	w.sim.InjectFault("POST /certificates", atlassim.Fault{DropAfterCommit: true})
	if err := w.issuing(w.st).Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	o, _ := w.st.LatestOrder(ctx, "www")
	c, _ = w.st.GetCertificate(ctx, "www")
	if o.State != store.OrderAmbiguous || c.State != store.StateIssuing || c.NextAction != scheduler.ActionPoll || c.NextActionAt.IsZero() {
		t.Fatalf("after the lost answer: order %+v cert %+v", o, c)
	}
	for i := 0; ; i++ {
		time.Sleep(300 * time.Millisecond)
		c, _ = w.st.GetCertificate(ctx, "www")
		if err := w.issuing(w.st).Work(ctx, c); err != nil {
			t.Fatal(err)
		}
		if c, _ = w.st.GetCertificate(ctx, "www"); c.State == store.StateValid || i > 20 {
			break
		}
	}
	w.checkOneOrder(t)
	if n := w.sim.Requests("POST /certificates"); n != 1 {
		t.Fatalf("POST sent %d times", n)
	}
}

func TestServiceUnavailableOnPostIsLookedUpThenResent(t *testing.T) {
	w := newWorld(t)
	c := w.due(t)
	w.sim.InjectFault("POST /certificates", atlassim.Fault{Status: 503})
	// Absence is proved only once an order sent then could no longer be
	// missing from the reports: here, after a short issuance window.
	w.issuer = atlas.NewIssuer(w.issuer.Client(), atlas.IssuerOptions{IssuanceWindow: 700 * time.Millisecond})
	if err := w.issuing(w.st).Work(ctx, c); err != nil {
		t.Fatalf("503: %v", err)
	}
	if o, _ := w.st.LatestOrder(ctx, "www"); o.State != store.OrderAmbiguous {
		t.Fatalf("after a 503 the order is %s, want ambiguous until absence is proved", o.State)
	}
	if n := w.sim.Requests("POST /certificates"); n != 1 {
		t.Fatalf("resent within the issuance window: %d POSTs", n)
	}
	time.Sleep(800 * time.Millisecond)
	c, _ = w.st.GetCertificate(ctx, "www")
	if err := w.issuing(w.st).Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	w.checkOneOrder(t)
	if n := w.sim.Requests("GET /stats/{kind}"); n == 0 {
		t.Fatal("resent without looking the first request up")
	}
}

func TestCrashAfterIntentBeforeSubmit(t *testing.T) {
	w := newWorld(t)
	c := w.due(t)
	// The job gets as far as journaling the intent (key and CSR stored),
	// then the process dies before the POST.
	w.sim.InjectFault("GET /validationpolicy", atlassim.Fault{Status: 400})
	if err := w.issuing(w.st).Work(ctx, c); err == nil {
		t.Fatal("expected a failure before submitting")
	}
	o, _ := w.st.LatestOrder(ctx, "www")
	if o.State != store.OrderIntent || o.KeyID == 0 {
		t.Fatalf("order: %+v", o)
	}
	c, _ = w.st.GetCertificate(ctx, "www")
	if err := w.issuing(w.st).Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	w.checkOneOrder(t)
	if o2, _ := w.st.LatestOrder(ctx, "www"); o2.ID != o.ID || o2.KeyID != o.KeyID {
		t.Fatal("a new order or key replaced the journaled one")
	}
}

func TestClaimByHTTPThroughNginxWebroot(t *testing.T) {
	webroot := t.TempDir()
	okPort, redirPort := testenv.FreePort(t), testenv.FreePort(t)
	ngx := testenv.StartNginx(t, fmt.Sprintf(`
    server { listen 127.0.0.1:%d; root %s; }
    server { listen 127.0.0.1:%d; return 301 http://elsewhere.example.com$request_uri; }
`, okPort, webroot, redirPort))
	okAddr, redirAddr := fmt.Sprintf("127.0.0.1:%d", okPort), fmt.Sprintf("127.0.0.1:%d", redirPort)
	testenv.WaitListening(t, okAddr)
	testenv.WaitListening(t, redirAddr)
	_ = ngx

	for _, c := range []struct {
		name, addr string
		ok         bool
	}{{"serving", okAddr, true}, {"redirecting", redirAddr, false}} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorldHTTP(t, c.addr, webroot)
			err := w.claims().Ensure(ctx, w.engine, "atlas", w.issuer, "blog.example.com",
				scheduler.Proof{CA: ca.Proof{Method: dcv.HTTPFile}, Target: dcv.Target{HTTP: "web"}}, 0, false)
			st, _ := w.st.GetClaim(ctx, "atlas", "blog.example.com")
			if c.ok {
				if err != nil || st.Status != "VERIFIED" {
					t.Fatalf("claim through nginx: %v %+v", err, st)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), "redirects") || st.Status == "VERIFIED" {
					t.Fatalf("a redirect must fail certd's self-check: %v %+v", err, st)
				}
				// And the CA's own check does not follow nginx's redirect either.
				tok, err := w.issuer.Client().CreateClaim(ctx, "redirect.example.com")
				if err != nil {
					t.Fatal(err)
				}
				res, err := w.issuer.Client().VerifyHTTP(ctx, tok.ID, "redirect.example.com", "http")
				if err != nil || res == atlas.Verified {
					t.Fatalf("the simulator verified through a redirect: %v %v", res, err)
				}
			}
			// The token file is gone either way.
			if _, err := os.Stat(filepath.Join(webroot, ".well-known", "pki-validation", "gsdv.txt")); !os.IsNotExist(err) {
				t.Errorf("gsdv.txt left in the webroot: %v", err)
			}
		})
	}
}

func (w *world) claims() *scheduler.Claims {
	return &scheduler.Claims{Store: w.st, PollTimeout: 2 * time.Second}
}

// newWorldHTTP is a world whose simulator fetches gsdv.txt from httpAddr,
// with a webroot target on webroot and certd's self-check on httpAddr.
func newWorldHTTP(t *testing.T, httpAddr, webroot string) *world {
	t.Helper()
	w := newWorldWith(t, func(o *atlassim.Options) { o.HTTPAddr = httpAddr })
	var err error
	w.engine, err = dcv.NewEngine(dcv.Options{HTTP: map[string]dcv.HTTPTarget{"web": &providers.Webroot{Root: webroot}}, Journal: journal{w.st},
		Resolvers: []string{"127.0.0.1:1"}, Timeout: 2 * time.Second,
		HTTPDial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, httpAddr)
		}})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestClaimsAreReassertedAheadOfExpiry(t *testing.T) {
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	w := newWorldWith(t, func(o *atlassim.Options) { o.Now = clk.Now })
	claims := &scheduler.Claims{Store: w.st, Now: clk.Now, PollTimeout: 2 * time.Second}
	proof := w.plan().Proofs["www.example.com"]
	ensure := func(ctx context.Context, c store.Claim) error {
		return claims.Ensure(ctx, w.engine, "atlas", w.issuer, c.Domain, proof, 30*24*time.Hour, false)
	}
	if err := ensure(ctx, store.Claim{Domain: "www.example.com"}); err != nil {
		t.Fatal(err)
	}
	first, _ := w.st.GetClaim(ctx, "atlas", "www.example.com")
	if first.Status != "VERIFIED" || !first.NextActionAt.Equal(first.ExpiresAt.Add(-30*24*time.Hour)) {
		t.Fatalf("claim: %+v", first)
	}
	s, err := scheduler.New(scheduler.Options{Store: w.st, Work: func(context.Context, store.Certificate) error { return nil },
		ClaimWork: ensure, Schedule: "@every 1h", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(334 * 24 * time.Hour) // a day before the reassertion is due
	if err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if c, _ := w.st.GetClaim(ctx, "atlas", "www.example.com"); c.Token != first.Token {
		t.Fatal("reasserted before it was due")
	}
	clk.Add(2 * 24 * time.Hour)
	if err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	c, _ := w.st.GetClaim(ctx, "atlas", "www.example.com")
	if c.Token == first.Token || c.Status != "VERIFIED" || !c.ExpiresAt.After(first.ExpiresAt.Add(300*24*time.Hour)) {
		t.Fatalf("not reasserted: %+v (first expired %s)", c, first.ExpiresAt)
	}
	if c.CAClaimID != first.CAClaimID {
		t.Fatal("a new claim was created instead of reasserting the stored one")
	}
}

func TestRejectedOrderEndsAndANewOneIsPlaced(t *testing.T) {
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	w := newWorldWith(t, func(o *atlassim.Options) { o.IssueDelay = time.Minute; o.Now = clk.Now })
	c := w.due(t)
	x := w.issuing(w.st)
	if err := x.Work(ctx, c); err != nil { // submitted, pending for a minute
		t.Fatal(err)
	}
	o, _ := w.st.LatestOrder(ctx, "www")
	if o.State != store.OrderPending {
		t.Fatalf("order %+v", o)
	}
	if err := w.sim.Reject(o.CARef); err != nil {
		t.Fatal(err)
	}
	c, _ = w.st.GetCertificate(ctx, "www")
	if err := x.Work(ctx, c); !errors.Is(err, ca.ErrRejected) {
		t.Fatalf("rejected order: %v", err)
	}
	if o, _ := w.st.LatestOrder(ctx, "www"); o.State != store.OrderFailed {
		t.Fatalf("order after rejection: %+v", o)
	}
	clk.Add(2 * time.Minute)
	c, _ = w.st.GetCertificate(ctx, "www")
	if err := x.Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Minute)
	c, _ = w.st.GetCertificate(ctx, "www")
	if err := x.Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	o2, _ := w.st.LatestOrder(ctx, "www")
	if o2.Generation != 2 || o2.State != store.OrderIssued {
		t.Fatalf("second order: %+v", o2)
	}
	if n := len(w.sim.Ledger()); n != 2 {
		t.Fatalf("ledger %d, want 2 (one rejected, one issued)", n)
	}
}

func TestEmailClaimWaitsForTheApproverWithoutMailingAgain(t *testing.T) {
	w := newWorld(t)
	claims := w.claims()
	proof := scheduler.Proof{CA: ca.Proof{Method: dcv.Email, Email: "hostmaster@mail.example.com"}}
	ensure := func() error {
		return claims.Ensure(ctx, w.engine, "atlas", w.issuer, "mail.example.com", proof, 0, false)
	}
	if err := ensure(); !errors.Is(err, scheduler.ErrAwaitingApproval) {
		t.Fatalf("first: %v", err)
	}
	if err := ensure(); !errors.Is(err, scheduler.ErrAwaitingApproval) {
		t.Fatalf("second: %v", err)
	}
	if n := w.sim.Requests("POST /claims/domains/{id}/email"); n != 1 {
		t.Fatalf("the approver was mailed %d times", n)
	}
	st, _ := w.st.GetClaim(ctx, "atlas", "mail.example.com")
	if st.Failures != 0 || st.Status != "PENDING" {
		t.Fatalf("waiting is not a failure: %+v", st)
	}
	if err := w.sim.ClickEmailLink(st.CAClaimID); err != nil {
		t.Fatal(err)
	}
	if err := ensure(); err != nil {
		t.Fatal(err)
	}
	if st, _ := w.st.GetClaim(ctx, "atlas", "mail.example.com"); st.Status != "VERIFIED" {
		t.Fatalf("after the click: %+v", st)
	}
}

func TestLifetimeIsCountedFromTheRequestedStart(t *testing.T) {
	w := newWorldWith(t, func(o *atlassim.Options) {
		p := atlassim.DefaultPolicy()
		p.Validity.SecondsMin = 60 // the lifetime asked for is exactly the minimum
		o.Policy = &p
	})
	c := w.due(t)
	x := w.issuing(w.st)
	plan := w.plan()
	plan.Lifetime = time.Minute
	x.Plans = func(string) (scheduler.Plan, error) { return plan, nil }
	if err := x.Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	c, _ = w.st.GetCertificate(ctx, "www")
	if c.Current == nil || c.Current.NotAfter.Sub(c.Current.NotBefore) != time.Minute {
		t.Fatalf("lifetime %v, want exactly 1m", c.Current.NotAfter.Sub(c.Current.NotBefore))
	}
}

func TestSweepRedeploysTamperedFilesWithoutAnOrder(t *testing.T) {
	w := newWorld(t)
	c := w.due(t)
	x := w.issuing(w.st)
	if err := x.Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(w.dir, "live", "www")
	work := func() {
		t.Helper()
		if err := x.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		due, _ := w.st.DueCertificates(ctx, time.Now(), 10)
		for _, d := range due {
			if err := x.Work(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	good, _ := os.ReadFile(filepath.Join(live, "cert.pem"))
	// Someone deletes the key, then someone overwrites the certificate.
	for _, tamper := range []func(){
		func() { _ = os.Remove(filepath.Join(live, "privkey.pem")) },
		func() { _ = os.WriteFile(filepath.Join(live, "cert.pem"), []byte("garbage"), 0o644) },
	} {
		tamper()
		work()
		got, _ := os.ReadFile(filepath.Join(live, "cert.pem"))
		if string(got) != string(good) {
			t.Fatal("the stored version was not put back")
		}
		if _, err := os.Stat(filepath.Join(live, "privkey.pem")); err != nil {
			t.Fatal("the key was not put back")
		}
	}
	if n := len(w.sim.Ledger()); n != 1 {
		t.Fatalf("repairing files placed orders: ledger %d", n)
	}
	// Healthy files: the sweep changes nothing.
	before, _ := w.st.GetCertificate(ctx, "www")
	if err := x.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := w.st.GetCertificate(ctx, "www")
	if !after.NextActionAt.Equal(before.NextActionAt) || after.NextAction != before.NextAction {
		t.Fatalf("a healthy certificate was made due: %+v", after)
	}
}

func TestRevokedElsewhereIsReissued(t *testing.T) {
	w := newWorld(t)
	c := w.due(t)
	x := w.issuing(w.st)
	if err := x.Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	c, _ = w.st.GetCertificate(ctx, "www")
	// Someone revokes it in the CA's portal.
	if err := w.issuer.Client().Revoke(ctx, c.Current.Serial, atlas.ReasonKeyCompromise, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := x.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	c, _ = w.st.GetCertificate(ctx, "www")
	if c.NextAction != scheduler.ActionReissue || c.NextActionAt.After(time.Now()) {
		t.Fatalf("a revoked certificate is not due for reissue: %+v", c)
	}
	old := c.Current.Serial
	if err := x.Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	c, _ = w.st.GetCertificate(ctx, "www")
	if c.Current.Serial == old || len(w.sim.Ledger()) != 2 {
		t.Fatalf("reissue: serial %s (was %s), ledger %d", c.Current.Serial, old, len(w.sim.Ledger()))
	}
	// The new one is not revoked: the next sweep leaves it alone.
	if err := x.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if c2, _ := w.st.GetCertificate(ctx, "www"); c2.NextAction != scheduler.ActionRenew {
		t.Fatalf("the fresh certificate was made due: %+v", c2)
	}
}

// A key type change with the same names is a reissue under the current
// order (Atlas rekey): no new purchase.
func TestKeyChangeIsAReissueNotAPurchase(t *testing.T) {
	w := newWorld(t)
	c := w.due(t)
	x := w.issuing(w.st)
	if err := x.Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	plan := w.plan()
	plan.Spec.KeyType = "ecdsa-p384"
	s, err := scheduler.New(scheduler.Options{Store: w.st, Work: func(context.Context, store.Certificate) error { return nil }, Schedule: "@every 1h"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, []scheduler.CertSpec{plan.Spec}); err != nil {
		t.Fatal(err)
	}
	x.Plans = func(string) (scheduler.Plan, error) { return plan, nil }
	c, _ = w.st.GetCertificate(ctx, "www")
	if c.NextAction != scheduler.ActionReissue {
		t.Fatalf("after the key type change: %+v", c)
	}
	if err := x.Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	led := w.sim.Ledger()
	if w.sim.OrdersFor([]string{"www.example.com"}) != 1 || len(led) != 2 || !led[1].Rekey {
		t.Fatalf("ledger after the key change: %+v; want one purchase and one rekey", led)
	}
	c, _ = w.st.GetCertificate(ctx, "www")
	v, _ := w.st.GetVersion(ctx, c.CurrentVersion)
	leaf, _ := x509.ParseCertificate(mustPEM(t, v.CertPEM))
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve.Params().BitSize != 384 || c.State != store.StateValid {
		t.Fatalf("the deployed certificate after the reissue: %T %+v", leaf.PublicKey, c)
	}
}

func mustPEM(t *testing.T, p []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(p)
	if block == nil {
		t.Fatal("no PEM")
	}
	return block.Bytes
}
