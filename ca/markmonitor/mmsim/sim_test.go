package mmsim_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certd/certd/ca/markmonitor/mmsim"
)

const (
	key  = "test-key"
	user = "bot"
	pass = "test-password"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

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

type rig struct {
	sim  *mmsim.Server
	base string
	http *http.Client
	clk  *clock
}

func newRig(t *testing.T, mod func(*mmsim.Options)) *rig {
	t.Helper()
	clk := &clock{t: time.Now()}
	opts := mmsim.Options{APIKey: key, Username: user, Password: pass, Now: clk.Now}
	if mod != nil {
		mod(&opts)
	}
	sim, err := mmsim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = sim.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(sim.APICAPEM())
	return &rig{sim: sim, base: "https://" + ln.Addr().String(), clk: clk,
		http: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
}

// do sends a request; hdr adds headers ("" values are not sent).
func (r *rig) do(t *testing.T, method, path, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, r.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := r.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func (r *rig) login(t *testing.T) string {
	t.Helper()
	st, _, body := r.do(t, "POST", "/auth/v1/auth/authenticate", `{"username":"`+user+`","password":"`+pass+`"}`,
		map[string]string{"x-api-key": key, "Content-Type": "application/json"})
	if st != 200 {
		t.Fatalf("login: %d %s", st, body)
	}
	var a struct{ Token string }
	if err := json.Unmarshal([]byte(body), &a); err != nil || a.Token == "" {
		t.Fatalf("login answer %s", body)
	}
	return a.Token
}

func (r *rig) authed(tok string) map[string]string {
	return map[string]string{"x-api-key": key, "Authorization": "Bearer " + tok, "Content-Type": "application/json"}
}

func csrPEM(t *testing.T, names ...string) string {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: names[0]}, DNSNames: names}, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// org creates the organisation and returns its id and first contact's.
func (r *rig) org(t *testing.T, tok string) (string, string) {
	t.Helper()
	st, _, body := r.do(t, "POST", "/cert/v1/organization", `{"name":"Acme","address":"1 St","city":"Boise","country":"US","zip":"83702",
		"phone":"+1.2","provider":"DIGICERT","contacts":[{"firstName":"J","lastName":"D","email":"j@acme.example","phone":"+1.3",
		"contactTypes":["ORGANIZATION_CONTACT"]}]}`, r.authed(tok))
	if st != 201 {
		t.Fatalf("organization: %d %s", st, body)
	}
	var o struct {
		ResourceID string
		Contacts   []struct{ ResourceID string }
	}
	_ = json.Unmarshal([]byte(body), &o)
	return o.ResourceID, o.Contacts[0].ResourceID
}

func orderBody(orgID, contact, method string, names ...string) string {
	b, _ := json.Marshal(map[string]any{"organizationId": orgID, "contacts": []map[string]string{{"resourceId": contact}},
		"certificateType": "SSL_DV_GEOTRUST", "locale": "en", "provider": "DIGICERT",
		"cert": map[string]any{"commonName": names[0], "dnsNames": names, "csr": "CSR", "dcvMethod": method, "algorithmHash": "ECC"}})
	return string(b)
}

// The simulator refuses what the real API would.
func TestStrict(t *testing.T) {
	r := newRig(t, func(o *mmsim.Options) { o.RateLimit, o.StatusDelay = 30, time.Hour })
	tok := r.login(t)
	orgID, contact := r.org(t, tok)
	withCSR := func(body string, names ...string) string {
		return strings.Replace(body, `"csr":"CSR"`, `"csr":`+mustJSON(csrPEM(t, names...)), 1)
	}
	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		msg                      string
	}{
		{"no api key", "GET", "/cert/v1/organization", "", map[string]string{"Authorization": "Bearer " + tok}, 403, "x-api-key"},
		{"wrong api key", "GET", "/cert/v1/organization", "", map[string]string{"x-api-key": "nope", "Authorization": "Bearer " + tok}, 403, "x-api-key"},
		{"no token", "GET", "/cert/v1/organization", "", map[string]string{"x-api-key": key}, 401, "bearer"},
		{"forged token", "GET", "/cert/v1/organization", "", map[string]string{"x-api-key": key, "Authorization": "Bearer " + tok + "x"}, 401, "signature"},
		{"bad password", "POST", "/auth/v1/auth/authenticate", `{"username":"bot","password":"x"}`,
			map[string]string{"x-api-key": key, "Content-Type": "application/json"}, 401, "credentials"},
		{"unknown field", "POST", "/cert/v1/order", strings.Replace(withCSR(orderBody(orgID, contact, "DNS_TXT_TOKEN", "a.example.com"), "a.example.com"),
			`"locale"`, `"lang":"en","locale"`, 1), r.authed(tok), 400, "unknown field"},
		{"not json", "POST", "/cert/v1/order", `{}`, map[string]string{"x-api-key": key, "Authorization": "Bearer " + tok, "Content-Type": "text/plain"}, 415, "Content-Type"},
		{"unknown query", "GET", "/cert/v1/order?commonName=a.example.com", "", r.authed(tok), 400, "unknown query parameter"},
		{"http wildcard", "POST", "/cert/v1/order", withCSR(orderBody(orgID, contact, "HTTP_TOKEN", "b.example.com", "*.b.example.com"), "b.example.com"),
			r.authed(tok), 400, "wildcard"},
		{"algorithm", "POST", "/cert/v1/order", strings.Replace(withCSR(orderBody(orgID, contact, "DNS_TXT_TOKEN", "c.example.com"), "c.example.com"),
			`"ECC"`, `"RSA"`, 1), r.authed(tok), 400, "algorithmHash"},
		{"foreign contact", "POST", "/cert/v1/order", withCSR(orderBody(orgID, "0b8f3c1e-7a55-4d0e-9a51-3f7c2d1e8b90", "DNS_TXT_TOKEN", "d.example.com"),
			"d.example.com"), r.authed(tok), 400, "not a contact"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, _, body := r.do(t, c.method, c.path, c.body, c.hdr)
			if st != c.status || !strings.Contains(body, c.msg) {
				t.Fatalf("%d %s, want %d with %q", st, body, c.status, c.msg)
			}
		})
	}
	if n := len(r.sim.Ledger()); n != 0 {
		t.Fatalf("%d orders committed by refused requests", n)
	}

	// A valid order, then its download without the Accept header the
	// guide requires, and a reissue before it is issued.
	st, _, body := r.do(t, "POST", "/cert/v1/order", withCSR(orderBody(orgID, contact, "DNS_TXT_TOKEN", "e.example.com"), "e.example.com"), r.authed(tok))
	if st != 202 {
		t.Fatalf("order: %d %s", st, body)
	}
	var o struct{ ResourceID, Status string }
	_ = json.Unmarshal([]byte(body), &o)
	if o.Status != mmsim.StatusCreated || r.sim.OrdersFor([]string{"e.example.com"}) != 1 {
		t.Fatalf("order %+v", o)
	}
	if st, _, body := r.do(t, "GET", "/cert/v1/order/"+o.ResourceID+"/downloadCert?format=pem_all", "", r.authed(tok)); st != 406 {
		t.Fatalf("download without Accept: %d %s", st, body)
	}
	if st, _, body := r.do(t, "PATCH", "/cert/v1/order/"+o.ResourceID+"/reissue", `{"cert":{"csr":`+mustJSON(csrPEM(t, "e.example.com"))+`}}`,
		r.authed(tok)); st != 409 {
		t.Fatalf("reissue before issuance: %d %s", st, body)
	}

	// The limit: 30 cert calls per minute; the next is refused with a
	// Retry-After; a minute later calls go through again.
	var last int
	var hdr http.Header
	for range 40 {
		last, hdr, _ = r.do(t, "GET", "/cert/v1/organization", "", r.authed(tok))
		if last == 429 {
			break
		}
	}
	if last != 429 || hdr.Get("Retry-After") == "" || r.sim.Limited() != 1 {
		t.Fatalf("over the limit: %d, Retry-After %q", last, hdr.Get("Retry-After"))
	}
	r.clk.Advance(61 * time.Second)
	if st, _, _ := r.do(t, "GET", "/cert/v1/organization", "", r.authed(tok)); st != 200 {
		t.Fatalf("after a minute: %d", st)
	}

	// The JWT expires on the simulator's clock; refresh then fails too.
	r.clk.Advance(91 * time.Minute)
	if st, _, body := r.do(t, "GET", "/cert/v1/organization", "", r.authed(tok)); st != 401 || !strings.Contains(body, "expired") {
		t.Fatalf("an expired token: %d %s", st, body)
	}
	if st, _, _ := r.do(t, "GET", "/auth/v1/auth/refresh", "", map[string]string{"x-api-key": key, "Authorization": "Bearer " + tok}); st != 401 {
		t.Fatalf("refreshing an expired token: %d", st)
	}
	fresh := r.login(t)
	if st, _, _ := r.do(t, "GET", "/auth/v1/auth/refresh", "", map[string]string{"x-api-key": key, "Authorization": "Bearer " + fresh}); st != 200 {
		t.Fatalf("refreshing a valid token: %d", st)
	}
}

func mustJSON(v any) string {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v)
	return strings.TrimSpace(b.String())
}
