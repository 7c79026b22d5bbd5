package atlassim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// tenv is a simulator served over mTLS by its own Serve, with a logged-in
// client.
type tenv struct {
	s        *Server
	clk      *fakeClock
	base     string
	hc       *http.Client
	token    string
	cert     []byte // the client's mTLS credentials
	key      []byte
	apiCA    []byte
	stopOnce func()
}

func testOptions(clk *fakeClock) Options {
	return Options{APIKey: "k", APISecret: "s", Now: clk.Now}
}

func newTestEnv(t *testing.T, mod func(*Options)) *tenv {
	t.Helper()
	// The API's TLS is checked against the real clock: start there.
	clk := &fakeClock{t: time.Now().Truncate(time.Second)}
	opts := testOptions(clk)
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := s.ClientCredentials("sim-test")
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, s, clk, certPEM, keyPEM, s.APICAPEM())
}

// serve runs s on a loopback listener and logs in with the given mTLS
// credentials, trusting apiCA for the server.
func serve(t *testing.T, s *Server, clk *fakeClock, certPEM, keyPEM, apiCA []byte) *tenv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(apiCA) {
		t.Fatal("bad API CA")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	e := &tenv{s: s, clk: clk, base: "https://" + ln.Addr().String() + "/v2", hc: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		cert: certPEM, key: keyPEM, apiCA: apiCA, stopOnce: stop}
	e.login(t)
	return e
}

func (e *tenv) login(t *testing.T) {
	t.Helper()
	resp, body := e.do(t, "POST", "/login", map[string]string{"api_key": "k", "api_secret": "s"})
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("login: %v %s", err, body)
	}
	e.token = tok.AccessToken
}

// send makes one request; body nil means none.
func (e *tenv) send(method, p string, body any) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.base+p, rd)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json;charset=utf-8")
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func (e *tenv) do(t *testing.T, method, p string, body any) (*http.Response, []byte) {
	t.Helper()
	resp, b, err := e.send(method, p, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, p, err)
	}
	return resp, b
}

func (e *tenv) getJSON(t *testing.T, p string, v any) *http.Response {
	t.Helper()
	resp, b := e.do(t, "GET", p, nil)
	if resp.StatusCode == 200 && v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v: %s", p, err, b)
		}
	}
	return resp
}

// verify claims domain and verifies it by email; it returns the claim id.
func (e *tenv) verify(t *testing.T, domain string) string {
	t.Helper()
	id := e.createClaim(t, domain)
	resp, b := e.do(t, "POST", "/claims/domains/"+id+"/email", map[string]string{"email_address": "admin@" + domain})
	if resp.StatusCode != 201 {
		t.Fatalf("email: %d %s", resp.StatusCode, b)
	}
	if err := e.s.ClickEmailLink(id); err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *tenv) createClaim(t *testing.T, domain string) string {
	t.Helper()
	resp, b := e.do(t, "POST", "/claims/domains/"+url.QueryEscape(domain), nil)
	if resp.StatusCode != 201 {
		t.Fatalf("claim %s: %d %s", domain, resp.StatusCode, b)
	}
	return path.Base(resp.Header.Get("Location"))
}

// keyFields makes a fresh P-256 key as public_key and
// public_key_signature.
func keyFields(t *testing.T) (pubPEM, sig string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(spki)
	s, err := ecdsa.SignASN1(rand.Reader, k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}))), base64.StdEncoding.EncodeToString(s)
}

func (e *tenv) certBody(t *testing.T, names ...string) map[string]any {
	pub, sig := keyFields(t)
	return map[string]any{
		"validity":             map[string]any{"not_before": e.clk.Now().Unix()},
		"subject_dn":           map[string]any{"common_name": names[0]},
		"san":                  map[string]any{"dns_names": names},
		"public_key":           pub,
		"public_key_signature": sig,
	}
}

