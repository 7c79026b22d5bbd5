package markmonitor

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// The sliding log never lets n+1 requests into any span, whatever the
// arrival pattern (a token bucket of n a minute would let 2n through).
func TestWindowNeverLetsMoreThanNThrough(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := newWindow(100, time.Minute, func() time.Time { return now })
	w.sleep = func(_ context.Context, d time.Duration) error {
		now = now.Add(d)
		return nil
	}
	var sent []time.Time
	for i := range 450 {
		if i%7 == 0 {
			now = now.Add(3 * time.Second) // some idle time now and then
		}
		if err := w.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, now)
	}
	for i := range sent {
		n := 0
		for j := i; j < len(sent) && sent[j].Sub(sent[i]) < time.Minute; j++ {
			n++
		}
		if n > 100 {
			t.Fatalf("%d requests in the minute from %s", n, sent[i])
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	full := newWindow(1, time.Hour, time.Now)
	_ = full.Wait(ctx)
	if err := full.Wait(ctx); err == nil {
		t.Fatal("a cancelled wait took a slot")
	}
}

func testChain(t *testing.T) (leaf, ica, root *x509.Certificate) {
	t.Helper()
	mk := func(cn string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), IsCA: isCA, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, key
	}
	root, rk := mk("root", true, nil, nil)
	ica, ik := mk("ica", true, root, rk)
	leaf, _ = mk("leaf", false, ica, ik)
	return leaf, ica, root
}

// p7 builds a degenerate PKCS #7 as the simulator does.
func p7(t *testing.T, certs ...*x509.Certificate) []byte {
	t.Helper()
	var all []byte
	for _, c := range certs {
		all = append(all, c.Raw...)
	}
	set := asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true}
	inner, _ := asn1.Marshal(struct{ T asn1.ObjectIdentifier }{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}})
	sd, err := asn1.Marshal(struct {
		V          int
		D, C, X, S asn1.RawValue
	}{1, set, asn1.RawValue{FullBytes: inner}, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: all}, set})
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(struct {
		T asn1.ObjectIdentifier
		C asn1.RawValue
	}{oidSignedData, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: sd}})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// The download is sniffed: PEM certificates, a PEM PKCS7 block, DER
// PKCS #7, or Base64 PKCS #7 all give the same certificates.
func TestParseBundle(t *testing.T) {
	leaf, ica, root := testChain(t)
	der := p7(t, leaf, ica, root)
	var pemAll []byte
	for _, c := range []*x509.Certificate{leaf, ica, root} {
		pemAll = append(pemAll, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	for name, body := range map[string][]byte{
		"pem_all":    pemAll,
		"pem pkcs7":  pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: der}),
		"der p7b":    der,
		"base64 p7b": []byte(base64.StdEncoding.EncodeToString(der) + "\n"),
	} {
		certs, err := parseBundle(body)
		if err != nil || len(certs) != 3 || !certs[0].Equal(leaf) || !certs[2].Equal(root) {
			t.Fatalf("%s: %d certificates, %v", name, len(certs), err)
		}
	}
	if _, err := parseBundle([]byte("<html>error</html>")); err == nil {
		t.Fatal("an HTML page parsed as a bundle")
	}
}

// Pages: Spring's shape with last or totalPages, other list keys, a bare
// array; a page shorter than size ends the listing.
func TestPageOf(t *testing.T) {
	cases := []struct {
		body        string
		page, first int
		n           int
		more        bool
	}{
		{`{"content":[{},{}],"last":false}`, 0, 0, 2, true},
		{`{"content":[{}],"last":true}`, 3, 0, 1, false},
		{`{"content":[{},{}],"totalPages":2}`, 1, 1, 2, true},
		{`{"content":[{},{}],"totalPages":2}`, 2, 1, 2, false},
		{`{"items":[{}]}`, 0, 0, 1, false},
		{`[{},{}]`, 0, 0, 2, true},
	}
	for _, c := range cases {
		items, more, err := pageOf([]byte(c.body), c.page, c.first, 2)
		if err != nil || len(items) != c.n || more != c.more {
			t.Fatalf("%s: %d items, more=%v, %v", c.body, len(items), more, err)
		}
	}
	if _, _, err := pageOf([]byte(`{"total":3}`), 0, 0, 2); err == nil {
		t.Fatal("a page without a list")
	}
}

// The JWT's exp claim is read to schedule its refresh; the token is
// found under any of the usual keys.
func TestTokenOf(t *testing.T) {
	const tok = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln"
	for _, body := range []string{`{"token":"` + tok + `"}`, `{"accessToken":"` + tok + `"}`, `"` + tok + `"`, tok + "\n"} {
		if got := tokenOf([]byte(body)); got != tok {
			t.Fatalf("%s: %q", body, got)
		}
	}
	exp, ok := jwtExpiry(tok)
	if !ok || exp.Unix() != 4102444800 {
		t.Fatalf("exp %v %v", exp, ok)
	}
}
