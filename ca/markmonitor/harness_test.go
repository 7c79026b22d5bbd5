package markmonitor_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/markmonitor"
	"github.com/certd/certd/ca/markmonitor/mmsim"
	"github.com/certd/certd/config"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/pemutil"
)

var ctx = context.Background()

// The account's credentials are canaries: none may appear in an error or
// a log.
const (
	apiKey   = "canary-Key-5b1e0c2d9a77"
	username = "certd-bot"
	password = "canary-Pw-91ad44e0c3"
	orgName  = "Example Widgets Inc."
)

// zone is a tiny authoritative DNS server: the TXT and CNAME records a
// test publishes.
type zone struct {
	mu    sync.Mutex
	txt   map[string][]string
	cname map[string]string
	addr  string
}

func newZone(t *testing.T) *zone {
	t.Helper()
	z := &zone{txt: map[string][]string{}, cname: map[string]string{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z.addr = pc.LocalAddr().String()
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(z.serve), NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return z
}

func (z *zone) serve(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	z.mu.Lock()
	target, isCNAME := z.cname[name]
	values := slices.Clone(z.txt[name])
	z.mu.Unlock()
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: 60}
	}
	switch {
	case isCNAME:
		m.Answer = append(m.Answer, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: target})
	case q.Qtype == dns.TypeTXT && len(values) > 0:
		for _, v := range values {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{v}})
		}
	case len(values) == 0:
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

// addTXT adds a value to the TXT RRset at name.
func (z *zone) addTXT(name, value string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	k := strings.ToLower(dns.Fqdn(name))
	if !slices.Contains(z.txt[k], value) {
		z.txt[k] = append(z.txt[k], value)
	}
}

func (z *zone) setCNAME(name, target string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.cname[strings.ToLower(dns.Fqdn(name))] = dns.Fqdn(target)
}

// site serves token files by Host and path, as certd's built-in
// responder does.
type site struct {
	mu       sync.Mutex
	files    map[string]string // host + path -> content
	redirect atomic.Bool
	addr     string
}

