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
	"slices"
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
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(sim.APICAPEM())
	return serveRig(t, sim, clk, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}})
}

// serveRig serves sim on a loopback port for client.
func serveRig(t *testing.T, sim *mmsim.Server, clk *clock, client *http.Client) *rig {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = sim.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done; client.CloseIdleConnections() })
	return &rig{sim: sim, base: "https://" + ln.Addr().String(), clk: clk, http: client}
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

// Save and Load keep the CAs (the old client's trust in the API CA holds
// for the re-issued API certificate), the organisation and its contacts
// (found by name and email), the orders with their DCV tokens and
// certificates, and the ledger. JWTs are not kept: the client logs in
// again. The loaded simulator issues, and reissues an order placed before
// the save.
func TestSaveLoad(t *testing.T) {
	r := newRig(t, nil)
	tok := r.login(t)
	orgID, contact := r.org(t, tok)
	place := func(r *rig, tok, method string, names ...string) string {
		t.Helper()
		body := strings.Replace(orderBody(orgID, contact, method, names...), `"csr":"CSR"`, `"csr":`+mustJSON(csrPEM(t, names...)), 1)
		st, _, answer := r.do(t, "POST", "/cert/v1/order", body, r.authed(tok))
		if st != 202 {
			t.Fatalf("order: %d %s", st, answer)
		}
		var o struct{ ResourceID string }
		if err := json.Unmarshal([]byte(answer), &o); err != nil || o.ResourceID == "" {
			t.Fatalf("order answer %s", answer)
		}
		return o.ResourceID
	}
	download := func(r *rig, tok, id string) string {
		t.Helper()
		hdr := r.authed(tok)
		hdr["Accept"] = "application/x-pkcs7-certificates"
		st, _, body := r.do(t, "GET", "/cert/v1/order/"+id+"/downloadCert?format=pem_all", "", hdr)
		if st != 200 {
			t.Fatalf("download %s: %d %s", id, st, body)
		}
		return body
	}
	issued := place(r, tok, "EMAIL", "a.example.com")
	if err := r.sim.ClickEmailLink(issued, "a.example.com"); err != nil {
		t.Fatal(err)
	}
	pending := place(r, tok, "DNS_TXT_TOKEN", "b.example.com", "www.b.example.com")
	_, _, pendingView := r.do(t, "GET", "/cert/v1/order/"+pending, "", r.authed(tok)) // checked once: no DNS server
	if !strings.Contains(pendingView, `"dcvToken"`) || !strings.Contains(pendingView, "no DNS server") {
		t.Fatalf("the pending order: %s", pendingView)
	}
	pemAll := download(r, tok, issued)
	var buf bytes.Buffer
	if err := r.sim.Save(&buf); err != nil {
		t.Fatal(err)
	}

	opts := mmsim.Options{APIKey: key, Username: user, Password: pass, Now: r.clk.Now}
	s2, err := mmsim.Load(bytes.NewReader(buf.Bytes()), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s2.RootPEM(), r.sim.RootPEM()) || !bytes.Equal(s2.APICAPEM(), r.sim.APICAPEM()) {
		t.Fatal("the CAs changed")
	}
	if got := s2.Organizations("Acme"); !slices.Equal(got, []string{orgID}) || !s2.OrganizationValidated(orgID) {
		t.Fatalf("organizations after Load: %v", got)
	}
	if led := s2.Ledger(); len(led) != 2 || led[0].OrderID != issued || led[1].OrderID != pending || s2.OrdersFor([]string{"a.example.com"}) != 1 {
		t.Fatalf("ledger after Load: %+v", led)
	}
	if st, err := s2.OrderStatus(issued); err != nil || st.Status != mmsim.StatusIssued || s2.Certificates(issued) != 1 {
		t.Fatalf("the issued order after Load: %+v %v", st, err)
	}

	// The old client (its trust store) against the loaded simulator.
	r2 := serveRig(t, s2, r.clk, r.http)
	if st, _, body := r2.do(t, "GET", "/cert/v1/organization", "", r2.authed(tok)); st != 401 {
		t.Fatalf("a JWT survived the reload: %d %s", st, body)
	}
	tok2 := r2.login(t)
	st, _, body := r2.do(t, "GET", "/cert/v1/organization?name=acme", "", r2.authed(tok2))
	var orgs struct {
		Content []struct {
			ResourceID       string
			ValidationStatus string
			Contacts         []struct{ ResourceID string }
		}
	}
	if err := json.Unmarshal([]byte(body), &orgs); st != 200 || err != nil || len(orgs.Content) != 1 || orgs.Content[0].ResourceID != orgID ||
		orgs.Content[0].ValidationStatus != mmsim.OrgValidated || len(orgs.Content[0].Contacts) != 2 || orgs.Content[0].Contacts[0].ResourceID != contact {
		t.Fatalf("the organisation by name after Load: %d %s", st, body)
	}
	st, _, body = r2.do(t, "GET", "/cert/v1/contact?email=j@acme.example", "", r2.authed(tok2))
	if st != 200 || !strings.Contains(body, contact) || !strings.Contains(body, `"totalElements":1`) {
		t.Fatalf("the contact by email after Load: %d %s", st, body)
	}
	if _, _, view := r2.do(t, "GET", "/cert/v1/order/"+pending, "", r2.authed(tok2)); view != pendingView {
		t.Fatalf("the pending order after Load:\n%s\nwant\n%s", view, pendingView)
	}
	if st, _, body := r2.do(t, "GET", "/cert/v1/order?commonNames=b.example.com", "", r2.authed(tok2)); st != 200 || !strings.Contains(body, pending) {
		t.Fatalf("search after Load: %d %s", st, body)
	}
	if got := download(r2, tok2, issued); got != pemAll {
		t.Fatal("the certificate changed")
	}

	// A new order for the saved organisation and contact is issued under
	// the saved root; the order from before the save is reissued.
	verify := func(pemAll, name string) {
		t.Helper()
		roots, inter := x509.NewCertPool(), x509.NewCertPool()
		roots.AppendCertsFromPEM(r.sim.RootPEM())
		rest := []byte(pemAll)
		var leaf *x509.Certificate
		for {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if leaf == nil {
				leaf = c
			} else {
				inter.AddCert(c)
			}
		}
		if leaf == nil {
			t.Fatalf("no certificate in %q", pemAll)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name, CurrentTime: r.clk.Now()}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	fresh := place(r2, tok2, "EMAIL", "c.example.com")
	if err := s2.ClickEmailLink(fresh, "c.example.com"); err != nil {
		t.Fatal(err)
	}
	verify(download(r2, tok2, fresh), "c.example.com")
	st, _, body = r2.do(t, "PATCH", "/cert/v1/order/"+issued+"/reissue", `{"cert":{"csr":`+mustJSON(csrPEM(t, "a.example.com"))+`}}`, r2.authed(tok2))
	if st != 200 {
		t.Fatalf("reissue after Load: %d %s", st, body)
	}
	if st, err := s2.OrderStatus(issued); err != nil || st.Status != mmsim.StatusIssued || s2.Certificates(issued) != 2 {
		t.Fatalf("the reissued order: %+v %v", st, err)
	}
	reissued := download(r2, tok2, issued)
	if reissued == pemAll {
		t.Fatal("the reissue did not change the certificate")
	}
	verify(reissued, "a.example.com")
	if led := s2.Ledger(); len(led) != 4 || led[2].OrderID != fresh || !led[3].Reissue || s2.OrdersFor([]string{"c.example.com"}) != 1 {
		t.Fatalf("ledger: %+v", led)
	}

	// A second round trip is stable.
	var buf2 bytes.Buffer
	if err := s2.Save(&buf2); err != nil {
		t.Fatal(err)
	}
	s3, err := mmsim.Load(&buf2, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(s3.Ledger()) != 4 || s3.Certificates(issued) != 2 || !slices.Equal(s3.Organizations(""), []string{orgID}) {
		t.Fatalf("second Load: %+v", s3.Ledger())
	}

	// Broken state is refused.
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	doc["root"].(map[string]any)["key"] = ""
	keyless, _ := json.Marshal(doc)
	for name, bad := range map[string]string{
		"not JSON":      "{",
		"wrong version": `{"version": 2}`,
		"no keys":       `{"version": 1}`,
		"unknown field": `{"version": 1, "surprise": true}`,
		"keyless root":  string(keyless),
	} {
		if _, err := mmsim.Load(strings.NewReader(bad), opts); err == nil {
			t.Errorf("%s: loaded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
