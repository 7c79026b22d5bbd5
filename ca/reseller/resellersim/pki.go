package resellersim

import (
	"crypto"
	"encoding/asn1"
	"time"

	"github.com/certd/certd/internal/simpki"
)

// caOrg is the Organization of the simulator's CA certificates.
const caOrg = "certd reseller simulator"

// issueLeaf signs a TLS server certificate for pub from ica, with a fresh
// serial and the first name as its common name.
func issueLeaf(ica *simpki.Authority, pub crypto.PublicKey, names []string, notBefore, notAfter time.Time) ([]byte, error) {
	serial, err := simpki.NewSerial()
	if err != nil {
		return nil, err
	}
	return ica.IssueLeaf(serial, pub, names[0], names, notBefore, notAfter)
}

var (
	oidData       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
)

// pkcs7 is a degenerate ("certs-only") PKCS #7 signedData holding ders,
// DER encoded, as CAs deliver chains.
func pkcs7(ders ...[]byte) ([]byte, error) {
	var certs []byte
	for _, d := range ders {
		certs = append(certs, d...)
	}
	inner, err := asn1.Marshal(struct{ ContentType asn1.ObjectIdentifier }{oidData})
	if err != nil {
		return nil, err
	}
	sd, err := asn1.Marshal(struct {
		Version          int
		DigestAlgorithms asn1.RawValue
		ContentInfo      asn1.RawValue
		Certificates     asn1.RawValue
		SignerInfos      asn1.RawValue
	}{
		Version:          1,
		DigestAlgorithms: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true},
		ContentInfo:      asn1.RawValue{FullBytes: inner},
		Certificates:     asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: certs},
		SignerInfos:      asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true},
	})
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue
	}{oidSignedData, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: sd}})
}
