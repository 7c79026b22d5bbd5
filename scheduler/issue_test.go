package scheduler_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/libdns/rfc2136"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/atlas"
	"github.com/certd/certd/ca/atlas/atlassim"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/authdns"
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
}

func newWorld(t *testing.T) *world {
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
	if w.sim, err = atlassim.New(atlassim.Options{APIKey: "k", APISecret: "s", DNSServer: dnsSrv.Addr}); err != nil {
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
	w.issuer = atlas.NewIssuer(client)
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
func (j journal) Live(ctx context.Context) ([]dcv.Record, error) { return nil, nil }

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
	err := w.issuing(w.st).Work(ctx, c)
	if !errors.Is(err, ca.ErrAmbiguous) {
		t.Fatalf("first attempt: %v, want an ambiguous outcome", err)
	}
	if o, _ := w.st.LatestOrder(ctx, "www"); o.State != store.OrderAmbiguous {
		t.Fatalf("order state %s, want ambiguous", o.State)
	}
	c, _ = w.st.GetCertificate(ctx, "www")
	if err := w.issuing(w.st).Work(ctx, c); err != nil {
		t.Fatal(err)
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
	if err := w.issuing(w.st).Work(ctx, c); !errors.Is(err, ca.ErrAmbiguous) {
		t.Fatalf("503: %v", err)
	}
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
