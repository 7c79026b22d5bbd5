package pemutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestRoundTrips(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "t"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	cert, _ := x509.ParseCertificate(der)

	keyPEM, err := EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Key(keyPEM)
	if err != nil || !key.PublicKey.Equal(back.Public()) {
		t.Fatalf("key round trip: %v", err)
	}
	// Other blocks between certificates are skipped.
	data := append(EncodeCertificates(cert), keyPEM...)
	data = append(data, EncodeCertificates(cert)...)
	certs, err := Certificates(data)
	if err != nil || len(certs) != 2 || !certs[1].Equal(cert) {
		t.Fatalf("certificates: %d %v", len(certs), err)
	}
	for _, bad := range []string{"", "garbage", string(keyPEM)} {
		if _, err := Certificates([]byte(bad)); err == nil {
			t.Errorf("%q: no certificate, no error", bad)
		}
	}
	if _, err := Key(EncodeCertificates(cert)); err == nil || strings.Contains(err.Error(), "BEGIN") {
		t.Errorf("a certificate read as a key: %v", err)
	}
}
