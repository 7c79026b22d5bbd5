package reseller

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
)

// oidSignedData is PKCS #7 signedData (RFC 2315).
var oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}

// parseCerts reads the certificates of a download whatever its encoding:
// PEM (CERTIFICATE or PKCS7 blocks), DER certificates, a DER PKCS #7
// bundle, or either of these in bare base64.
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	return parseCertsDepth(b, 0)
}

func parseCertsDepth(b []byte, depth int) ([]*x509.Certificate, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, errors.New("empty")
	}
	if bytes.Contains(b, []byte("-----BEGIN")) {
		var out []*x509.Certificate
		rest := b
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			switch block.Type {
			case "CERTIFICATE":
				c, err := x509.ParseCertificate(block.Bytes)
				if err != nil {
					return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
				}
				out = append(out, c)
			case "PKCS7", "CERTIFICATES":
				cs, err := parsePKCS7(block.Bytes)
				if err != nil {
					return nil, err
				}
				out = append(out, cs...)
			}
		}
		if len(out) == 0 {
			return nil, errors.New("no PEM certificate")
		}
		return out, nil
	}
	if cs, err := x509.ParseCertificates(b); err == nil && len(cs) > 0 {
		return cs, nil
	}
	if cs, err := parsePKCS7(b); err == nil {
		return cs, nil
	}
	if depth == 0 {
		if der, err := base64.StdEncoding.DecodeString(string(bytes.Join(bytes.Fields(b), nil))); err == nil {
			return parseCertsDepth(der, 1)
		}
	}
	return nil, errors.New("neither PEM, DER nor PKCS #7 certificates")
}

// parsePKCS7 returns the certificates of a DER PKCS #7 signedData (the
// degenerate "certs-only" form CAs deliver chains in).
func parsePKCS7(der []byte) ([]*x509.Certificate, error) {
	var ci struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue
	}
	rest, err := asn1.Unmarshal(der, &ci)
	if err != nil {
		return nil, fmt.Errorf("PKCS #7: %w", err)
	}
	if len(rest) > 0 || !ci.ContentType.Equal(oidSignedData) || ci.Content.Class != asn1.ClassContextSpecific || ci.Content.Tag != 0 {
		return nil, errors.New("PKCS #7: not a signedData")
	}
	// [0] EXPLICIT wraps the SignedData SEQUENCE.
	var sd asn1.RawValue
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return nil, fmt.Errorf("PKCS #7 signedData: %w", err)
	}
	if sd.Tag != asn1.TagSequence {
		return nil, errors.New("PKCS #7: signedData is not a SEQUENCE")
	}
	// version, digestAlgorithms, contentInfo, [0] IMPLICIT certificates, ...
	inner := sd.Bytes
	for len(inner) > 0 {
		var el asn1.RawValue
		inner, err = asn1.Unmarshal(inner, &el)
		if err != nil {
			return nil, fmt.Errorf("PKCS #7 signedData: %w", err)
		}
		if el.Class == asn1.ClassContextSpecific && el.Tag == 0 {
			certs, err := x509.ParseCertificates(el.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PKCS #7 certificates: %w", err)
			}
			if len(certs) == 0 {
				break
			}
			return certs, nil
		}
	}
	return nil, errors.New("PKCS #7: no certificates")
}