func newSite(t *testing.T) *site {
	t.Helper()
	s := &site{files: map[string]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.redirect.Load() {
		http.Redirect(w, r, "https://elsewhere.example"+r.URL.Path, http.StatusFound)
		return
	}
	s.mu.Lock()
	content, ok := s.files[r.Host+r.URL.Path]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write([]byte(content))
}

func (s *site) put(host, path, content string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[host+path] = content
}

// clock is a settable clock shared by the simulator and the client.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a simulator with the DNS zone and web site its checks look at.
type env struct {
	sim          *mmsim.Server
	zone         *zone
	site         *site
	url, authURL string
	roots        *x509.CertPool
	root         *x509.Certificate
	// logs has what every client and issuer of the env logged.
	logs       *observer.ObservedLogs
	logger     *zap.Logger
	observedMu sync.Mutex
	observed   []string
	clock      *clock
}

// testRateLimit is the account's limit in tests that poll freely with
// many issuers (one limiter each): both sides agree on it. The limit
// test uses the documented 100.
const testRateLimit = 1000

// newEnv starts a simulator (modified by mod) with a DNS zone and a web
// site, orders reaching DigiCert after 50ms and a DigiCert re-check an
// hour after a failed check (so only certd's request checks again soon).
func newEnv(t *testing.T, mod func(*mmsim.Options)) *env {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	e := &env{zone: newZone(t), site: newSite(t), logs: logs, logger: zap.New(core)}
	opts := mmsim.Options{APIKey: apiKey, Username: username, Password: password, DNSServer: e.zone.addr, HTTPAddr: e.site.addr,
		StatusDelay: 50 * time.Millisecond, RecheckEvery: time.Hour, RateLimit: testRateLimit}
	if mod != nil {
		mod(&opts)
	}
	sim, err := mmsim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.sim = sim
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = sim.Serve(sctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	host := "https://" + ln.Addr().String()
	e.url, e.authURL = host+"/cert/v1", host+"/auth/v1"
	e.roots = x509.NewCertPool()
	e.roots.AppendCertsFromPEM(sim.APICAPEM())
	roots, err := pemutil.Certificates(sim.RootPEM())
	if err != nil {
		t.Fatal(err)
	}
	e.root = roots[0]
	return e
}

// organization is the declared organisation, with one contact who is
// both organisation contact and EV approver.
func organization() *markmonitor.OrganizationConfig {
	return &markmonitor.OrganizationConfig{Name: orgName, Address: "1 Main Street", City: "Boise", State: "ID", Country: "US", Zip: "83702",
		Phone: "+1.2085550100", Contacts: []markmonitor.ContactConfig{{FirstName: "Jane", LastName: "Doe", JobTitle: "CTO",
			Email: "jane.doe@example.com", Phone: "+1.2085550101", Types: []string{markmonitor.ContactOrganization, markmonitor.ContactEVApprover}}}}
}

// client makes a client for the account, logging to e.logs. It is safe
// to call from any goroutine.
func (e *env) client(t *testing.T, mod func(*markmonitor.ClientOptions)) *markmonitor.Client {
	t.Helper()
	opts := markmonitor.ClientOptions{URL: e.url, AuthURL: e.authURL, APIKey: config.NewSecretValue(apiKey), Username: username,
		Password: config.NewSecretValue(password), RootCAs: e.roots, Timeout: 10 * time.Second, Logger: e.logger, RequestsPerMinute: testRateLimit,
		Observe: func(route string, _ int, _ time.Duration) {
			e.observedMu.Lock()
			defer e.observedMu.Unlock()
			e.observed = append(e.observed, route)
		}}
	if e.clock != nil {
		opts.Now = e.clock.Now
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := markmonitor.NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// issuer makes a DV issuer polling freely, modified by mod.
func (e *env) issuer(t *testing.T, mod func(*markmonitor.IssuerOptions)) *markmonitor.Issuer {
	t.Helper()
	return e.issuerWith(t, nil, mod)
}

func (e *env) issuerWith(t *testing.T, cmod func(*markmonitor.ClientOptions), mod func(*markmonitor.IssuerOptions)) *markmonitor.Issuer {
	t.Helper()
	opts := markmonitor.IssuerOptions{CertificateType: "SSL_DV_GEOTRUST", Organization: organization(), PollInterval: time.Minute,
		RecheckInterval: time.Nanosecond, SearchWindow: 10 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	is, err := markmonitor.NewIssuer(e.client(t, cmod), opts)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

// publish puts the challenges where the simulator looks.
func (e *env) publish(t *testing.T, chs []dcv.Challenge) {
	t.Helper()
	if err := e.publishErr(chs); err != nil {
		t.Fatal(err)
	}
}

func (e *env) publishErr(chs []dcv.Challenge) error {
	for _, ch := range chs {
		switch ch.Method {
		case dcv.DNSTXT:
			e.zone.addTXT(ch.RecordName, ch.Value)
		case dcv.DNSCNAME:
			e.zone.setCNAME(ch.RecordName, ch.Value)
		case dcv.HTTPFile:
			e.site.put(ch.Domain, ch.Path, ch.Content)
		case dcv.Email:
		default:
			return fmt.Errorf("cannot publish %s", ch.Method)
		}
	}
	return nil
}

// prove does what the scheduler does for a per-order CA: it reads the
// order's authorizations until each pending one offers a challenge (the
// tokens appear once the order reaches DigiCert), publishes them, and
// answers them.
func (e *env) prove(t *testing.T, iss ca.Issuer, o ca.Order, req ca.Request) {
	t.Helper()
	if err := e.proveErr(iss, o, req); err != nil {
		t.Fatal(err)
	}
}

// proveErr is prove for any goroutine.
func (e *env) proveErr(iss ca.Issuer, o ca.Order, req ca.Request) error {
	oa := iss.(ca.OrderAuthorizer)
	deadline := time.Now().Add(10 * time.Second)
	var auths []ca.OrderAuthorization
	for {
		var err error
		auths, err = oa.Authorizations(ctx, o, req)
		if err != nil {
			return fmt.Errorf("authorizations of %s: %w", o.Ref, err)
		}
		if len(auths) == len(req.Domains) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("order %s: %d authorizations for %d domains", o.Ref, len(auths), len(req.Domains))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, a := range auths {
		if a.Status == ca.AuthPending {
			if err := e.publishErr(a.Challenges[:1]); err != nil {
				return err
			}
		}
	}
	for _, a := range auths {
		if a.Status == ca.AuthPending {
			if _, err := oa.Respond(ctx, a, a.Challenges[0]); err != nil {
				return fmt.Errorf("respond %s: %w", a.Domain, err)
			}
		}
	}
	return nil
}

var names atomic.Int64

// freshNames returns a new name and its www name.
func freshNames() []string {
	n := names.Add(1)
	return []string{fmt.Sprintf("n%d.example.com", n), fmt.Sprintf("www.n%d.example.com", n)}
}

var refs atomic.Int64

// request builds a request for names with a fresh key (ECDSA, or key
// when given).
func request(t *testing.T, key crypto.Signer, names ...string) ca.Request {
	t.Helper()
	if key == nil {
		var err error
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: names[0]}, DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	return ca.Request{CertName: names[0], Domains: names, Key: key, CSR: csr, ClientRef: fmt.Sprintf("order-%d", refs.Add(1)), Since: time.Now()}
}

// place submits req with SentAt set, as the scheduler does.
func place(t *testing.T, is *markmonitor.Issuer, req *ca.Request) ca.Order {
	t.Helper()
	req.SentAt = time.Now()
	o, err := is.Submit(ctx, *req)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return o
}

// fetchUntil fetches until issued (or another error than pending), for
// at most 10s.
func fetchUntil(t *testing.T, is *markmonitor.Issuer, o ca.Order, req ca.Request) *ca.Result {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := is.Fetch(ctx, o, req)
		if err == nil {
			return res
		}
		if !errors.Is(err, ca.ErrPending) {
			t.Fatalf("fetch %s: %v", o.Ref, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s not issued: %v", o.Ref, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// verify checks the result is for req's key and names and chains to the
// simulator's root, which it names.
func (e *env) verify(t *testing.T, res *ca.Result, req ca.Request) {
	t.Helper()
	pub, ok := res.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(req.Key.Public()) {
		t.Fatal("the certificate is not for the request's key")
	}
	got, want := slices.Clone(res.Leaf.DNSNames), slices.Clone(req.Domains)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("names %v, want %v", res.Leaf.DNSNames, req.Domains)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(e.root)
	for _, c := range res.Chain {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inter}
	if e.clock != nil {
		opts.CurrentTime = e.clock.Now()
	}
	if _, err := res.Leaf.Verify(opts); err != nil {
		t.Fatalf("chain: %v", err)
	}
	if len(res.Chain) != 1 || len(res.Roots) != 1 || !res.Roots[0].Equal(e.root) {
		t.Fatalf("chain of %d and roots of %d, want the issuing CA and the simulator's root", len(res.Chain), len(res.Roots))
	}
}

// noSecret fails if any credential or a JWT appears in s.
func noSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range []string{apiKey, password, "eyJ"} {
		if strings.Contains(s, secret) {
			t.Fatalf("%s discloses a secret (%q): %s", what, secret[:3], s)
		}
	}
}

// logsClean fails if any log entry of e's clients holds a secret.
func (e *env) logsClean(t *testing.T) {
	t.Helper()
	for _, entry := range e.logs.All() {
		noSecret(t, "a log message", entry.Message)
		for k, v := range entry.ContextMap() {
			noSecret(t, "log field "+k, fmt.Sprint(v))
		}
	}
}
