package resellersim

import (
	"archive/zip"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type tsim struct {
	*Server
	srv *httptest.Server
}

func newSim(t *testing.T, mod func(*Options)) *tsim {
	t.Helper()
	opts := Options{Username: "u", APIKey: "k"}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &tsim{s, srv}
}

// do sends one request; body, when a string, is sent as is with ct.
func (s *tsim) do(t *testing.T, method, path string, body any, ct string, auth bool) (int, map[string]any, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if auth {
		req.SetBasicAuth("u", "k")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m, raw
}

func csrPEM(t *testing.T, key any, names ...string) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: names[0]}, DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func body(t *testing.T, extra map[string]any, names ...string) map[string]any {
	b := map[string]any{"csr": csrPEM(t, ecKey(t), names...), "dcv_type": "DNS", "plan": SectigoDVPlan}
	for k, v := range extra {
		if v == nil {
			delete(b, k)
		} else {
			b[k] = v
		}
	}
	return b
}

// The simulator refuses what the API would: no or wrong credentials, a
// wrong content type, unknown fields, bodies where none belong, unknown
// query parameters, small RSA keys, PEM without its lines, FILE for a
// wildcard, OV plans without the organisation, unknown plans.
func TestStrictness(t *testing.T) {
	s := newSim(t, nil)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	stripped := strings.Join(strings.Split(csrPEM(t, ecKey(t), "a.example.com"), "\n")[1:3], "")
	cases := []struct {
		name         string
		method, path string
		body         any
		ct           string
		noAuth       bool
		status       int
		field        string
	}{
		{"no credentials", "GET", "/ssl-certificate", nil, "", true, 401, ""},
		{"form content type", "POST", "/ssl-certificate", `{"csr":"x"}`, "application/x-www-form-urlencoded", false, 415, ""},
		{"no content type", "POST", "/ssl-certificate", `{"csr":"x"}`, "", false, 415, ""},
		{"unknown field", "POST", "/ssl-certificate", body(t, map[string]any{"domains": []string{"a"}}, "a.example.com"), "application/json", false, 400, "domains"},
		{"wrong type", "POST", "/ssl-certificate", body(t, map[string]any{"plan": 7}, "a.example.com"), "application/json", false, 400, "plan"},
		{"body on a GET", "GET", "/ssl-certificate", `{}`, "application/json", false, 400, ""},
		{"unknown query parameter", "GET", "/ssl-certificate?client_ref=x", nil, "", false, 400, ""},
		{"small RSA key", "POST", "/ssl-certificate", body(t, map[string]any{"csr": csrPEM(t, small, "a.example.com")}, "a.example.com"), "application/json", false, 400, "csr"},
		{"CSR without its PEM lines", "POST", "/ssl-certificate", body(t, map[string]any{"csr": stripped}, "a.example.com"), "application/json", false, 400, "csr"},
		{"FILE for a wildcard", "POST", "/ssl-certificate", body(t, map[string]any{"dcv_type": "FILE"}, "*.a.example.com"), "application/json", false, 400, "dcv_type"},
		{"EMAIL without approver", "POST", "/ssl-certificate", body(t, map[string]any{"dcv_type": "EMAIL"}, "a.example.com"), "application/json", false, 400, "approver_email_address"},
		{"OV without organisation", "POST", "/ssl-certificate", body(t, map[string]any{"plan": SectigoOVPlan}, "a.example.com"), "application/json", false, 400, "chamber_of_commerce"},
		{"unknown plan", "POST", "/ssl-certificate", body(t, map[string]any{"plan": "00000000-0000-4000-8000-000000000000"}, "a.example.com"), "application/json", false, 400, "plan"},
		{"no dcv_type", "POST", "/ssl-certificate", body(t, map[string]any{"dcv_type": nil}, "a.example.com"), "application/json", false, 400, "dcv_type"},
		{"unknown object", "GET", "/ssl-certificate/nope", nil, "", false, 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, m, raw := s.do(t, c.method, c.path, c.body, c.ct, !c.noAuth)
			if status != c.status {
				t.Fatalf("HTTP %d %s, want %d", status, raw, c.status)
			}
			if c.field != "" {
				if _, ok := m[c.field]; !ok {
					t.Errorf("the error does not name %s: %s", c.field, raw)
				}
			}
		})
	}
	if n := len(s.Ledger()); n != 0 {
		t.Errorf("%d charges for refused requests", n)
	}
}

// client_reference is a filter, not a uniqueness constraint: the same
// reference twice is two charges, and only the client's lookup prevents
// it.
func TestClientReferenceNotUnique(t *testing.T) {
	s := newSim(t, func(o *Options) { o.PageSize = 1 })
	for range 2 {
		if st, _, raw := s.do(t, "POST", "/ssl-certificate", body(t, map[string]any{"client_reference": "#123"}, "dup.example.com"), "application/json", true); st != 201 {
			t.Fatalf("HTTP %d %s", st, raw)
		}
	}
	if n := s.OrdersFor([]string{"dup.example.com"}); n != 2 {
		t.Errorf("%d orders", n)
	}
	status, m, raw := s.do(t, "GET", "/ssl-certificate?client_reference=%23123", nil, "", true)
	if status != 200 || m["count"].(float64) != 2 || m["next"] == nil || len(m["results"].([]any)) != 1 {
		t.Fatalf("HTTP %d %s", status, raw)
	}
	if status, m, _ := s.do(t, "GET", "/ssl-certificate?client_reference=other", nil, "", true); status != 200 || m["count"].(float64) != 0 {
		t.Errorf("another reference: %v", m)
	}
}