// order posts a certificate request for names: the status, the serial
// (on 201) and the problem's errors (otherwise).
func (e *tenv) order(t *testing.T, names ...string) (int, string, map[string]string) {
	t.Helper()
	resp, b := e.do(t, "POST", "/certificates", e.certBody(t, names...))
	if resp.StatusCode == 201 {
		return 201, path.Base(resp.Header.Get("Location")), nil
	}
	var p problem
	_ = json.Unmarshal(b, &p)
	return resp.StatusCode, "", p.Errors
}

func (e *tenv) mustOrder(t *testing.T, names ...string) string {
	t.Helper()
	st, serial, errs := e.order(t, names...)
	if st != 201 {
		t.Fatalf("order %v: %d %v", names, st, errs)
	}
	return serial
}

func (e *tenv) stats(t *testing.T, kind string, from, to time.Time) []string {
	t.Helper()
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", strconv.FormatInt(from.Unix(), 10))
	}
	if !to.IsZero() {
		q.Set("to", strconv.FormatInt(to.Unix(), 10))
	}
	var entries []statEntry
	if resp := e.getJSON(t, "/stats/"+kind+"?"+q.Encode(), &entries); resp.StatusCode != 200 {
		t.Fatalf("stats: %d", resp.StatusCode)
	}
	var out []string
	for _, s := range entries {
		out = append(out, s.SerialNumber)
	}
	return out
}

func (e *tenv) counter(t *testing.T, kind string) int {
	t.Helper()
	var v value
	if resp := e.getJSON(t, "/counters/certificates/"+kind, &v); resp.StatusCode != 200 {
		t.Fatalf("counter: %d", resp.StatusCode)
	}
	return v.Value
}

func (e *tenv) policy(t *testing.T) Policy {
	t.Helper()
	var p Policy
	if resp := e.getJSON(t, "/validationpolicy", &p); resp.StatusCode != 200 {
		t.Fatalf("policy: %d", resp.StatusCode)
	}
	return p
}

// --- 1. issuance lag in the reports

func TestStatsIssuedListsOnlyIssuedCertificates(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.IssueDelay = time.Minute })
	e.verify(t, "example.com")
	t0 := e.clk.Now()
	serial := e.mustOrder(t, "a.example.com")
	if resp, _ := e.do(t, "GET", "/certificates/"+serial, nil); resp.StatusCode != 202 {
		t.Fatalf("pending certificate: %d, want 202", resp.StatusCode)
	}
	if got := e.stats(t, "issued", t0.Add(-time.Minute), t0.Add(2*time.Minute)); len(got) != 0 {
		t.Fatalf("pending certificate listed in /stats/issued: %v", got)
	}
	if got := e.stats(t, "issued", time.Time{}, time.Time{}); len(got) != 0 {
		t.Fatalf("pending certificate listed in the default window: %v", got)
	}
	if n := e.counter(t, "issued"); n != 0 {
		t.Fatalf("pending certificate counted as issued: %d", n)
	}

	e.clk.Add(90 * time.Second) // ready at t0+60s
	if resp, _ := e.do(t, "GET", "/certificates/"+serial, nil); resp.StatusCode != 200 {
		t.Fatalf("issued certificate: %d", resp.StatusCode)
	}
	now := e.clk.Now()
	for _, c := range []struct {
		name     string
		from, to time.Time
		want     bool
	}{
		{"whole window", t0.Add(-time.Minute), now, true},
		{"default window", time.Time{}, time.Time{}, true},
		{"from after the request, before issuance", t0.Add(30 * time.Second), now, true},
		{"to after the request, before issuance", t0.Add(-time.Minute), t0.Add(30 * time.Second), false},
	} {
		got := e.stats(t, "issued", c.from, c.to)
		if slices.Contains(got, serial) != c.want {
			t.Errorf("%s: %v, want listed=%v", c.name, got, c.want)
		}
	}
	if n := e.counter(t, "issued"); n != 1 {
		t.Fatalf("issued counter %d, want 1", n)
	}

	// A rejected certificate never becomes issued.
	rejected := e.mustOrder(t, "b.example.com")
	if err := e.s.Reject(rejected); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(5 * time.Minute)
	if resp, _ := e.do(t, "GET", "/certificates/"+rejected, nil); resp.StatusCode != 422 {
		t.Fatalf("rejected certificate: %d", resp.StatusCode)
	}
	if got := e.stats(t, "issued", t0, e.clk.Now()); slices.Contains(got, rejected) || !slices.Contains(got, serial) {
		t.Fatalf("stats with a rejected certificate: %v", got)
	}
	if n := e.counter(t, "issued"); n != 1 {
		t.Fatalf("issued counter %d with a rejected certificate, want 1", n)
	}
}

