package markmonitor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/certd/certd/ca"
)

// The bodies below use certd's reading of the API: the guide names the
// fields in prose only, so every JSON key is inferred (see the package
// doc). ClientOptions.JSONNames renames any of them on the wire, both
// ways, so a Swagger that spells them differently needs configuration,
// not code.

// DCV methods (guide §6.1.2; exact spellings).
const (
	MethodEmail    = "EMAIL"
	MethodDNSCNAME = "DNS_CNAME_TOKEN"
	MethodHTTP     = "HTTP_TOKEN"
	MethodDNSTXT   = "DNS_TXT_TOKEN"
)

// IsMethod reports whether m is one of the API's DCV methods.
func IsMethod(m string) bool {
	switch m {
	case MethodEmail, MethodDNSCNAME, MethodHTTP, MethodDNSTXT:
		return true
	}
	return false
}

// Contact types (guide §7.2).
const (
	ContactOrganization = "ORGANIZATION_CONTACT"
	ContactEVApprover   = "EXTENDED_VALIDATION_APPROVER"
	ContactTechnical    = "TECHNICAL_CONTACT" // added by Markmonitor to every organisation
)

// Algorithms (algorithmHash) and the optional SHA-1 root (rootHash).
const (
	AlgorithmRSA = "RSA"
	AlgorithmECC = "ECC"
	RootHashSHA1 = "SHA_1"
)

// Download formats (guide §7.4.5) and the Accept header the guide
// requires for either.
const (
	FormatPEMAll = "pem_all"
	FormatP7B    = "p7b"
	AcceptPKCS7  = "application/x-pkcs7-certificates"
)

// Order statuses (guide §7.4.2; exact spellings, CANCELED with one L).
const (
	StatusCreated               = "CREATED"
	StatusReissueRequestPending = "REISSUE_REQUEST_PENDING"
	StatusPending               = "DIGI_PENDING"
	StatusReissuePending        = "DIGI_REISSUE_PENDING"
	StatusReissueFailed         = "DIGI_REISSUE_FAILED"
	StatusProcessing            = "DIGI_PROCESSING"
	StatusIssued                = "DIGI_ISSUED"
	StatusRevoked               = "DIGI_REVOKED"
	StatusCanceled              = "DIGI_CANCELED"
	StatusNeedsApproval         = "DIGI_NEEDS_APPROVAL"
	StatusWaitingPickup         = "DIGI_WAITING_PICKUP"
	StatusRejected              = "DIGI_REJECTED"
	StatusExpired               = "DIGI_EXPIRED"
	StatusFailed                = "DIGI_FAILED"
)

// CertificateTypes are the products of guide §7.4.
func CertificateTypes() []string {
	return []string{"SSL_EV_BASIC", "SSL_EV_SECURESITE", "SSL_EV_SECURESITE_PRO", "SSL_EV_GEOTRUST_TRUEBIZID", "SSL_EV_THAWTE_WEBSERVER",
		"SSL_OV_BASIC", "SSL_OV_SECURESITE", "SSL_OV_SECURESITE_PRO", "SSL_OV_GEOTRUST_TRUEBIZID", "SSL_OV_THAWTE_WEBSERVER",
		"SSL_DV_GEOTRUST", "SSL_DV_THAWTE"}
}

// ValidationLevel is "DV", "OV" or "EV" for a certificate type of
// CertificateTypes ("" for any other).
func ValidationLevel(certType string) string {
	switch certType {
	case "SSL_EV_BASIC", "SSL_EV_SECURESITE", "SSL_EV_SECURESITE_PRO", "SSL_EV_GEOTRUST_TRUEBIZID", "SSL_EV_THAWTE_WEBSERVER":
		return "EV"
	case "SSL_OV_BASIC", "SSL_OV_SECURESITE", "SSL_OV_SECURESITE_PRO", "SSL_OV_GEOTRUST_TRUEBIZID", "SSL_OV_THAWTE_WEBSERVER":
		return "OV"
	case "SSL_DV_GEOTRUST", "SSL_DV_THAWTE":
		return "DV"
	}
	return ""
}

// Credentials is the authenticate body.
type Credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// NewContact is a contact to create, inside a new organisation or alone
// (then with OrganizationID).
type NewContact struct {
	OrganizationID string   `json:"organizationId,omitempty"`
	Provider       string   `json:"provider,omitempty"`
	FirstName      string   `json:"firstName"`
	LastName       string   `json:"lastName"`
	JobTitle       string   `json:"jobTitle,omitempty"`
	Email          string   `json:"email"`
	Phone          string   `json:"phone"`
	ContactTypes   []string `json:"contactTypes"`
}

