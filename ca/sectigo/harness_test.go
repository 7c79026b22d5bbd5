package sectigo_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/sectigo"
	"github.com/certd/certd/ca/sectigo/sectigosim"
	"github.com/certd/certd/config"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/pemutil"
)

var ctx = context.Background()

const (
	loginName = "certd-reseller"
	// password is a canary: it must never appear in an error or a log.
	password = "canary-Pw-7f3e9b1c"
)

// zone is a tiny authoritative DNS server: the CNAMEs a test publishes.
type zone struct {
	mu    sync.Mutex
	cname map[string]string
	addr  string
}

func newZone(t *testing.T) *zone {
	t.Helper()
	z := &zone{cname: map[string]string{}}
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
	z.mu.Lock()
	target, ok := z.cname[strings.ToLower(q.Name)]
	z.mu.Unlock()
	if ok {
		m.Answer = append(m.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: target})
	} else {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

func (z *zone) set(name, target string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.cname[strings.ToLower(dns.Fqdn(name))] = dns.Fqdn(target)
}

// site serves token files by Host and path, as certd's built-in
// responder does.
type site struct {
	mu    sync.Mutex
	files map[string]string // host + path -> content
	// redirect answers every request with a redirect instead.
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
		http.Redirect(w, r, "https://elsewhere.example/"+r.URL.Path, http.StatusFound)
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

// env is a simulator with the DNS zone and web site its checks look at.
type env struct {
	sim   *sectigosim.Server
	zone  *zone
	site  *site
	url   string
	roots *x509.CertPool
	logs  *observer.ObservedLogs
}

func newEnv(t *testing.T, mod func(*sectigosim.Options)) *env {
	t.Helper()
	e := &env{zone: newZone(t), site: newSite(t)}
	tlsSite := httptest.NewTLSServer(e.site) // the same files over HTTPS
	t.Cleanup(tlsSite.Close)
	opts := sectigosim.Options{LoginName: loginName, LoginPassword: password, DNSServer: e.zone.addr, HTTPAddr: e.site.addr,
		HTTPSAddr: tlsSite.Listener.Addr().String(), RecheckEvery: time.Hour}
	if mod != nil {
		mod(&opts)
	}
	sim, err := sectigosim.New(opts)
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
	e.url = "https://" + ln.Addr().String()
	e.roots = x509.NewCertPool()
	e.roots.AppendCertsFromPEM(sim.APICAPEM())
	return e
}

// client makes a client for the account with password pw.
func (e *env) client(t *testing.T, pw string, mod func(*sectigo.ClientOptions)) *sectigo.Client {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	e.logs = logs
	opts := sectigo.ClientOptions{URL: e.url, LoginName: loginName, LoginPassword: config.NewSecretValue(pw), RootCAs: e.roots,
		Timeout: 10 * time.Second, Logger: zap.New(core)}
	if mod != nil {
		mod(&opts)
	}
	c, err := sectigo.NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// issuer makes an issuer for product with short intervals (tests poll
// freely), modified by mod.
func (e *env) issuer(t *testing.T, product int, mod func(*sectigo.IssuerOptions)) *sectigo.Issuer {
	t.Helper()
	opts := sectigo.IssuerOptions{Product: product, Days: 365, PollInterval: time.Nanosecond, RecheckInterval: time.Nanosecond}
	if mod != nil {
		mod(&opts)
	}
	is, err := sectigo.NewIssuer(e.client(t, password, nil), opts)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

// publish puts the challenges where the simulator looks.
func (e *env) publish(t *testing.T, chs []dcv.Challenge) {
	t.Helper()
	for _, ch := range chs {
		switch ch.Method {
		case dcv.DNSCNAME:
			e.zone.set(ch.RecordName, ch.Value)
		case dcv.HTTPFile:
			e.site.put(ch.Domain, ch.Path, ch.Content)
		case dcv.Email:
		default:
			t.Fatalf("cannot publish %s", ch.Method)
		}
	}
}

var refs atomic.Int64

// request builds a request for names with a fresh key and client
// reference.
func request(t *testing.T, names ...string) ca.Request {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: names[0]}, DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	return ca.Request{CertName: names[0], Domains: names, Key: key, CSR: csr, ClientRef: fmt.Sprintf("order-%d", refs.Add(1)), Since: time.Now()}
}

// fetchUntil fetches until issued (or another error than pending), for
// at most 10s.
func fetchUntil(t *testing.T, is *sectigo.Issuer, o ca.Order, req ca.Request) *ca.Result {
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
// simulator's root.
func (e *env) verify(t *testing.T, res *ca.Result, req ca.Request) {
	t.Helper()
	pub, ok := res.Leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(req.Key.Public()) {
		t.Fatal("the certificate is not for the request's key")
	}
	if fmt.Sprint(res.Leaf.DNSNames) != fmt.Sprint(req.Domains) {
		t.Fatalf("names %v, want %v", res.Leaf.DNSNames, req.Domains)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	if !roots.AppendCertsFromPEM(e.sim.RootPEM()) {
		t.Fatal("no root")
	}
	for _, c := range res.Chain {
		inter.AddCert(c)
	}
	if _, err := res.Leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
		t.Fatalf("chain: %v", err)
	}
	if len(res.Roots) != 1 || string(res.Roots[0].Raw) != string(mustRoot(t, e).Raw) {
		t.Fatalf("roots %d, want the simulator's root", len(res.Roots))
	}
}

func mustRoot(t *testing.T, e *env) *x509.Certificate {
	t.Helper()
	certs, err := pemutil.Certificates(e.sim.RootPEM())
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// noSecret fails if the password appears in s.
func noSecret(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, password) {
		t.Fatalf("%s discloses the password: %s", what, s)
	}
}

// logsClean fails if any log entry of e's last client holds the password.
func (e *env) logsClean(t *testing.T) {
	t.Helper()
	if e.logs == nil {
		return
	}
	for _, entry := range e.logs.All() {
		noSecret(t, "a log message", entry.Message)
		for k, v := range entry.ContextMap() {
			noSecret(t, "log field "+k, fmt.Sprint(v))
		}
	}
}

func configSecret(s string) config.SecretValue { return config.NewSecretValue(s) }
