package sectigo

import (
	"crypto/md5" //nolint:gosec // Sectigo names the file and the CNAME owner by the CSR's MD5; it is an identifier, not a security function
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/certd/certd/dcv"
)

// The DCV methods of the Auto* API (dcvMethod, newMethod, newMethods).
const (
	MethodEmail = "EMAIL"
	MethodHTTP  = "HTTP_CSR_HASH"
	MethodHTTPS = "HTTPS_CSR_HASH"
	MethodCNAME = "CNAME_CSR_HASH"
)

// IsMethod reports whether m is one of the API's DCV method values
// (case-sensitive, as the API is).
func IsMethod(m string) bool {
	switch m {
	case MethodEmail, MethodHTTP, MethodHTTPS, MethodCNAME:
		return true
	}
	return false
}

// validationDir is where HTTP(S)_CSR_HASH looks for "<MD5>.txt".
const validationDir = "/.well-known/pki-validation/"

// CSRHashes are the two hashes of a CSR's DER that Sectigo's CSR-hash DCV
// is built from, in uppercase hex as Sectigo displays them.
type CSRHashes struct {
	MD5    string // 32 hex digits
	SHA256 string // 64 hex digits
}

// HashCSR hashes the DER of a PKCS#10 request (never its PEM text:
// whitespace would change the hash).
func HashCSR(der []byte) (CSRHashes, error) {
	if len(der) == 0 {
		return CSRHashes{}, errors.New("sectigo: the request has no CSR")
	}
	if strings.HasPrefix(strings.TrimSpace(string(der)), "-----BEGIN") {
		return CSRHashes{}, errors.New("sectigo: the CSR must be DER, not PEM (the hashes are over the DER)")
	}
	m := md5.Sum(der) //nolint:gosec // see the import
	s := sha256.Sum256(der)
	return CSRHashes{MD5: strings.ToUpper(hex.EncodeToString(m[:])), SHA256: strings.ToUpper(hex.EncodeToString(s[:]))}, nil
}

// UniqueValueLen is the length of the uniqueValue certd sends: the API
// takes at most 20 alphanumerics.
const UniqueValueLen = 20

// UniqueValue is the uniqueValue certd sends for an order with client
// reference ref: the first 20 uppercase hex digits of
// SHA-256("certd-sectigo-uniquevalue\x00" + ref). It is a pure function of
// ref, so the artefacts published before a restart are still the order's
// after it, and distinct per order, so a token is never reused (reusing
// one with the same CSR makes Sectigo fail the original order).
func UniqueValue(ref string) (string, error) {
	if ref == "" {
		return "", errors.New("sectigo: the request has no client reference to derive the uniqueValue from")
	}
	s := sha256.Sum256([]byte("certd-sectigo-uniquevalue\x00" + ref))
	return strings.ToUpper(hex.EncodeToString(s[:]))[:UniqueValueLen], nil
}

// HTTPPath is the file HTTP(S)_CSR_HASH fetches for h.
func HTTPPath(h CSRHashes) string { return validationDir + h.MD5 + ".txt" }

// HTTPContent is the file's body: the SHA-256 line, "sectigo.com", and
// the uniqueValue line when there is one, joined by "\n" with no newline
// after the last line (the reference leaves line endings open and its
// examples are line-based).
func HTTPContent(h CSRHashes, uniqueValue string) string {
	s := h.SHA256 + "\nsectigo.com"
	if uniqueValue != "" {
		s += "\n" + uniqueValue
	}
	return s
}

// CNAMEName is the owner of the CNAME_CSR_HASH record for domain (a
// wildcard's base name): "_" and the MD5, as a label under the domain. It
// is written in lower case: DNS names compare case-insensitively and
// certd's names are lower case.
func CNAMEName(h CSRHashes, domain string) string {
	return "_" + strings.ToLower(h.MD5) + "." + strings.TrimPrefix(domain, "*.")
}

// CNAMETarget is the record's target: the SHA-256 split into two
// 32-character labels, the uniqueValue label when there is one, then
// sectigo.com (no trailing dot). The hex stays uppercase as Sectigo shows
// it; DNS compares it case-insensitively.
func CNAMETarget(h CSRHashes, uniqueValue string) string {
	t := h.SHA256[:32] + "." + h.SHA256[32:]
	if uniqueValue != "" {
		t += "." + uniqueValue
	}
	return t + ".sectigo.com"
}

// challenge builds the artefact for domain proved by the API method m.
// email is the approver for EMAIL.
func challenge(h CSRHashes, uniqueValue, domain, m, email string) (dcv.Challenge, error) {
	ch := dcv.Challenge{Domain: domain, CARef: m}
	switch m {
	case MethodHTTP, MethodHTTPS:
		if strings.HasPrefix(domain, "*.") {
			return dcv.Challenge{}, fmt.Errorf("sectigo: %s cannot prove the wildcard %s (use CNAME_CSR_HASH or EMAIL)", m, domain)
		}
		ch.Method, ch.Path, ch.Content = dcv.HTTPFile, HTTPPath(h), HTTPContent(h, uniqueValue)
	case MethodCNAME:
		ch.Method, ch.RecordName, ch.Value = dcv.DNSCNAME, CNAMEName(h, domain), CNAMETarget(h, uniqueValue)
	case MethodEmail:
		if email == "" {
			return dcv.Challenge{}, fmt.Errorf("sectigo: EMAIL validation of %s needs an approver address (the proof's email, or the account's approver)", domain)
		}
		ch.Method, ch.EmailAddress = dcv.Email, email
	default:
		return dcv.Challenge{}, fmt.Errorf("sectigo: unknown DCV method %q", m)
	}
	return ch, nil
}
