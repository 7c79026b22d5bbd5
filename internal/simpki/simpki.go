// Package simpki is the test PKI the CA simulators share: CA certificates
// with their keys, the leaf, server and client certificates they sign,
// and the saving and restoring of the CAs across a simulator's restart.
package simpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Authority is a CA certificate and its key.
type Authority struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  string // Cert, PEM encoded
	// IssuerURL, when set, is put in every leaf's Authority Information
	// Access caIssuers: where this authority's certificate is served.
	IssuerURL string
}

// NewSerial is a certificate serial number: 128 random bits, positive,
// never zero (RFC 5280 allows 20 octets).
func NewSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	b[0] |= 0x01
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b), nil
}

// PEMCert is der as a PEM CERTIFICATE block.
func PEMCert(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// NewAuthority makes a CA with a fresh P-256 key, subject cn in
// organisation org, valid from an hour before notBefore until
// notBefore+life: self-signed when parent is nil.
func NewAuthority(org, cn string, parent *Authority, notBefore time.Time, life time.Duration, pathLen int) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{org}},
		NotBefore:             notBefore.Add(-time.Hour),
		NotAfter:              notBefore.Add(life),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            pathLen,
		MaxPathLenZero:        pathLen == 0,
	}
	signer, signerCert := crypto.Signer(key), tmpl
	if parent != nil {
		signer, signerCert = parent.Key, parent.Cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, Key: key, PEM: PEMCert(der)}, nil
}

// IssueLeaf signs a TLS server certificate for pub and returns its DER.
func (a *Authority) IssueLeaf(serial *big.Int, pub crypto.PublicKey, cn string, names []string, notBefore, notAfter time.Time) ([]byte, error) {
	var dnsNames []string
	var ips []net.IP
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip) // an IP-address identifier: an IP SAN
			continue
		}
		dnsNames = append(dnsNames, n)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if a.IssuerURL != "" {
		tmpl.IssuingCertificateURL = []string{a.IssuerURL}
	}
	if _, ok := pub.(interface{ Size() int }); ok { // RSA keys also encipher keys in TLS 1.2
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	return x509.CreateCertificate(rand.Reader, tmpl, a.Cert, pub, a.Key)
}

// IssueClient signs an mTLS client certificate for cn and a fresh key,
// both returned PEM encoded.
func (a *Authority) IssueClient(cn string, now time.Time) (certPEM, keyPEM []byte, err error) {
	return a.issueEndEntity(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, now)
}

// IssueServer signs a simulator API's own TLS certificate for loopback
// (localhost, 127.0.0.1 and ::1) and a fresh key, both returned PEM
// encoded.
func (a *Authority) IssueServer(now time.Time) (certPEM, keyPEM []byte, err error) {
	return a.issueEndEntity(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, now)
}

// ServerTLS is IssueServer's certificate and key as a tls.Certificate.
func (a *Authority) ServerTLS(now time.Time) (tls.Certificate, error) {
	certPEM, keyPEM, err := a.IssueServer(now)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// issueEndEntity signs tmpl for a fresh P-256 key, valid for a year.
func (a *Authority) issueEndEntity(tmpl *x509.Certificate, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = NewSerial(); err != nil {
		return nil, nil, err
	}
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(365*24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, key.Public(), a.Key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return []byte(PEMCert(der)), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// NewCAs makes a simulator's three authorities, named "<name> Root",
// "<name> <issuing>" and "<name> API CA": a root (20 years), an issuing
// CA under it (5 years) that signs what the simulator issues, and a
// separate root for the API's own TLS certificate.
func NewCAs(org, name, rootSuffix, issuing string, now time.Time) (root, ica, apiCA *Authority, err error) {
	if root, err = NewAuthority(org, name+" Root"+rootSuffix, nil, now, 20*365*24*time.Hour, 1); err != nil {
		return nil, nil, nil, err
	}
	if ica, err = NewAuthority(org, name+" "+issuing, root, now, 5*365*24*time.Hour, 0); err != nil {
		return nil, nil, nil, err
	}
	if apiCA, err = NewAuthority(org, name+" API CA", nil, now, 20*365*24*time.Hour, 0); err != nil {
		return nil, nil, nil, err
	}
	return root, ica, apiCA, nil
}
