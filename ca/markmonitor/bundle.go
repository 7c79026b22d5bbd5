package markmonitor

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// oidSignedData is PKCS #7 signedData (RFC 2315).
var oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}

type p7ContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,optional,tag:0"`
}

type p7SignedData struct {
	Version          int
	DigestAlgorithms asn1.RawValue
	ContentInfo      asn1.RawValue
	Certificates     asn1.RawValue `asn1:"optional,tag:0"`
	// crls and signerInfos follow; they are not read.
}

// parsePKCS7 reads the certificates of a degenerate PKCS #7 signedData
// (a .p7b), DER.
func parsePKCS7(der []byte) ([]*x509.Certificate, error) {
	var ci p7ContentInfo
	if _, err := asn1.Unmarshal(der, &ci); err != nil {
		return nil, fmt.Errorf("PKCS #7: %w", err)
	}
	if !ci.ContentType.Equal(oidSignedData) {
		return nil, fmt.Errorf("PKCS #7: content type %v is not signedData", ci.ContentType)
	}
	var sd p7SignedData
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return nil, fmt.Errorf("PKCS #7 signedData: %w", err)
	}
	if len(sd.Certificates.Bytes) == 0 {
		return nil, errors.New("PKCS #7: no certificates")
	}
	return x509.ParseCertificates(sd.Certificates.Bytes)
}

// parseBundle reads what downloadCert returned, whatever the format
// asked: PEM certificates (pem_all), a PEM PKCS7 block, a DER .p7b, or
// one in Base64. The reference warns that pem_all may come back as PEM
// despite the Accept header the guide requires; the body is sniffed, the
// Content-Type is not trusted.
func parseBundle(body []byte) ([]*x509.Certificate, error) {
	trimmed := bytes.TrimSpace(body)
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		var out []*x509.Certificate
		rest := trimmed
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			switch b.Type {
			case "CERTIFICATE":
				c, err := x509.ParseCertificate(b.Bytes)
				if err != nil {
					return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
				}
				out = append(out, c)
			case "PKCS7", "CMS":
				certs, err := parsePKCS7(b.Bytes)
				if err != nil {
					return nil, err
				}
				out = append(out, certs...)
			}
		}
		if len(out) == 0 {
			return nil, errors.New("no certificate in the PEM answer")
		}
		return out, nil
	}
	if len(trimmed) > 0 && trimmed[0] == 0x30 {
		return parsePKCS7(trimmed)
	}
	if der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(trimmed)), "")); err == nil && len(der) > 0 {
		return parsePKCS7(der)
	}
	return nil, fmt.Errorf("the answer is neither PEM nor PKCS #7: %q", snippet(body))
}