func TestStatsListPendingRestoresEagerListing(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.IssueDelay = time.Hour; o.StatsListPending = true })
	e.verify(t, "example.com")
	t0 := e.clk.Now()
	serial := e.mustOrder(t, "a.example.com")
	rejected := e.mustOrder(t, "b.example.com")
	if err := e.s.Reject(rejected); err != nil {
		t.Fatal(err)
	}
	if got := e.stats(t, "issued", t0.Add(-time.Minute), t0); !slices.Equal(got, []string{serial}) {
		t.Fatalf("eager stats: %v, want [%s] (pending listed at its request time, rejected never)", got, serial)
	}
	if n := e.counter(t, "issued"); n != 1 {
		t.Fatalf("eager counter %d, want 1", n)
	}
}

// --- 2. the validation policy lists the verified claims

func TestPolicyListFollowsVerifiedClaims(t *testing.T) {
	e := newTestEnv(t, nil)

	// No claim: an empty list (not null), maxcount as configured, and every
	// name refused.
	_, raw := e.do(t, "GET", "/validationpolicy", nil)
	if !bytes.Contains(raw, []byte(`"dns_names":{"static":false,"list":[],"mincount":1,"maxcount":100}`)) {
		t.Fatalf("policy without claims: %s", raw)
	}
	st, _, errs := e.order(t, "www.example.com")
	if st != 422 || !strings.Contains(errs["san.dns_names[0]"], "matches no entry of the policy list") {
		t.Fatalf("order without claims: %d %v", st, errs)
	}

	e.verify(t, "example.com")
	e.verify(t, "example.org")
	e.verify(t, "example.com") // a second claim for the same domain: one entry
	e.createClaim(t, "example.net")
	p := e.policy(t)
	wantCom := `^(\*\.)?([a-z0-9-]+\.)*example\.com$`
	if want := []string{wantCom, `^(\*\.)?([a-z0-9-]+\.)*example\.org$`}; !slices.Equal(p.SAN.DNSNames.List, want) {
		t.Fatalf("dns_names.list %q, want %q", p.SAN.DNSNames.List, want)
	}
	if p.SAN.DNSNames.MaxCount != 100 || p.SAN.DNSNames.MinCount != 1 {
		t.Errorf("counts changed: %+v", p.SAN.DNSNames)
	}
	matches := func(list []string, name string) bool {
		for _, pat := range list {
			if regexp.MustCompile(pat).MatchString(name) {
				return true
			}
		}
		return false
	}
	cnFormat := []string{p.SubjectDN["common_name"].Format}
	for name, want := range map[string]bool{
		"example.com": true, "www.example.com": true, "*.example.com": true, "a.b.example.com": true, "*.a.example.org": true,
		"badexample.com": false, "example.com.evil": false, "*.*.example.com": false, "www.example.net": false, "wwwxexample.com": false,
	} {
		if got := matches(p.SAN.DNSNames.List, name); got != want {
			t.Errorf("list matches %q: %v, want %v", name, got, want)
		}
		if got := matches(cnFormat, name); got != want {
			t.Errorf("common_name format %s matches %q: %v, want %v", cnFormat[0], name, got, want)
		}
	}

	e.mustOrder(t, "www.example.com", "*.example.org")
	st, _, errs = e.order(t, "www.example.com", "x.example.net") // example.net is only PENDING
	if st != 422 || !strings.Contains(errs["san.dns_names[1]"], "matches no entry of the policy list") || errs["san.dns_names[0]"] != "" {
		t.Fatalf("order with an unverified name: %d %v", st, errs)
	}

	// The claim lapses: it leaves the list.
	e.clk.Add(366 * 24 * time.Hour)
	e.login(t)
	if p := e.policy(t); len(p.SAN.DNSNames.List) != 0 {
		t.Fatalf("lapsed claims still listed: %q", p.SAN.DNSNames.List)
	}
}

