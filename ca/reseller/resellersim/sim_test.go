package resellersim

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

type tsim struct {
	*Server
	url    string
	client *http.Client
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
	return &tsim{s, srv.URL, http.DefaultClient}
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
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if auth {
		req.SetBasicAuth("u", "k")
	}
	resp, err := s.client.Do(req)
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
	req, _ := http.NewRequest("POST", s.url+"/ssl-certificate", bytes.NewReader(j))
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

// Save and Load keep the CAs (the old trust in the API CA holds for the
// re-issued API certificate), the objects with their proofs and
// certificates, and the ledger: the loaded simulator renews an object
// made before the save, and refunds that renewal when it is deleted.
func TestSaveLoad(t *testing.T) {
	s := newSim(t, nil)
	st, m, raw := s.do(t, "POST", "/ssl-certificate", body(t, map[string]any{"dcv_type": "EMAIL", "approver_email_address": "admin@keep.example.com",
		"client_reference": "keep"}, "keep.example.com"), "application/json", true)
	if st != 201 {
		t.Fatalf("HTTP %d %s", st, raw)
	}
	active := m["id"].(string)
	if err := s.ApproveEmail(active, "keep.example.com"); err != nil {
		t.Fatal(err)
	}
	st, m, raw = s.do(t, "POST", "/ssl-certificate", body(t, map[string]any{"plan": DigiCertDVPlan}, "wait.example.com"), "application/json", true)
	if st != 201 {
		t.Fatalf("HTTP %d %s", st, raw)
	}
	pending := m["id"].(string)
	_, _, crt := s.do(t, "GET", "/ssl-certificate/"+active+"/download-crt", nil, "", true)
	_, details, _ := s.do(t, "GET", "/ssl-certificate/"+pending+"/validation-details", nil, "", true)
	if details["dcv_random_value"] == nil {
		t.Fatalf("validation details: %v", details)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.APICAPEM())
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	var buf bytes.Buffer
	if err := s.Save(&buf); err != nil {
		t.Fatal(err)
	}

	s2, err := Load(bytes.NewReader(buf.Bytes()), Options{Username: "u", APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s2.RootPEM(), s.RootPEM()) || !bytes.Equal(s2.APICAPEM(), s.APICAPEM()) {
		t.Fatal("the CAs changed")
	}
	led := s2.Ledger()
	if len(led) != 2 || led[0].ID != active || led[1].ID != pending || !led[0].At.Equal(s.Ledger()[0].At) || s2.OrdersFor([]string{"keep.example.com"}) != 1 {
		t.Fatalf("ledger after Load: %+v", led)
	}
	if len(s2.Emails()) != 1 {
		t.Fatalf("emails after Load: %+v", s2.Emails())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s2.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	s2c := &tsim{s2, "https://" + ln.Addr().String(), &http.Client{Transport: tr}}

	if st, m, raw := s2c.do(t, "GET", "/ssl-certificate/"+active, nil, "", true); st != 200 || m["status"] != "active" {
		t.Fatalf("the active object after Load: HTTP %d %s", st, raw)
	}
	if _, _, got := s2c.do(t, "GET", "/ssl-certificate/"+active+"/download-crt", nil, "", true); !bytes.Equal(got, crt) {
		t.Fatal("the certificate changed")
	}
	if _, got, _ := s2c.do(t, "GET", "/ssl-certificate/"+pending+"/validation-details", nil, "", true); !reflect.DeepEqual(got, details) {
		t.Fatalf("validation details after Load:\n%v\nwant\n%v", got, details)
	}
	if st, m, raw := s2c.do(t, "GET", "/ssl-certificate?client_reference=keep", nil, "", true); st != 200 || m["count"].(float64) != 1 {
		t.Fatalf("listing after Load: HTTP %d %s", st, raw)
	}

	// Renewing the object made before the save: charged, proved, issued
	// under the saved root for the new key.
	key := ecKey(t)
	st, m, raw = s2c.do(t, "POST", "/ssl-certificate/"+active+"/renew", map[string]any{"csr": csrPEM(t, key, "keep.example.com"), "dcv_type": "EMAIL",
		"approver_email_address": "admin@keep.example.com"}, "application/json", true)
	if st != 200 || m["id"] != active || m["status"] != "pending" {
		t.Fatalf("renew after Load: HTTP %d %s", st, raw)
	}
	if err := s2.ApproveEmail(active, "keep.example.com"); err != nil {
		t.Fatal(err)
	}
	_, _, crt2 := s2c.do(t, "GET", "/ssl-certificate/"+active+"/download-crt", nil, "", true)
	_, _, bundle := s2c.do(t, "GET", "/ssl-certificate/"+active+"/download-ca", nil, "", true)
	certs := pemCerts(t, append(crt2, bundle...))
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AppendCertsFromPEM(s.RootPEM())
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "keep.example.com"}); err != nil || !key.PublicKey.Equal(certs[0].PublicKey) {
		t.Fatalf("the renewed certificate: %v", err)
	}
	if led := s2.Ledger(); len(led) != 3 || led[2].ID != active || led[2].Kind != "renew" {
		t.Fatalf("ledger after the renewal: %+v", led)
	}
	if st, m, raw := s2c.do(t, "DELETE", "/ssl-certificate/"+active, nil, "", true); st != 200 || m["refunded"] != true {
		t.Fatalf("delete after Load: HTTP %d %s", st, raw)
	}
	if led := s2.Ledger(); led[0].Refunded || !led[2].Refunded {
		t.Fatalf("the refund went to the wrong charge: %+v", led)
	}

	// A second round trip is stable.
	var buf2 bytes.Buffer
	if err := s2.Save(&buf2); err != nil {
		t.Fatal(err)
	}
	s3, err := Load(&buf2, Options{Username: "u", APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if status, _, ok := s3.Order(active); !ok || status != "cancelled" || len(s3.Ledger()) != 3 {
		t.Fatalf("second Load: %s %v", status, s3.Ledger())
	}

	// Broken state is refused.
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	doc["ica"].(map[string]any)["key"] = ""
	keyless, _ := json.Marshal(doc)
	for name, bad := range map[string]string{
		"not JSON":      "{",
		"wrong version": `{"version": 2}`,
		"no keys":       `{"version": 1}`,
		"unknown field": `{"version": 1, "surprise": true}`,
		"keyless ICA":   string(keyless),
	} {
		if _, err := Load(strings.NewReader(bad), Options{Username: "u", APIKey: "k"}); err == nil {
			t.Errorf("%s: loaded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
