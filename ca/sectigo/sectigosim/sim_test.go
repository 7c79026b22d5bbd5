package sectigosim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func newTestServer(t *testing.T, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	if opts.LoginName == "" {
		opts.LoginName, opts.LoginPassword = "reseller", "s3cret"
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.TLS = s.TLSConfig()
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return s, ts
}

func csrPEM(t *testing.T, names ...string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: names[0]}, DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// post sends form as the body and returns the answer parsed as the
// URL-encoded form, or the newline one (errorCode, errorMessage).
func post(t *testing.T, ts *httptest.Server, path string, form url.Values) url.Values {
	t.Helper()
	resp, err := ts.Client().Post(ts.URL+path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	return answerOf(t, resp)
}

func answerOf(t *testing.T, resp *http.Response) url.Values {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP %d: %s", resp.StatusCode, b)
	}
	if bytes.HasPrefix(b, []byte("errorCode=")) {
		v, err := url.ParseQuery(string(b))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	v := url.Values{"errorCode": {lines[0]}}
	if len(lines) > 1 {
		v.Set("errorMessage", lines[1])
	}
	return v
}

func login(kv ...string) url.Values {
	v := url.Values{"loginName": {"reseller"}, "loginPassword": {"s3cret"}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

func applyForm(t *testing.T, kv ...string) url.Values {
	f := login("product", "488", "days", "365", "serverSoftware", "-1", "isCustomerValidated", "N", "csr", csrPEM(t, "www.example.com"),
		"dcvMethod", "CNAME_CSR_HASH", "uniqueValue", "abc123", "responseFormat", "1", "showCertificateID", "Y")
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			f.Del(kv[i])
		} else {
			f.Set(kv[i], kv[i+1])
		}
	}
	return f
}

// The simulator refuses what the real API refuses, with its error codes.
func TestStrictWire(t *testing.T) {
	s, ts := newTestServer(t, Options{})
	cases := []struct {
		name string
		form url.Values
		code string
		msg  string
	}{
		{"case-sensitive names", func() url.Values { f := applyForm(t); f.Set("LoginName", "reseller"); return f }(), "-2", "LoginName is an unrecognised argument"},
		{"unknown parameter", applyForm(t, "dcvMethods", "EMAIL"), "-2", "dcvMethods"},
		{"missing login", applyForm(t, "loginName", ""), "-3", "loginName"},
		{"wrong password", applyForm(t, "loginPassword", "S3cret"), "-16", "Permission denied"},
		{"missing csr", applyForm(t, "csr", ""), "-3", "csr"},
		{"missing isCustomerValidated", applyForm(t, "isCustomerValidated", ""), "-3", "isCustomerValidated"},
		{"bad csr", applyForm(t, "csr", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), "-4", "csr"},
		{"no price", applyForm(t, "days", "17"), "-115", "No price"},
		{"unknown product", applyForm(t, "product", "1"), "-115", "product 1"},
		{"bad method", applyForm(t, "dcvMethod", "cname_csr_hash"), "-4", "dcvMethod"},
		{"long uniqueValue", applyForm(t, "uniqueValue", strings.Repeat("a", 21)), "-4", "uniqueValue"},
		{"wildcard by http", applyForm(t, "product", "489", "csr", csrPEM(t, "*.example.com"), "dcvMethod", "HTTP_CSR_HASH"), "-4", "wildcard"},
		{"wildcard on a plain product", applyForm(t, "csr", csrPEM(t, "*.example.com")), "-4", "wildcard"},
		{"email not listed", applyForm(t, "dcvMethod", "EMAIL", "dcvEmailAddress", "admin@www.example.com"), "-4", "GetDCVEmailAddressList"},
		{"domainNames on a single product", applyForm(t, "domainNames", "www.example.com"), "-4", "multi-domain"},
		{"multi-domain without names", applyForm(t, "product", "492"), "-3", "domainNames"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := post(t, ts, "/products/!AutoApplySSL", c.form)
			if a.Get("errorCode") != c.code || !strings.Contains(a.Get("errorMessage"), c.msg) {
				t.Fatalf("answer %v, want %s mentioning %q", a, c.code, c.msg)
			}
		})
	}
	if n := len(s.Ledger()); n != 0 {
		t.Fatalf("%d orders committed by refused calls", n)
	}

	// GET is -17; plain HTTP is -1.
	resp, err := ts.Client().Get(ts.URL + "/products/!AutoApplySSL?" + applyForm(t).Encode())
	if err != nil {
		t.Fatal(err)
	}
	if a := answerOf(t, resp); a.Get("errorCode") != "-17" {
		t.Fatalf("GET: %v", a)
	}
	plain := httptest.NewServer(s.Handler())
	defer plain.Close()
	resp, err = http.Post(plain.URL+"/products/!AutoApplySSL", "application/x-www-form-urlencoded", strings.NewReader(applyForm(t).Encode()))
	if err != nil {
		t.Fatal(err)
	}
	if a := answerOf(t, resp); a.Get("errorCode") != "-1" {
		t.Fatalf("plain HTTP: %v", a)
	}

	// An order, then the separators of AutoUpdateDCV.
	a := post(t, ts, "/products/!AutoApplySSL", applyForm(t, "product", "492", "csr", csrPEM(t, "a.example.com", "b.example.com"),
		"domainNames", "a.example.com,b.example.com", "primaryDomainName", "a.example.com"))
	if a.Get("errorCode") != "0" || a.Get("orderNumber") == "" || a.Get("certificateID") == "" || a.Get("uniqueValue") != "abc123" || a.Get("totalCost") == "" {
		t.Fatalf("apply: %v", a)
	}
	num := a.Get("orderNumber")
	for _, c := range []struct {
		form url.Values
		code string
	}{
		{login("orderNumber", num, "domainNames", "a.example.com,b.example.com", "newMethods", "HTTP_CSR_HASH,HTTP_CSR_HASH"), "-4"},
		{login("orderNumber", num, "domainNames", "a.example.com b.example.com", "newMethods", "HTTP_CSR_HASH HTTP_CSR_HASH"), "-4"},
		{login("orderNumber", num, "domainNames", "a.example.com b.example.com", "newMethods", "HTTP_CSR_HASH"), "-4"},
		{login("orderNumber", num, "newMethod", "HTTP_CSR_HASH"), "-3"}, // multi-domain: domainName needed
		{login("orderNumber", num, "domainNames", "a.example.com b.example.com", "newMethods", "HTTP_CSR_HASH,CNAME_CSR_HASH"), "0"},
	} {
		if a := post(t, ts, "/products/!AutoUpdateDCV", c.form); a.Get("errorCode") != c.code {
			t.Fatalf("AutoUpdateDCV %v: %v, want %s", c.form, a, c.code)
		}
	}
	st, err := s.Status(num)
	if err != nil || strings.Join(st.Methods, ",") != "HTTP_CSR_HASH,CNAME_CSR_HASH" {
		t.Fatalf("status %+v %v", st, err)
	}
	if n := s.OrdersFor([]string{"b.example.com", "a.example.com"}); n != 1 {
		t.Fatalf("OrdersFor: %d", n)
	}
}

// The call limit counts every call of the account in a minute.
func TestCallLimit(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	_, ts := newTestServer(t, Options{CallLimit: 2, Now: clock})
	form := login("domainName", "example.com")
	for i, want := range []string{"0", "0", "-42", "-42"} {
		if a := post(t, ts, "/products/!GetDCVEmailAddressList", form); a.Get("errorCode") != want {
			t.Fatalf("call %d: %v, want %s", i+1, a, want)
		}
	}
	now = now.Add(61 * time.Second)
	if a := post(t, ts, "/products/!GetDCVEmailAddressList", form); a.Get("errorCode") != "0" {
		t.Fatalf("after a minute: %v", a)
	}
}

// Resubmitting a CSR with the same uniqueValue fails the original order,
// as the reference says Sectigo does.
func TestTokenReuseFailsTheOriginal(t *testing.T) {
	s, ts := newTestServer(t, Options{})
	csr := csrPEM(t, "www.example.com")
	first := post(t, ts, "/products/!AutoApplySSL", applyForm(t, "csr", csr))
	second := post(t, ts, "/products/!AutoApplySSL", applyForm(t, "csr", csr))
	if first.Get("errorCode") != "0" || second.Get("errorCode") != "0" {
		t.Fatalf("%v %v", first, second)
	}
	st1, _ := s.Status(first.Get("orderNumber"))
	st2, _ := s.Status(second.Get("orderNumber"))
	if st1.State != stateRejected || st2.State != statePending {
		t.Fatalf("states %s, %s: want the original rejected", st1.State, st2.State)
	}
}

// Save and Load keep the CAs, the orders with their DCV state and the
// ledger: a restarted simulator issues the order it had.
func TestSaveLoad(t *testing.T) {
	s, ts := newTestServer(t, Options{})
	if a := post(t, ts, "/products/!GetDCVEmailAddressList", login("domainName", "www.example.com")); a.Get("errorCode") != "0" {
		t.Fatal(a)
	}
	a := post(t, ts, "/products/!AutoApplySSL", applyForm(t, "dcvMethod", "EMAIL", "dcvEmailAddress", "admin@example.com"))
	if a.Get("errorCode") != "0" {
		t.Fatal(a)
	}
	num := a.Get("orderNumber")
	var buf bytes.Buffer
	if err := s.Save(&buf); err != nil {
		t.Fatal(err)
	}
	s2, err := Load(bytes.NewReader(buf.Bytes()), Options{LoginName: "reseller", LoginPassword: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if string(s2.RootPEM()) != string(s.RootPEM()) || string(s2.APICAPEM()) != string(s.APICAPEM()) {
		t.Fatal("the CAs changed")
	}
	if len(s2.Ledger()) != 1 || s2.OrdersFor([]string{"www.example.com"}) != 1 || len(s2.Emails()) != 1 {
		t.Fatalf("ledger %v, emails %v", s2.Ledger(), s2.Emails())
	}
	if err := s2.ClickEmailLink(num, "www.example.com"); err != nil {
		t.Fatal(err)
	}
	ts2 := httptest.NewUnstartedServer(s2.Handler())
	ts2.TLS = s2.TLSConfig()
	ts2.StartTLS()
	defer ts2.Close()
	got := post(t, ts2, "/products/download/CollectSSL", login("orderNumber", num, "queryType", "2", "responseType", "3", "responseEncoding", "0",
		"responseFormat", "1", "showExtStatus", "Y"))
	if got.Get("errorCode") != "2" || got.Get("certificate") == "" || got.Get("certificateStatus") != "Issued" {
		t.Fatalf("collect after Load: %v", got)
	}
	again := post(t, ts2, "/products/!AutoApplySSL", applyForm(t, "uniqueValue", "other1"))
	if again.Get("orderNumber") == num {
		t.Fatal("Load reused an order number")
	}
	if _, err := Load(strings.NewReader(`{"version":2}`), Options{LoginName: "a", LoginPassword: "b"}); err == nil {
		t.Fatal("a state of another version loaded")
	}
}
