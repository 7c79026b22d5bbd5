package atlas

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// PolicyError is a request the account's validation policy would refuse,
// caught before anything is sent. Field is the request field at fault.
type PolicyError struct {
	Field string
	Msg   string
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("atlas: validation policy: %s: %s", e.Field, e.Msg)
}

// RequestSpec is what certd wants certified.
type RequestSpec struct {
	// Domains are the names (punycode, lower case); the first is the
	// common name.
	Domains []string
	// Key is the certificate's private key: its public half is sent and,
	// when the policy requires, a proof of possession signed with it.
	Key crypto.Signer
	// CSR is a DER PKCS#10 request signed by Key, sent when the policy's
	// key_format is PKCS10.
	CSR []byte
	// NotBefore is the start of validity (now); NotAfter zero asks for
	// the policy maximum.
	NotBefore, NotAfter time.Time
}

// BuildRequest makes the body of POST /certificates from spec as policy
// allows: FORBIDDEN and STATIC fields are never sent, REQUIRED ones must
// be present and match their format, SAN counts and patterns, key type,
// size and format are checked. The first problem is returned as a
// *PolicyError naming its field.
func BuildRequest(p *Policy, spec RequestSpec) (*CertRequest, error) {
	if len(spec.Domains) == 0 {
		return nil, &PolicyError{Field: "san.dns_names", Msg: "no names to certify"}
	}
	req := &CertRequest{SubjectDN: map[string]string{}}

	// Key type and size.
	var typ string
	var bits int
	switch k := spec.Key.Public().(type) {
	case *ecdsa.PublicKey:
		typ, bits = "ECDSA", k.Curve.Params().BitSize
	case *rsa.PublicKey:
		typ, bits = "RSA", k.N.BitLen()
	default:
		return nil, &PolicyError{Field: "public_key", Msg: fmt.Sprintf("unsupported key %T", k)}
	}
	if p.PublicKey.KeyType != "" && p.PublicKey.KeyType != typ {
		return nil, &PolicyError{Field: "public_key", Msg: fmt.Sprintf("key type %s-%d, but the policy allows only %s keys", typ, bits, p.PublicKey.KeyType)}
	}
	if len(p.PublicKey.AllowedLengths) > 0 && !slices.Contains(p.PublicKey.AllowedLengths, bits) {
		return nil, &PolicyError{Field: "public_key", Msg: fmt.Sprintf("key length %d, but the policy allows %v", bits, p.PublicKey.AllowedLengths)}
	}
	spki, err := x509.MarshalPKIXPublicKey(spec.Key.Public())
	if err != nil {
		return nil, fmt.Errorf("atlas: encoding the public key: %w", err)
	}
	switch p.PublicKey.KeyFormat {
	case "PKCS10":
		if len(spec.CSR) == 0 {
			return nil, &PolicyError{Field: "public_key", Msg: "the policy wants a PKCS#10 CSR and none was given"}
		}
		req.PublicKey = pemText("CERTIFICATE REQUEST", spec.CSR)
	default:
		req.PublicKey = pemText("PUBLIC KEY", spki)
	}
	switch p.PublicKeySignature {
	case "REQUIRED":
		digest := sha256.Sum256(spki)
		sig, err := spec.Key.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("atlas: signing the proof of possession: %w", err)
		}
		req.PublicKeySignature = base64.StdEncoding.EncodeToString(sig)
	}

	// Subject: certd asks for domain-validated certificates, so the common
	// name is the only attribute it can fill.
	cn := spec.Domains[0]
	for attr, raw := range p.SubjectDN {
		presence, format := attrPolicy(raw)
		switch {
		case attr == "common_name" && (presence == "REQUIRED" || presence == "OPTIONAL"):
			if format != "" {
				re, err := regexp.Compile(format)
				if err != nil {
					return nil, &PolicyError{Field: "subject_dn.common_name", Msg: fmt.Sprintf("the policy's format %q is not a valid pattern", format)}
				}
				if !re.MatchString(cn) {
					return nil, &PolicyError{Field: "subject_dn.common_name", Msg: fmt.Sprintf("%q does not match the policy format %s", cn, format)}
				}
			}
			req.SubjectDN["common_name"] = cn
		case presence == "REQUIRED":
			return nil, &PolicyError{Field: "subject_dn." + attr, Msg: "REQUIRED by the account's validation policy; certd requests domain-validated certificates and has no value for it"}
		}
	}

	// SANs.
	lp := p.SAN.DNSNames
	if len(spec.Domains) < lp.MinCount || (lp.MaxCount > 0 && len(spec.Domains) > lp.MaxCount) || (lp.MaxCount == 0 && lp.Static) {
		return nil, &PolicyError{Field: "san.dns_names", Msg: fmt.Sprintf("%d names, but the policy allows %d to %d", len(spec.Domains), lp.MinCount, lp.MaxCount)}
	}
	if !lp.Static {
		for i, d := range spec.Domains {
			if !matchesList(lp.List, d) {
				return nil, &PolicyError{Field: fmt.Sprintf("san.dns_names[%d]", i), Msg: fmt.Sprintf("%q matches none of the policy's entries %v", d, lp.List)}
			}
		}
		req.SAN = &SAN{DNSNames: slices.Clone(spec.Domains)}
	}

	// Validity.
	req.Validity.NotBefore = spec.NotBefore.Unix()
	if !spec.NotAfter.IsZero() {
		life := spec.NotAfter.Sub(spec.NotBefore)
		if min := time.Duration(p.Validity.SecondsMin) * time.Second; life < min {
			return nil, &PolicyError{Field: "validity.not_after", Msg: fmt.Sprintf("lifetime %s is below the policy minimum %s", life, min)}
		}
		if max := time.Duration(p.Validity.SecondsMax) * time.Second; p.Validity.SecondsMax > 0 && life > max {
			return nil, &PolicyError{Field: "validity.not_after", Msg: fmt.Sprintf("lifetime %s exceeds the policy maximum %s", life, max)}
		}
		req.Validity.NotAfter = spec.NotAfter.Unix()
	}
	return req, nil
}