func TestStaticPolicyListKeepsConfiguredListAndCoverageCheck(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.StaticPolicyList = true })
	p := e.policy(t)
	def := DefaultPolicy()
	if !slices.Equal(p.SAN.DNSNames.List, def.SAN.DNSNames.List) || p.SubjectDN["common_name"].Format != def.SubjectDN["common_name"].Format {
		t.Fatalf("static policy changed: %q %q", p.SAN.DNSNames.List, p.SubjectDN["common_name"].Format)
	}
	st, _, errs := e.order(t, "www.example.com")
	if st != 422 || !strings.Contains(errs["san.dns_names[0]"], "is not covered by a verified domain claim") {
		t.Fatalf("unclaimed name: %d %v", st, errs)
	}
	e.verify(t, "example.com")
	if p := e.policy(t); !slices.Equal(p.SAN.DNSNames.List, def.SAN.DNSNames.List) {
		t.Fatalf("static list follows claims: %q", p.SAN.DNSNames.List)
	}
	e.mustOrder(t, "www.example.com")
}

// --- 3. claims the CA drops

func TestClaimsTheCADrops(t *testing.T) {
	for _, static := range []bool{false, true} {
		for _, op := range []string{"drop", "invalidate", "expire"} {
			t.Run(fmt.Sprintf("%s/static=%v", op, static), func(t *testing.T) {
				e := newTestEnv(t, func(o *Options) { o.StaticPolicyList = static })
				id := e.verify(t, "example.com")
				e.verify(t, "example.org")
				serial := e.mustOrder(t, "www.example.com")
				var err error
				switch op {
				case "drop":
					err = e.s.DropClaim("example.com")
				case "invalidate":
					err = e.s.InvalidateClaim("example.com.")
				case "expire":
					err = e.s.ExpireClaim("example.com")
				}
				if err != nil {
					t.Fatal(err)
				}

				st, _, errs := e.order(t, "www.example.com")
				want := "matches no entry of the policy list"
				if static {
					want = "is not covered by a verified domain claim"
				}
				if st != 422 || !strings.Contains(errs["san.dns_names[0]"], want) {
					t.Fatalf("order after %s: %d %v, want 422 %q", op, st, errs, want)
				}
				pub, sig := keyFields(t)
				if resp, b := e.do(t, "POST", "/certificates/"+serial+"/rekey", map[string]string{"public_key": pub, "public_key_signature": sig}); resp.StatusCode != 422 {
					t.Fatalf("rekey after %s: %d %s", op, resp.StatusCode, b)
				}
				e.mustOrder(t, "www.example.org") // other claims are untouched
				if !static {
					if p := e.policy(t); !slices.Equal(p.SAN.DNSNames.List, []string{claimPattern("example.org")}) {
						t.Fatalf("policy list after %s: %q", op, p.SAN.DNSNames.List)
					}
				}

				var c claimJSON
				resp := e.getJSON(t, "/claims/domains/"+id, &c)
				switch op {
				case "drop":
					if resp.StatusCode != 404 {
						t.Fatalf("GET dropped claim: %d", resp.StatusCode)
					}
					var all []claimJSON
					e.getJSON(t, "/claims/domains", &all)
					if len(all) != 1 || all[0].Domain != "example.org." {
						t.Fatalf("claims after drop: %+v", all)
					}
				case "invalidate":
					last := c.Log[len(c.Log)-1]
					if c.Status != "PENDING" || c.ExpiresAt != 0 || last.Status != "ERROR" || last.Description != "revalidation failed" {
						t.Fatalf("invalidated claim: %+v", c)
					}
					if err := e.s.ClickEmailLink(id); err == nil {
						t.Fatal("the old validation email still verifies an invalidated claim")
					}
				case "expire":
					if c.Status != "VERIFIED" || c.ExpiresAt != e.clk.Now().Unix() {
						t.Fatalf("expired claim: %+v", c)
					}
				}
			})
		}
	}
	e := newTestEnv(t, nil)
	for _, f := range []func(string) error{e.s.DropClaim, e.s.InvalidateClaim, e.s.ExpireClaim} {
		if err := f("nowhere.example"); err == nil {
			t.Error("no error for a domain without a claim")
		}
	}
}