// Contact is a contact as the API returns it.
type Contact struct {
	ResourceID     string   `json:"resourceId"`
	OrganizationID string   `json:"organizationId"`
	FirstName      string   `json:"firstName"`
	LastName       string   `json:"lastName"`
	Email          string   `json:"email"`
	ContactTypes   []string `json:"contactTypes"`
}

// NewOrganization is an organisation to create with its contacts.
type NewOrganization struct {
	Name     string       `json:"name"`
	Address  string       `json:"address"`
	Address2 string       `json:"address2,omitempty"`
	City     string       `json:"city"`
	State    string       `json:"state,omitempty"`
	Country  string       `json:"country"`
	Zip      string       `json:"zip"`
	Phone    string       `json:"phone"`
	Provider string       `json:"provider"`
	Contacts []NewContact `json:"contacts"`
}

// Organization is an organisation as the API returns it.
type Organization struct {
	ResourceID       string    `json:"resourceId"`
	Name             string    `json:"name"`
	ValidationStatus string    `json:"validationStatus"`
	Contacts         []Contact `json:"contacts"`
}

// ContactRef names a contact of an order.
type ContactRef struct {
	ResourceID string `json:"resourceId"`
}

// NewCert is the certificate part of a new order.
type NewCert struct {
	CommonName    string   `json:"commonName"`
	DNSNames      []string `json:"dnsNames"`
	CSR           string   `json:"csr"` // PEM
	DCVMethod     string   `json:"dcvMethod"`
	AlgorithmHash string   `json:"algorithmHash"`
	RootHash      string   `json:"rootHash,omitempty"`
}

// NewOrder is the body of POST /order.
type NewOrder struct {
	OrganizationID  string       `json:"organizationId"`
	Contacts        []ContactRef `json:"contacts"`
	CertificateType string       `json:"certificateType"`
	Locale          string       `json:"locale"`
	Provider        string       `json:"provider"`
	Cert            NewCert      `json:"cert"`
}

// ReissueCert is what a reissue changes: the CSR and the SANs (the common
// name cannot change).
type ReissueCert struct {
	CSR           string   `json:"csr"`
	DNSNames      []string `json:"dnsNames"`
	AlgorithmHash string   `json:"algorithmHash"`
}

// ReissueRequest is the body of the reissue action.
type ReissueRequest struct {
	Cert ReissueCert `json:"cert"`
}

// ValidateDomainsRequest is the body of the "validate domains" action.
type ValidateDomainsRequest struct {
	Domains []string `json:"domains"`
}

// RevokeRequest is the body of the revoke action.
type RevokeRequest struct {
	Reason string `json:"reason,omitempty"`
}

// DomainDCV is one name's domain control validation within an order.
type DomainDCV struct {
	Name string `json:"name"`
	// DCVToken is DigiCert's random value for the name (empty until the
	// order reaches DigiCert).
	DCVToken         string   `json:"dcvToken"`
	ValidationStatus string   `json:"validationStatus"`
	Emails           []string `json:"emails"`
	// Message is DigiCert's last word on the name's check, if any.
	Message string `json:"message"`
}

// CertInfo is the certificate part of an order.
type CertInfo struct {
	CommonName    string   `json:"commonName"`
	DNSNames      []string `json:"dnsNames"`
	CSR           string   `json:"csr"`
	DCVMethod     string   `json:"dcvMethod"`
	AlgorithmHash string   `json:"algorithmHash"`
	// DCVToken is an order-wide random value, used for names whose entry
	// carries none.
	DCVToken string      `json:"dcvToken"`
	Domains  []DomainDCV `json:"domains"`
}

// OrderInfo is an order as the API returns it.
type OrderInfo struct {
	ResourceID      string       `json:"resourceId"`
	OrganizationID  string       `json:"organizationId"`
	CertificateType string       `json:"certificateType"`
	Status          string       `json:"status"`
	CreatedDate     string       `json:"createdDate"`
	Contacts        []ContactRef `json:"contacts"`
	Cert            CertInfo     `json:"cert"`
}

