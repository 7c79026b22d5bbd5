package simpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

const year = 365 * 24 * time.Hour

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// pki is a root, an issuing CA it signed and a self-signed API CA.
func pki(t *testing.T) (root, ica, apiCA *Authority) {
	t.Helper()
	var err error
	if root, err = NewAuthority("certd test", "Test Root", nil, now, 20*year, 1); err != nil {
		t.Fatal(err)
	}
	if ica, err = NewAuthority("certd test", "Test Issuing CA", root, now, 5*year, 0); err != nil {
		t.Fatal(err)
	}
	if apiCA, err = NewAuthority("certd test", "Test API CA", nil, now, 20*year, 0); err != nil {
		t.Fatal(err)
	}
	return root, ica, apiCA
}

func pool(as ...*Authority) *x509.CertPool {
	p := x509.NewCertPool()
	for _, a := range as {
		p.AddCert(a.Cert)
	}
	return p
}

func TestLeafVerifies(t *testing.T) {
	root, ica, _ := pki(t)
	if got := ica.Cert.Subject.Organization; len(got) != 1 || got[0] != "certd test" {
		t.Errorf("organization %q", got)
	}
	if !ica.Cert.IsCA || ica.Cert.MaxPathLen != 0 || !ica.Cert.MaxPathLenZero || root.Cert.MaxPathLen != 1 {
		t.Errorf("path lengths: root %d, issuing CA %d (zero %v)", root.Cert.MaxPathLen, ica.Cert.MaxPathLen, ica.Cert.MaxPathLenZero)
	}
	if err := ica.Cert.CheckSignatureFrom(root.Cert); err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode([]byte(ica.PEM)); b == nil || string(b.Bytes) != string(ica.Cert.Raw) {
		t.Fatal("PEM is not the certificate")
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := NewSerial()
	if err != nil {
		t.Fatal(err)
	}
	if serial.Sign() <= 0 || serial.BitLen() > 128 {
		t.Fatalf("serial %x", serial)
	}
	der, err := ica.IssueLeaf(serial, key.Public(), "a.example", []string{"a.example", "b.example"}, now.Add(-time.Minute), now.Add(90*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.SerialNumber.Cmp(serial) != 0 || leaf.Subject.CommonName != "a.example" || leaf.KeyUsage&x509.KeyUsageKeyEncipherment != 0 {
		t.Errorf("leaf serial %x, CN %q, key usage %b", leaf.SerialNumber, leaf.Subject.CommonName, leaf.KeyUsage)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "b.example", Roots: pool(root), Intermediates: pool(ica), CurrentTime: now}); err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode([]byte(PEMCert(der))); b == nil || b.Type != "CERTIFICATE" || string(b.Bytes) != string(der) {
		t.Fatal("PEMCert")
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err = ica.IssueLeaf(serial, rsaKey.Public(), "a.example", []string{"a.example"}, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if leaf, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	if leaf.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
		t.Errorf("RSA leaf key usage %b: no key encipherment", leaf.KeyUsage)
	}
}

func TestServerAndClient(t *testing.T) {
	_, _, apiCA := pki(t)
	tc, err := apiCA.ServerTLS(now)
	if err != nil {
		t.Fatal(err)
	}
	srv := tc.Leaf
	if srv == nil {
		if srv, err = x509.ParseCertificate(tc.Certificate[0]); err != nil {
			t.Fatal(err)
		}
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := srv.Verify(x509.VerifyOptions{DNSName: host, Roots: pool(apiCA), CurrentTime: now}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}

	certPEM, keyPEM, err := apiCA.IssueClient("client 1", now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("client certificate is not PEM")
	}
	cl, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Verify(x509.VerifyOptions{Roots: pool(apiCA), CurrentTime: now.Add(364 * 24 * time.Hour),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	if cl.Subject.CommonName != "client 1" {
		t.Errorf("CN %q", cl.Subject.CommonName)
	}
	if kb, _ := pem.Decode(keyPEM); kb == nil || kb.Type != "PRIVATE KEY" {
		t.Fatal("client key is not PEM PKCS#8")
	}
}

func TestSaveRestore(t *testing.T) {
	root, ica, apiCA := pki(t)
	saved, err := SaveCAs(root, ica, apiCA)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(saved)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"root":{"cert":`, `"ica":{"cert":`, `"api_ca":{"cert":`, `"key":"-----BEGIN PRIVATE KEY-----`} {
		if !strings.Contains(string(js), k) {
			t.Errorf("saved JSON has no %s: %s", k, js)
		}
	}
	var back SavedCAs
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	r2, i2, a2, err := back.Restore()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct{ was, is *Authority }{{root, r2}, {ica, i2}, {apiCA, a2}} {
		if !p.was.Cert.Equal(p.is.Cert) || p.was.PEM != p.is.PEM {
			t.Errorf("%s: certificate not restored", p.was.Cert.Subject.CommonName)
		}
		if !p.was.Key.Public().(*ecdsa.PublicKey).Equal(p.is.Key.Public()) {
			t.Errorf("%s: key not restored", p.was.Cert.Subject.CommonName)
		}
	}
	// The restored issuing CA signs as the saved one did.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := NewSerial()
	der, err := i2.IssueLeaf(serial, key.Public(), "c.example", []string{"c.example"}, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "c.example", Roots: pool(root), Intermediates: pool(ica), CurrentTime: now}); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreRefusesTampered(t *testing.T) {
	root, ica, apiCA := pki(t)
	saved, err := SaveCAs(root, ica, apiCA)
	if err != nil {
		t.Fatal(err)
	}
	_, otherICA, _ := pki(t)
	foreign, err := otherICA.Save()
	if err != nil {
		t.Fatal(err)
	}
	leafPEM, leafKey, err := apiCA.IssueServer(now)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		tamper func(*SavedCAs)
		want   string
	}{
		{"key swapped", func(s *SavedCAs) { s.ICA.Key = s.Root.Key }, "issuing CA key does not match its certificate"},
		{"issuing CA of another root", func(s *SavedCAs) { s.ICA = foreign }, "the issuing CA is not signed by the root"},
		{"no certificate", func(s *SavedCAs) { s.Root.Cert = "" }, "root: no PEM certificate"},
		{"bad certificate", func(s *SavedCAs) {
			s.Root.Cert = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}))
		}, "root: x509"},
		{"no key", func(s *SavedCAs) { s.APICA.Key = s.APICA.Cert }, "API CA: no PEM PKCS#8 key"},
		{"not a CA", func(s *SavedCAs) { s.APICA = SavedAuthority{Cert: string(leafPEM), Key: string(leafKey)} }, "API CA is not a CA certificate"},
	} {
		s := saved
		c.tamper(&s)
		if _, _, _, err := s.Restore(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}