// --- 4. faults, latency, ledger

// samplePath fills a route pattern's wildcards.
func samplePath(pattern string) (method, p string) {
	method, p, _ = strings.Cut(pattern, " ")
	r := strings.NewReplacer("{serial}", "0123ABCD", "{id}", "0123456789ABCDEF0123456789ABCDEF", "{kind}", "issued", "{domain}", "example.com")
	return method, r.Replace(p)
}

func TestInjected429WithRetryAfterOnEveryRoute(t *testing.T) {
	e := newTestEnv(t, nil)
	routes := e.s.routes()
	if len(routes) < 19 {
		t.Fatalf("%d routes", len(routes))
	}
	for _, r := range routes {
		e.s.InjectFault(r.route, Fault{Status: 429, RetryAfter: 6500 * time.Millisecond})
		method, p := samplePath(r.route)
		before := e.s.Requests(r.route)
		resp, b := e.do(t, method, p, nil)
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" ||
			resp.Header.Get("Content-Type") != "application/problem+json;charset=utf-8" {
			t.Errorf("%s: %d Retry-After=%q %s", r.route, resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
		if n := e.s.Requests(r.route); n != before+1 {
			t.Errorf("%s: request not counted by its route (%d)", r.route, n)
		}
	}
	// A fault is used once.
	if resp, _ := e.do(t, "GET", "/trustchain", nil); resp.StatusCode != 200 {
		t.Fatalf("second request: %d", resp.StatusCode)
	}
}

func TestDropAfterCommitOnCreateCertificate(t *testing.T) {
	e := newTestEnv(t, nil)
	e.verify(t, "example.com")
	e.s.InjectFault("POST /certificates", Fault{DropAfterCommit: true})
	t0 := e.clk.Now()
	resp, _, err := e.send("POST", "/certificates", e.certBody(t, "a.example.com"))
	if err == nil {
		t.Fatalf("dropped request answered: %d", resp.StatusCode)
	}
	led := e.s.Ledger()
	if len(led) != 1 || e.s.OrdersFor([]string{"a.example.com"}) != 1 {
		t.Fatalf("the dropped request was not committed: %+v", led)
	}
	if got := e.stats(t, "issued", t0.Add(-time.Minute), e.clk.Now()); !slices.Equal(got, []string{led[0].Serial}) {
		t.Fatalf("committed certificate not in stats: %v", got)
	}
}

func TestLatencyPerRouteAndDelayedFault(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.RouteLatency = map[string]time.Duration{"GET /trustchain": 200 * time.Millisecond} })
	start := time.Now()
	if resp, _ := e.do(t, "GET", "/trustchain", nil); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("GET /trustchain took %s, want >= 200ms", d)
	}

	// A delayed request the client gives up on is never done.
	e.verify(t, "example.com")
	e.s.InjectFault("POST /certificates", Fault{Delay: 5 * time.Second})
	e.hc.Timeout = 300 * time.Millisecond
	if _, _, err := e.send("POST", "/certificates", e.certBody(t, "a.example.com")); err == nil {
		t.Fatal("a 5s delay did not outlast a 300ms client timeout")
	}
	e.hc.Timeout = 30 * time.Second
	time.Sleep(50 * time.Millisecond)
	if n := len(e.s.Ledger()); n != 0 {
		t.Fatalf("an abandoned delayed request was committed: %d", n)
	}
	e.mustOrder(t, "a.example.com")
}

