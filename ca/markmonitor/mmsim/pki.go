package mmsim

import "encoding/asn1"

// caOrg is the Organization of the simulator's CA certificates.
const caOrg = "certd Markmonitor simulator"

// oidSignedData and oidData are PKCS #7 content types (RFC 2315).
var (
	oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidData       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
)

// p7b encodes certs as a degenerate PKCS #7 signedData (no signers): a
// .p7b.
func p7b(certs ...[]byte) ([]byte, error) {
	var all []byte
	for _, c := range certs {
		all = append(all, c...)
	}
	emptySet := asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true}
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
	}{1, emptySet, asn1.RawValue{FullBytes: inner}, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: all}, emptySet})
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue
	}{oidSignedData, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: sd}})
}