// Created parses CreatedDate (RFC 3339, or ISO 8601 without a zone, read
// as UTC); ok=false when it is absent or unreadable.
func (o OrderInfo) Created() (time.Time, bool) {
	s := strings.TrimSpace(o.CreatedDate)
	if s == "" {
		return time.Time{}, false
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// Names is the order's name set: the common name and the DNS names.
func (o OrderInfo) Names() []string {
	return nameSet(append([]string{o.Cert.CommonName}, o.Cert.DNSNames...))
}

// renameKeys rewrites the object keys of a decoded JSON tree found in
// names, at any depth.
func renameKeys(v any, names map[string]string) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if n, ok := names[k]; ok {
				k = n
			}
			out[k] = renameKeys(val, names)
		}
		return out
	case []any:
		for i := range x {
			x[i] = renameKeys(x[i], names)
		}
		return x
	}
	return v
}

// recode decodes JSON, renames its keys and encodes it again; data is
// returned unchanged when names is empty.
func recode(data []byte, names map[string]string) ([]byte, error) {
	if len(names) == 0 || len(bytes.TrimSpace(data)) == 0 {
		return data, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(renameKeys(v, names))
}

// pageOf reads one page of a paged listing: the items, and whether more
// pages follow. The reference does not give the page's shape: Spring
// Data's ({"content": [...], "totalPages", "last"}) is read first, then
// "items", "data", "results" or a bare array; without a page count, a
// page shorter than size is the last.
func pageOf(data []byte, page, first, size int) ([]json.RawMessage, bool, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return nil, false, err
		}
		return items, len(items) >= size, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &obj); err != nil {
		return nil, false, err
	}
	var items []json.RawMessage
	found := false
	for _, k := range []string{"content", "items", "data", "results", "elements"} {
		if raw, ok := obj[k]; ok {
			if err := json.Unmarshal(raw, &items); err != nil {
				return nil, false, fmt.Errorf("%s: %w", k, err)
			}
			found = true
			break
		}
	}
	if !found {
		return nil, false, fmt.Errorf("no list of items in the page (expected content, items, data or results)")
	}
	if raw, ok := obj["last"]; ok {
		var last bool
		if json.Unmarshal(raw, &last) == nil {
			return items, !last && len(items) > 0, nil
		}
	}
	if raw, ok := obj["totalPages"]; ok {
		var total int
		if json.Unmarshal(raw, &total) == nil {
			// An empty page ends the listing whatever the count says,
			// rather than walking empty pages to the cap (found by
			// FuzzAnswers).
			return items, page-first+1 < total && len(items) > 0, nil
		}
	}
	return items, len(items) >= size, nil
}

// tokenOf reads the JWT from an authenticate or refresh answer: a JSON
// object with token, jwt, accessToken, access_token, idToken or id_token,
// a JSON string, or the bare token.
func tokenOf(data []byte) string {
	trimmed := bytes.TrimSpace(data)
	var obj map[string]any
	if json.Unmarshal(trimmed, &obj) == nil {
		for _, k := range []string{"token", "jwt", "accessToken", "access_token", "idToken", "id_token", "bearerToken"} {
			if s, ok := obj[k].(string); ok && s != "" {
				return s
			}
		}
		return ""
	}
	var s string
	if json.Unmarshal(trimmed, &s) == nil {
		return s
	}
	if t := string(trimmed); strings.Count(t, ".") == 2 && !strings.ContainsAny(t, " \n\t<{") {
		return t
	}
	return ""
}

// errorBody reads the CA's code and message from an error answer; the
// error body's shape is not documented, so common keys are tried.
func errorBody(data []byte) (code, msg string) {
	var obj map[string]any
	if json.Unmarshal(bytes.TrimSpace(data), &obj) != nil {
		return "", snippet(data)
	}
	str := func(keys ...string) string {
		for _, k := range keys {
			switch v := obj[k].(type) {
			case string:
				if v != "" {
					return v
				}
			case []any:
				var parts []string
				for _, p := range v {
					if s, ok := p.(string); ok {
						parts = append(parts, s)
					} else if m, ok := p.(map[string]any); ok {
						if s, ok := m["message"].(string); ok {
							parts = append(parts, s)
						}
					}
				}
				if len(parts) > 0 {
					return strings.Join(parts, "; ")
				}
			}
		}
		return ""
	}
	return str("code", "errorCode", "error"), str("message", "detail", "errorMessage", "error_description", "errors", "title")
}

// snippet quotes an answer in an error: one bounded line, and an HTML
// page (from a proxy in front of the API) by its title, never as markup.
func snippet(b []byte) string { return ca.Snippet(b, 300) }