func TestOrdersForCountsNewOrdersBySet(t *testing.T) {
	e := newTestEnv(t, nil)
	e.verify(t, "example.com")
	first := e.mustOrder(t, "a.example.com", "b.example.com")
	e.mustOrder(t, "b.example.com", "a.example.com")
	e.mustOrder(t, "a.example.com")
	pub, sig := keyFields(t)
	resp, b := e.do(t, "POST", "/certificates/"+first+"/rekey", map[string]string{"public_key": pub, "public_key_signature": sig})
	if resp.StatusCode != 201 {
		t.Fatalf("rekey: %d %s", resp.StatusCode, b)
	}
	rekeyed := path.Base(resp.Header.Get("Location"))
	for _, c := range []struct {
		names []string
		want  int
	}{
		{[]string{"b.example.com", "a.example.com"}, 2},
		{[]string{"a.example.com", "b.example.com", "a.example.com"}, 2},
		{[]string{"a.example.com"}, 1},
		{[]string{"c.example.com"}, 0},
	} {
		if got := e.s.OrdersFor(c.names); got != c.want {
			t.Errorf("OrdersFor(%v) = %d, want %d", c.names, got, c.want)
		}
	}
	led := e.s.Ledger()
	if len(led) != 4 || !led[3].Rekey || led[3].RekeyOf != first || led[3].Serial != rekeyed || led[0].Rekey || led[0].RekeyOf != "" ||
		led[0].ClientCert != "sim-test" {
		t.Fatalf("ledger: %+v", led)
	}
	// The rekeyed certificate has the original's names and common name.
	var cj certJSON
	e.getJSON(t, "/certificates/"+rekeyed, &cj)
	blk, _ := pem.Decode([]byte(cj.Certificate))
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || leaf.Subject.CommonName != "a.example.com" || !slices.Equal(leaf.DNSNames, []string{"a.example.com", "b.example.com"}) {
		t.Fatalf("rekeyed: %v %v %v", err, leaf.Subject.CommonName, leaf.DNSNames)
	}
}

// --- 5. persisted state

