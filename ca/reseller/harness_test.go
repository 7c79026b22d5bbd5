package reseller_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/reseller"
	"github.com/certd/certd/ca/reseller/resellersim"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/pemutil"
)

var ctx = context.Background()

// Test credentials: canaries, so that a leak is found by grepping.
const (
	testUser = "certd-test"
	testKey  = "CANARY-api-key-7f3a9c"
)

// zone is a tiny authoritative DNS server for the simulator's checks.
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

// addTXT adds value to the RRset at name (never replacing it).
func (z *zone) addTXT(name, value string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	k := dns.Fqdn(strings.ToLower(name))
	for _, v := range z.txt[k] {
		if v == value {
			return
		}
	}
	z.txt[k] = append(z.txt[k], value)
}

func (z *zone) setCNAME(name, target string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.cname[dns.Fqdn(strings.ToLower(name))] = dns.Fqdn(target)
}

// site serves token files by Host and path, as the built-in responder.
type site struct {
	mu    sync.Mutex
	files map[string]string // host + path -> content
	addr  string
}

func newSite(t *testing.T) *site {
	t.Helper()
	s := &site{files: map[string]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		s.mu.Lock()
		content, ok := s.files[strings.ToLower(host)+r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(content))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

func (s *site) put(host, path, content string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[strings.ToLower(host)+path] = content
}

// env is a simulator on a loopback TLS port, with the DNS and HTTP
// servers its checks query.
type env struct {
	sim      *resellersim.Server
	zone     *zone
	site     *site
	url      string
	apiRoots *x509.CertPool
	roots    []*x509.Certificate
}

func newEnv(t *testing.T, mod func(*resellersim.Options)) *env {
	t.Helper()
	e := &env{zone: newZone(t), site: newSite(t)}
	opts := resellersim.Options{Username: testUser, APIKey: testKey, DNSServer: e.zone.addr, HTTPAddr: e.site.addr, BasePath: "/api"}
	if mod != nil {
		mod(&opts)
	}
	sim, err := resellersim.New(opts)
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
	e.url = "https://" + ln.Addr().String() + "/api"
	e.apiRoots = x509.NewCertPool()
	e.apiRoots.AppendCertsFromPEM(sim.APICAPEM())
	if e.roots, err = pemutil.Certificates(sim.RootPEM()); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) client(t *testing.T, log *zap.Logger, mods ...func(*reseller.ClientOptions)) *reseller.Client {
	t.Helper()
	opts := reseller.ClientOptions{URL: e.url, Username: testUser, APIKey: testKey, RootCAs: e.apiRoots, Logger: log,
		Sleep: func(context.Context, time.Duration) error { return nil }}
	for _, m := range mods {
		m(&opts)
	}
	c, err := reseller.NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) issuer(t *testing.T, opts reseller.IssuerOptions) *reseller.Issuer {
	t.Helper()
	if opts.Plan == "" {
		opts.Plan = resellersim.SectigoDVPlan
	}
	iss, err := reseller.NewIssuer(e.client(t, opts.Logger), opts)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// publish puts every challenge of auths in place, as certd's DCV engine
// would: TXT values added to the RRset, CNAMEs, files by host and path.
// Email challenges need nothing.
func (e *env) publish(t *testing.T, auths []ca.OrderAuthorization) {
	t.Helper()
	for _, a := range auths {
		for _, ch := range a.Challenges {
			switch ch.Method {
			case dcv.DNSTXT:
				e.zone.addTXT(ch.RecordName, ch.Value)
			case dcv.DNSCNAME:
				e.zone.setCNAME(ch.RecordName, ch.Value)
			case dcv.HTTPFile:
				e.site.put(ch.Domain, ch.Path, ch.Content)
			case dcv.Email:
			default:
				t.Errorf("unknown challenge method %q", ch.Method)
			}
		}
	}
}

// prove publishes what the order's validation details ask for.
func (e *env) prove(iss ca.Issuer, order ca.Order, domains []string) error {
	oa, ok := iss.(ca.OrderAuthorizer)
	if !ok {
		return fmt.Errorf("%T is not an OrderAuthorizer", iss)
	}
	auths, err := oa.Authorizations(ctx, order, ca.Request{Domains: domains})
	if err != nil {
		return err
	}
	for _, a := range auths {
		if a.Status != ca.AuthValid && len(a.Challenges) == 0 {
			return fmt.Errorf("nothing to publish for %s", a.Domain)
		}
		for _, ch := range a.Challenges {
			switch ch.Method {
			case dcv.DNSTXT:
				e.zone.addTXT(ch.RecordName, ch.Value)
			case dcv.DNSCNAME:
				e.zone.setCNAME(ch.RecordName, ch.Value)
			case dcv.HTTPFile:
				e.site.put(ch.Domain, ch.Path, ch.Content)
			}
		}
	}
	return nil
}