// attrPolicy reads a subject attribute's presence and format; list
// policies (organizational_unit) count as REQUIRED when mincount > 0.
func attrPolicy(raw json.RawMessage) (presence, format string) {
	var sp StringPolicy
	if err := json.Unmarshal(raw, &sp); err == nil && sp.Presence != "" {
		return sp.Presence, sp.Format
	}
	var lp ListPolicy
	if err := json.Unmarshal(raw, &lp); err == nil {
		switch {
		case lp.Static:
			return "STATIC", ""
		case lp.MinCount > 0:
			return "REQUIRED", ""
		}
	}
	return "OPTIONAL", ""
}

// matchesList: an entry is a regular expression, or a suffix such as
// ".example.com" when it does not compile or is written as one.
func matchesList(list []string, name string) bool {
	if len(list) == 0 {
		return true
	}
	for _, entry := range list {
		if strings.HasPrefix(entry, ".") && strings.HasSuffix(name, entry) {
			return true
		}
		if re, err := regexp.Compile(entry); err == nil && re.MatchString(name) {
			return true
		}
	}
	return false
}

// pemText is PEM with "\n" line breaks and no trailing newline, as HVCA
// wants in public_key.
func pemText(typ string, der []byte) string {
	return strings.TrimSuffix(string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})), "\n")
}

// FindIssued looks for a certificate issued since `since` for the public
// key spki (DER SubjectPublicKeyInfo): the lookup that settles an
// ambiguous CreateCertificate before anything is sent again. It walks
// /stats/issued in windows of at most 30 days and reads each certificate.
func (c *Client) FindIssued(ctx context.Context, spki []byte, since time.Time) (serial string, found bool, err error) {
	from := since.Add(-2 * time.Minute) // clock skew between certd and Atlas
	end := c.opts.Now().Add(2 * time.Minute)
	issuing := 0
	for from.Before(end) {
		to := from.Add(30 * 24 * time.Hour)
		if to.After(end) {
			to = end
		}
		entries, err := c.Stats(ctx, "issued", from, to)
		if err != nil {
			return "", false, fmt.Errorf("atlas: reconciling: %w", err)
		}
		for _, e := range entries {
			info, err := c.Certificate(ctx, e.Serial)
			if errors.Is(err, ErrNotReady) {
				issuing++ // could be ours: its key cannot be read yet
				continue
			}
			if IsStatus(err, 422) {
				continue // rejected by the CA: not a certificate anyone holds
			}
			if err != nil {
				return "", false, fmt.Errorf("atlas: reconciling: %w", err)
			}
			cert, err := parseCert(info.PEM)
			if err == nil && bytes.Equal(cert.RawSubjectPublicKeyInfo, spki) {
				return strings.ToUpper(e.Serial), true, nil
			}
		}
		from = to
	}
	if issuing > 0 {
		// Not found is only an answer when nothing is left unread.
		return "", false, fmt.Errorf("atlas: reconciling: %d certificates in the window are still being issued: %w", issuing, ErrNotReady)
	}
	return "", false, nil
}