func TestSaveLoadKeepsTrustClaimsCertificatesAndLedger(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.Quota = 10 })
	claimID := e.verify(t, "example.com")
	pendingID := e.createClaim(t, "example.org")
	first := e.mustOrder(t, "a.example.com")
	var chain []string
	e.getJSON(t, "/trustchain", &chain)
	var firstCert certJSON
	e.getJSON(t, "/certificates/"+first, &firstCert)
	var buf bytes.Buffer
	if err := e.s.Save(&buf); err != nil {
		t.Fatal(err)
	}
	e.stopOnce()

	s2, err := Load(bytes.NewReader(buf.Bytes()), testOptions(e.clk))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s2.RootPEM(), e.s.RootPEM()) || !bytes.Equal(s2.APICAPEM(), e.s.APICAPEM()) {
		t.Fatal("trust material changed")
	}
	// The old client credentials and API CA still work: mTLS and login.
	e2 := serve(t, s2, e.clk, e.cert, e.key, e.apiCA)
	old := *e2
	old.token = e.token
	if resp, _ := old.do(t, "GET", "/quotas/issuance", nil); resp.StatusCode != 401 {
		t.Fatalf("a bearer token survived the restart: %d", resp.StatusCode)
	}
	var q value
	if e2.getJSON(t, "/quotas/issuance", &q); q.Value != 9 {
		t.Fatalf("quota %d, want 9", q.Value)
	}
	var chain2 []string
	e2.getJSON(t, "/trustchain", &chain2)
	if !slices.Equal(chain, chain2) {
		t.Fatal("trust chain changed")
	}
	var got certJSON
	if resp := e2.getJSON(t, "/certificates/"+first, &got); resp.StatusCode != 200 || got != firstCert {
		t.Fatalf("certificate after reload: %d %+v", resp.StatusCode, got)
	}
	var c claimJSON
	if e2.getJSON(t, "/claims/domains/"+claimID, &c); c.Status != "VERIFIED" || c.Domain != "example.com." {
		t.Fatalf("claim after reload: %+v", c)
	}
	if e2.getJSON(t, "/claims/domains/"+pendingID, &c); c.Status != "PENDING" {
		t.Fatalf("pending claim after reload: %+v", c)
	}
	if p := e2.policy(t); !slices.Equal(p.SAN.DNSNames.List, []string{claimPattern("example.com")}) {
		t.Fatalf("policy after reload: %q", p.SAN.DNSNames.List)
	}

	// Issuance goes on without revalidation, under the same root.
	second := e2.mustOrder(t, "b.example.com")
	e2.getJSON(t, "/certificates/"+second, &got)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AppendCertsFromPEM(s2.RootPEM())
	for _, p := range chain2 {
		inter.AppendCertsFromPEM([]byte(p))
	}
	blk, _ := pem.Decode([]byte(got.Certificate))
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "b.example.com", CurrentTime: e.clk.Now()}); err != nil {
		t.Fatalf("new certificate does not chain to the saved root: %v", err)
	}
	if led := s2.Ledger(); len(led) != 2 || led[0].Serial != first || s2.OrdersFor([]string{"a.example.com"}) != 1 {
		t.Fatalf("ledger after reload: %+v", led)
	}
	if got := e2.stats(t, "issued", e.clk.Now().Add(-time.Hour), e.clk.Now()); !slices.Equal(got, []string{first, second}) {
		t.Fatalf("stats after reload: %v", got)
	}

	// A second round trip is stable.
	var buf2 bytes.Buffer
	if err := s2.Save(&buf2); err != nil {
		t.Fatal(err)
	}
	s3, err := Load(&buf2, testOptions(e.clk))
	if err != nil || len(s3.Ledger()) != 2 {
		t.Fatalf("second reload: %v", err)
	}

	// Broken state is refused.
	for name, bad := range map[string]string{
		"not JSON":      "{",
		"wrong version": `{"version": 99}`,
		"no keys":       `{"version": 1}`,
		"unknown field": `{"version": 1, "surprise": true}`,
	} {
		if _, err := Load(strings.NewReader(bad), testOptions(e.clk)); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

// Leaves name their issuing CA in AIA; the AIA handler serves every
// issuing CA ever used, across a rotation and across Save/Load.
func TestAIAServesEveryIssuingCAAcrossRotationAndReload(t *testing.T) {
	const base = "http://aia.invalid/ca"
	e := newTestEnv(t, func(o *Options) { o.RotateEvery = 1; o.AIABaseURL = base })
	e.verify(t, "example.com")
	var leaves []*x509.Certificate
	for _, n := range []string{"a.example.com", "b.example.com"} {
		var cj certJSON
		e.getJSON(t, "/certificates/"+e.mustOrder(t, n), &cj)
		blk, _ := pem.Decode([]byte(cj.Certificate))
		leaf, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, leaf)
	}
	fetch := func(h http.Handler, leaf *x509.Certificate) error {
		if len(leaf.IssuingCertificateURL) != 1 || !strings.HasPrefix(leaf.IssuingCertificateURL[0], base+"/") {
			return fmt.Errorf("AIA %v", leaf.IssuingCertificateURL)
		}
		u, _ := url.Parse(leaf.IssuingCertificateURL[0])
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", u.Path, nil))
		if rec.Code != 200 {
			return fmt.Errorf("GET %s: %d", u.Path, rec.Code)
		}
		ica, err := x509.ParseCertificate(rec.Body.Bytes())
		if err != nil {
			return err
		}
		return leaf.CheckSignatureFrom(ica)
	}
	for i, leaf := range leaves {
		if err := fetch(e.s.AIAHandler(), leaf); err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
	}
	if leaves[0].IssuingCertificateURL[0] == leaves[1].IssuingCertificateURL[0] {
		t.Fatal("no rotation between the two leaves")
	}
	var buf bytes.Buffer
	if err := e.s.Save(&buf); err != nil {
		t.Fatal(err)
	}
	opts := testOptions(e.clk)
	opts.AIABaseURL = base
	s2, err := Load(bytes.NewReader(buf.Bytes()), opts)
	if err != nil {
		t.Fatal(err)
	}
	for i, leaf := range leaves {
		if err := fetch(s2.AIAHandler(), leaf); err != nil {
			t.Fatalf("after reload, leaf %d: %v", i, err)
		}
	}
}