// A dropped answer commits the order: it is charged and listed.
func TestDropAfterCommit(t *testing.T) {
	s := newSim(t, func(o *Options) { o.BareList = true })
	s.InjectFault("POST /ssl-certificate", Fault{DropAfterCommit: true})
	j, _ := json.Marshal(body(t, map[string]any{"client_reference": "lost"}, "drop.example.com"))
	req, _ := http.NewRequest("POST", s.srv.URL+"/ssl-certificate", bytes.NewReader(j))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("u", "k")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("the answer was not dropped")
	}
	_, _, raw := s.do(t, "GET", "/ssl-certificate?client_reference=lost", nil, "", true)
	var list []map[string]any
	if err := json.Unmarshal(raw, &list); err != nil || len(list) != 1 || list[0]["status"] != "pending" {
		t.Fatalf("%s", raw)
	}
	if s.OrdersFor([]string{"drop.example.com"}) != 1 {
		t.Error("not charged")
	}
}

// Every download format carries the real chain; nothing is downloadable
// before issuance.
func TestDownloads(t *testing.T) {
	s := newSim(t, nil)
	key := ecKey(t)
	b := body(t, map[string]any{"csr": csrPEM(t, key, "dl.example.com"), "dcv_type": "EMAIL", "approver_email_address": "admin@dl.example.com"}, "dl.example.com")
	st, m, raw := s.do(t, "POST", "/ssl-certificate", b, "application/json", true)
	if st != 201 {
		t.Fatalf("HTTP %d %s", st, raw)
	}
	id := m["id"].(string)
	if st, _, _ := s.do(t, "GET", "/ssl-certificate/"+id+"/download-crt", nil, "", true); st != 409 {
		t.Errorf("download before issuance: HTTP %d", st)
	}
	if err := s.ApproveEmail(id, "dl.example.com"); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(s.RootPEM())
	check := func(format string, certs []*x509.Certificate) {
		t.Helper()
		if len(certs) < 2 {
			t.Fatalf("%s: %d certificates", format, len(certs))
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "dl.example.com"}); err != nil {
			t.Errorf("%s: %v", format, err)
		}
		if !key.PublicKey.Equal(certs[0].PublicKey) {
			t.Errorf("%s: not the CSR's key", format)
		}
	}
	_, _, crt := s.do(t, "GET", "/ssl-certificate/"+id+"/download-crt", nil, "", true)
	_, _, bundle := s.do(t, "GET", "/ssl-certificate/"+id+"/download-ca", nil, "", true)
	check("crt+ca", pemCerts(t, append(crt, bundle...)))
	_, _, p7 := s.do(t, "GET", "/ssl-certificate/"+id+"/download-pkcs7", nil, "", true)
	blk, _ := pem.Decode(p7)
	check("pkcs7", p7certs(t, blk.Bytes))
	_, _, z := s.do(t, "GET", "/ssl-certificate/"+id+"/download-zip", nil, "", true)
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, f := range zr.File {
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		all = append(all, b...)
	}
	check("zip", pemCerts(t, all))
	_, _, csr := s.do(t, "GET", "/ssl-certificate/"+id+"/download-csr", nil, "", true)
	if blk, _ := pem.Decode(csr); blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		t.Errorf("csr: %s", csr)
	}
	// Validate on an active order: nothing to check.
	if st, _, _ := s.do(t, "POST", "/ssl-certificate/"+id+"/validate", map[string]string{"dcv_type": "DNS", "domain": "dl.example.com"}, "application/json", true); st != 409 {
		t.Errorf("validate an active order: HTTP %d", st)
	}
}

// An order issues only after its delay; a rejected one never does.
func TestIssueDelayAndReject(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := newSim(t, func(o *Options) { o.Now = clock; o.IssueDelay = time.Hour })
	b := body(t, map[string]any{"dcv_type": "EMAIL", "approver_email_address": "admin@slow.example.com"}, "slow.example.com")
	_, m, _ := s.do(t, "POST", "/ssl-certificate", b, "application/json", true)
	id := m["id"].(string)
	if err := s.ApproveEmail(id, "slow.example.com"); err != nil {
		t.Fatal(err)
	}
	if _, m, _ := s.do(t, "GET", "/ssl-certificate/"+id, nil, "", true); m["status"] != "pending" {
		t.Errorf("before the delay: %v", m["status"])
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if _, m, _ := s.do(t, "GET", "/ssl-certificate/"+id, nil, "", true); m["status"] != "active" {
		t.Errorf("after the delay: %v", m["status"])
	}
	_, m, _ = s.do(t, "POST", "/ssl-certificate", body(t, nil, "rej.example.com"), "application/json", true)
	if err := s.Reject(m["id"].(string)); err != nil {
		t.Fatal(err)
	}
	if _, m, _ := s.do(t, "GET", "/ssl-certificate/"+m["id"].(string), nil, "", true); m["status"] != "rejected" {
		t.Errorf("rejected: %v", m["status"])
	}
}

func pemCerts(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func p7certs(t *testing.T, der []byte) []*x509.Certificate {
	t.Helper()
	var ci struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue
	}
	if _, err := asn1.Unmarshal(der, &ci); err != nil {
		t.Fatal(err)
	}
	var sd struct {
		Version      int
		Digests      asn1.RawValue
		ContentInfo  asn1.RawValue
		Certificates asn1.RawValue `asn1:"tag:0"`
		SignerInfos  asn1.RawValue
	}
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		t.Fatal(err)
	}
	certs, err := x509.ParseCertificates(sd.Certificates.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}
