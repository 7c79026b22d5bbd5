package atlas_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/certd/certd/ca/atlas"
	"github.com/certd/certd/ca/atlas/atlassim"
)

var ctx = context.Background()

// clock is a settable clock shared by simulator and client.
type clock struct {
	mu   sync.Mutex
	t    time.Time
	real bool // follow the wall clock (for cases that wait for real)
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.real {
		return time.Now()
	}
	return c.t
}
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// zone is a tiny authoritative DNS server for the simulator's DCV checks.
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
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(z.serve)}
	go func() { _ = srv.ActivateAndServe() }()
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
	if target, ok := z.cname[name]; ok {
		m.Answer = append(m.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: target})
	} else if q.Qtype == dns.TypeTXT {
		for _, v := range z.txt[name] {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{v}})
		}
	}
	z.mu.Unlock()
	_ = w.WriteMsg(m)
}

func (z *zone) setTXT(name string, values ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.txt[dns.Fqdn(name)] = values
}

func (z *zone) setCNAME(name, target string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.cname[dns.Fqdn(name)] = dns.Fqdn(target)
}

// env is a simulator on a loopback TLS port with a client for it.
type env struct {
	clk    *clock
	sim    *atlassim.Server
	zone   *zone
	url    string
	roots  *x509.CertPool
	cert   tls.Certificate
	client *atlas.Client
	sleeps []time.Duration
	mu     sync.Mutex
}

func newEnv(t *testing.T, mod func(*atlassim.Options)) *env {
	t.Helper()
	e := &env{clk: &clock{t: time.Now().UTC().Truncate(time.Second)}, zone: newZone(t)}
	opts := atlassim.Options{APIKey: "test-key", APISecret: "test-secret", Now: e.clk.Now, DNSServer: e.zone.addr}
	if mod != nil {
		mod(&opts)
	}
	sim, err := atlassim.New(opts)
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
	e.url = "https://" + ln.Addr().String() + "/v2"
	e.roots = x509.NewCertPool()
	e.roots.AppendCertsFromPEM(sim.APICAPEM())
	certPEM, keyPEM, err := sim.ClientCredentials("certd-test")
	if err != nil {
		t.Fatal(err)
	}
	if e.cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	e.client = e.newClient(t, "test-key", "test-secret")
	return e
}

func (e *env) newClient(t *testing.T, key, secret string) *atlas.Client {
	t.Helper()
	c, err := atlas.NewClient(atlas.ClientOptions{
		URL: e.url, APIKey: key, APISecret: secret, Certificate: e.cert, RootCAs: e.roots, Now: e.clk.Now,
		Sleep: func(ctx context.Context, d time.Duration) error {
			e.mu.Lock()
			e.sleeps = append(e.sleeps, d)
			e.mu.Unlock()
			e.clk.Add(d) // waiting moves the shared clock, so Retry-After is really honoured
			return ctx.Err()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// verifiedClaim claims domain and proves it by DNS TXT.
func (e *env) verifiedClaim(t *testing.T, domain string) string {
	t.Helper()
	tok, err := e.client.CreateClaim(ctx, domain)
	if err != nil {
		t.Fatal(err)
	}
	e.zone.setTXT(domain, tok.Token)
	res, err := e.client.VerifyDNS(ctx, tok.ID, "")
	if err != nil || res != atlas.Verified {
		t.Fatalf("verify %s: %v %v", domain, res, err)
	}
	return tok.ID
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// randReader is crypto/rand for APIs that take an io.Reader.
type randReader struct{}

func (randReader) Read(p []byte) (int, error) { return rand.Read(p) }
