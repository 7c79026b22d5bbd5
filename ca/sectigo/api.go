package sectigo

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// ApplyRequest is an AutoApplySSL call.
type ApplyRequest struct {
	Product int
	Days    int
	// ServerSoftware is sent as is ("-1" when empty: it has no effect on
	// the certificate).
	ServerSoftware string
	// CSR is the DER request; it is sent as PEM.
	CSR []byte
	// DomainNames and PrimaryDomainName are for multi-domain (MDC/UCC)
	// products only; DomainNames is sent comma-separated.
	DomainNames       []string
	PrimaryDomainName string
	// DCVMethod is one of the Method constants.
	DCVMethod string
	// DCVEmailAddress is the approver of a single-domain order;
	// DCVEmailAddresses those of a multi-domain one, in DomainNames'
	// order (sent comma-separated).
	DCVEmailAddress   string
	DCVEmailAddresses []string
	// UniqueValue becomes part of the DCV token (≤ 20 alphanumerics).
	UniqueValue string
	// Test asks for an unbilled test order (test=Y).
	Test bool
}

// ApplyResult is what AutoApplySSL returned (responseFormat=1,
// showCertificateID=Y).
type ApplyResult struct {
	OrderNumber   string
	CertificateID string
	UniqueValue   string
	TotalCost     string
	// PaymentPending: errorCode 1, the order is placed but payment is
	// pending or required (the account's billing mode).
	PaymentPending bool
}

// Apply places an order (AutoApplySSL). A failure after the request was
// written is a *ca.Error with Ambiguous set.
func (c *Client) Apply(ctx context.Context, r ApplyRequest) (ApplyResult, error) {
	p := url.Values{}
	p.Set("product", strconv.Itoa(r.Product))
	p.Set("days", strconv.Itoa(r.Days))
	p.Set("isCustomerValidated", "N")
	p.Set("responseFormat", "1")
	p.Set("showCertificateID", "Y")
	if r.Test {
		p.Set("test", "Y")
	}
	if err := orderParams(p, r.CSR, r.ServerSoftware, r.DomainNames, r.PrimaryDomainName, r.DCVMethod, r.DCVEmailAddress, r.DCVEmailAddresses, r.UniqueValue); err != nil {
		return ApplyResult{}, c.classify("AutoApplySSL", err)
	}
	vals, err := c.call(ctx, "AutoApplySSL", pathApply, p, true)
	if err != nil {
		return ApplyResult{}, c.classify("AutoApplySSL", err)
	}
	res, err := readOrderAnswer("AutoApplySSL", vals)
	return res, c.classify("AutoApplySSL", err)
}

// orderParams sets the parameters AutoApplySSL and AutoReplaceSSL share.
func orderParams(p url.Values, csr []byte, serverSoftware string, domainNames []string, primary, method, email string, emails []string, uniqueValue string) error {
	if len(csr) == 0 {
		return errors.New("sectigo: no CSR")
	}
	if serverSoftware == "" {
		serverSoftware = "-1"
	}
	p.Set("serverSoftware", serverSoftware)
	p.Set("csr", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})))
	if len(domainNames) > 0 {
		p.Set("domainNames", strings.Join(domainNames, ","))
		p.Set("primaryDomainName", primary)
	}
	if method != "" {
		if !IsMethod(method) {
			return fmt.Errorf("sectigo: unknown DCV method %q", method)
		}
		p.Set("dcvMethod", method)
	}
	if email != "" {
		p.Set("dcvEmailAddress", email)
	}
	if len(emails) > 0 {
		p.Set("dcvEmailAddresses", strings.Join(emails, ","))
	}
	if uniqueValue != "" {
		p.Set("uniqueValue", uniqueValue)
	}
	return nil
}

// readOrderAnswer reads AutoApplySSL's or AutoReplaceSSL's answer: the
// URL-encoded form, or the newline-delimited one (orderNumber, amount,
// expectedDeliveryTime, certificateID, uniqueValue) if the endpoint
// ignored responseFormat. The order was committed: a missing orderNumber
// is an ambiguous outcome, not a refusal.
func readOrderAnswer(api string, vals url.Values) (ApplyResult, error) {
	res := ApplyResult{PaymentPending: vals.Get("errorCode") == "1"}
	if lines, ok := vals["line"]; ok {
		at := func(i int) string {
			if i < len(lines) {
				return strings.TrimSpace(lines[i])
			}
			return ""
		}
		res.OrderNumber, res.TotalCost, res.CertificateID, res.UniqueValue = at(0), at(1), at(3), at(4)
	} else {
		res.OrderNumber, res.CertificateID = vals.Get("orderNumber"), vals.Get("certificateID")
		res.UniqueValue, res.TotalCost = vals.Get("uniqueValue"), vals.Get("totalCost")
	}
	if res.OrderNumber == "" {
		return res, &httpError{API: api, Status: 200, Msg: "success without an orderNumber", Ambiguous: true}
	}
	return res, nil
}

// The CollectSSL queryType values.
const (
	QueryStatus      = 0 // status only
	QueryAll         = 1 // status, certificate and chain
	QueryCertificate = 2 // status and certificate (crt)
	QueryChain       = 3 // status and intermediates/roots (cabundle)
)

// The CollectSSL status codes (errorCode >= 0).
const (
	CollectProcessing = 0 // being processed, not issued yet
	CollectAvailable  = 1 // issued; not attached (queryType 0)
	CollectAttached   = 2 // issued and attached
)

// The parameters of a CollectSSL answer certd reads beyond errorCode. The
// reference does not give their names (it elides the extended-status and
// certificate fields of the URL-encoded answer): these are inferred, and
// the simulator answers with them.
const (
	FieldCertificateStatus = "certificateStatus"
	FieldValidationStatus  = "validationStatus"
	FieldCertificate       = "certificate"   // the leaf, Base64 DER (responseType=3, responseEncoding=0)
	FieldCACertificate     = "caCertificate" // one per chain certificate, the leaf's issuer first
)

// CollectRequest is a CollectSSL call: by CertificateID when set, else by
// OrderNumber.
type CollectRequest struct {
	OrderNumber   string
	CertificateID string
	QueryType     int
}

// CollectResult is a CollectSSL answer.
type CollectResult struct {
	// Status is the errorCode: CollectProcessing, CollectAvailable or
	// CollectAttached.
	Status int
	// CertificateStatus and ValidationStatus are the extended statuses
	// (showExtStatus=Y), as Sectigo words them.
	CertificateStatus string
	ValidationStatus  string
	// Certificate is the leaf's DER (queryType 1, 2); Chain the chain's
	// DERs (queryType 1, 3), the leaf's issuer first.
	Certificate []byte
	Chain       [][]byte
}

// Collect reads an order's status and, per queryType, its certificates
// (CollectSSL, individually Base64-encoded). Calls are serialised: Sectigo
// asks for no concurrent CollectSSL calls.
func (c *Client) Collect(ctx context.Context, r CollectRequest) (CollectResult, error) {
	p := url.Values{}
	switch {
	case r.CertificateID != "":
		p.Set("certificateID", r.CertificateID)
	case r.OrderNumber != "":
		p.Set("orderNumber", r.OrderNumber)
	default:
		return CollectResult{}, c.classify("CollectSSL", errors.New("sectigo: CollectSSL needs an orderNumber or a certificateID"))
	}
	p.Set("queryType", strconv.Itoa(r.QueryType))
	if r.QueryType != QueryStatus {
		p.Set("responseType", "3")     // individually encoded
		p.Set("responseEncoding", "0") // Base64
	}
	p.Set("showExtStatus", "Y")
	p.Set("responseFormat", "1")
	c.collect.Lock()
	vals, err := c.call(ctx, "CollectSSL", pathCollect, p, false)
	c.collect.Unlock()
	if err != nil {
		return CollectResult{}, c.classify("CollectSSL", err)
	}
	res := CollectResult{CertificateStatus: vals.Get(FieldCertificateStatus), ValidationStatus: vals.Get(FieldValidationStatus)}
	res.Status, _ = strconv.Atoi(vals.Get("errorCode"))
	if v := vals.Get(FieldCertificate); v != "" {
		if res.Certificate, err = decodeCert(v); err != nil {
			return CollectResult{}, c.classify("CollectSSL", fmt.Errorf("sectigo: CollectSSL: %s: %w", FieldCertificate, err))
		}
	}
	for i, v := range vals[FieldCACertificate] {
		der, err := decodeCert(v)
		if err != nil {
			return CollectResult{}, c.classify("CollectSSL", fmt.Errorf("sectigo: CollectSSL: %s %d: %w", FieldCACertificate, i+1, err))
		}
		res.Chain = append(res.Chain, der)
	}
	return res, nil
}

// decodeCert reads one individually encoded certificate: Base64 DER, or
// a PEM block.
func decodeCert(s string) ([]byte, error) {
	if b, _ := pem.Decode([]byte(s)); b != nil {
		return b.Bytes, nil
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		return nil, fmt.Errorf("not Base64: %w", err)
	}
	return der, nil
}

// UpdateDCVRequest is an AutoUpdateDCV call: for one domain (DomainName,
// NewMethod, NewDCVEmailAddress; DomainName may be empty for a
// single-domain order) or for several of a multi-domain order
// (DomainNames, NewMethods and NewDCVEmailAddresses, in one order).
type UpdateDCVRequest struct {
	OrderNumber        string
	DomainName         string
	NewMethod          string
	NewDCVEmailAddress string
	// The lists are sent with the separators the API wants: domainNames
	// and newDCVEmailAddresses space-separated, newMethods comma-separated.
	DomainNames          []string
	NewMethods           []string
	NewDCVEmailAddresses []string
}

// UpdateDCV changes (or, with the same method, retriggers) the DCV method
// of an order's domains (AutoUpdateDCV).
func (c *Client) UpdateDCV(ctx context.Context, r UpdateDCVRequest) error {
	p := url.Values{}
	p.Set("orderNumber", r.OrderNumber)
	if len(r.DomainNames) > 0 {
		if len(r.NewMethods) != len(r.DomainNames) || len(r.NewDCVEmailAddresses) > 0 && len(r.NewDCVEmailAddresses) != len(r.DomainNames) {
			return c.classify("AutoUpdateDCV", errors.New("sectigo: AutoUpdateDCV: newMethods and newDCVEmailAddresses must match domainNames one for one"))
		}
		p.Set("domainNames", strings.Join(r.DomainNames, " "))
		p.Set("newMethods", strings.Join(r.NewMethods, ","))
		if len(r.NewDCVEmailAddresses) > 0 {
			p.Set("newDCVEmailAddresses", strings.Join(r.NewDCVEmailAddresses, " "))
		}
	} else {
		if r.DomainName != "" {
			p.Set("domainName", r.DomainName)
		}
		p.Set("newMethod", r.NewMethod)
		if r.NewDCVEmailAddress != "" {
			p.Set("newDCVEmailAddress", r.NewDCVEmailAddress)
		}
	}
	_, err := c.call(ctx, "AutoUpdateDCV", pathUpdate, p, false)
	return c.classify("AutoUpdateDCV", err)
}

// ResendDCVEmail resends the DCV email (to email, or the last address when
// empty); for the non-email methods it resets the re-check schedule.
func (c *Client) ResendDCVEmail(ctx context.Context, orderNumber, email string) error {
	p := url.Values{}
	p.Set("orderNumber", orderNumber)
	if email != "" {
		p.Set("dcvEmailAddress", email)
	}
	_, err := c.call(ctx, "ResendDCVEmail", pathResend, p, false)
	return c.classify("ResendDCVEmail", err)
}

// ReplaceRequest is an AutoReplaceSSL call (a reissue of an order).
type ReplaceRequest struct {
	OrderNumber       string
	CSR               []byte
	ServerSoftware    string
	DomainNames       []string
	PrimaryDomainName string
	DCVMethod         string
	DCVEmailAddress   string
	DCVEmailAddresses []string
	UniqueValue       string
}

// Replace reissues an order for a new CSR (AutoReplaceSSL). The old
// certificate is not revoked. A failure after the request was written is
// ambiguous.
func (c *Client) Replace(ctx context.Context, r ReplaceRequest) (ApplyResult, error) {
	p := url.Values{}
	p.Set("orderNumber", r.OrderNumber)
	p.Set("responseFormat", "1")
	if err := orderParams(p, r.CSR, r.ServerSoftware, r.DomainNames, r.PrimaryDomainName, r.DCVMethod, r.DCVEmailAddress, r.DCVEmailAddresses, r.UniqueValue); err != nil {
		return ApplyResult{}, c.classify("AutoReplaceSSL", err)
	}
	vals, err := c.call(ctx, "AutoReplaceSSL", pathReplace, p, true)
	if err != nil {
		return ApplyResult{}, c.classify("AutoReplaceSSL", err)
	}
	res, err := readOrderAnswer("AutoReplaceSSL", vals)
	return res, c.classify("AutoReplaceSSL", err)
}

// RevocationCode is AutoRevokeSSL's codeReason.
type RevocationCode int

// The codeReason values.
const (
	RevokeUnspecified          RevocationCode = 0
	RevokeKeyCompromise        RevocationCode = 1
	RevokeAffiliationChanged   RevocationCode = 3
	RevokeSuperseded           RevocationCode = 4
	RevokeCessationOfOperation RevocationCode = 5
)

// RevokeRequest is an AutoRevokeSSL call: by CertificateID when set, else
// by OrderNumber.
type RevokeRequest struct {
	OrderNumber   string
	CertificateID string
	// Reason is the free text (≤ 1024); Sectigo wants it.
	Reason string
	Code   RevocationCode
}

// Revoke revokes a certificate, or rejects an order not issued yet
// (AutoRevokeSSL).
func (c *Client) Revoke(ctx context.Context, r RevokeRequest) error {
	p := url.Values{}
	switch {
	case r.CertificateID != "":
		p.Set("certificateID", r.CertificateID)
	case r.OrderNumber != "":
		p.Set("orderNumber", r.OrderNumber)
	default:
		return c.classify("AutoRevokeSSL", errors.New("sectigo: AutoRevokeSSL needs an orderNumber or a certificateID"))
	}
	reason := r.Reason
	if reason == "" {
		reason = "revoked by certd"
	}
	if len(reason) > 1024 {
		reason = reason[:1024]
	}
	p.Set("revocationReason", reason)
	switch r.Code {
	case RevokeUnspecified, RevokeKeyCompromise, RevokeAffiliationChanged, RevokeSuperseded, RevokeCessationOfOperation:
	default:
		return c.classify("AutoRevokeSSL", fmt.Errorf("sectigo: codeReason %d is not one the API takes (0, 1, 3, 4, 5)", r.Code))
	}
	p.Set("codeReason", strconv.Itoa(int(r.Code)))
	_, err := c.call(ctx, "AutoRevokeSSL", pathRevoke, p, true)
	return c.classify("AutoRevokeSSL", err)
}

// DCVEmailAddresses lists the approver addresses Sectigo accepts for
// domain (GetDCVEmailAddressList). An address is usable for 24 hours
// after it was listed. The text answer's lines after the status are read
// for anything that looks like an address (a "label:" prefix is dropped):
// the reference does not give its layout.
func (c *Client) DCVEmailAddresses(ctx context.Context, domain string) ([]string, error) {
	p := url.Values{}
	p.Set("domainName", domain)
	vals, err := c.call(ctx, "GetDCVEmailAddressList", pathEmails, p, false)
	if err != nil {
		return nil, c.classify("GetDCVEmailAddressList", err)
	}
	var out []string
	add := func(s string) {
		s = strings.TrimSpace(s)
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			s = strings.TrimSpace(s[i+1:])
		}
		if strings.Count(s, "@") == 1 && !strings.ContainsAny(s, " \t") {
			out = append(out, strings.ToLower(s))
		}
	}
	for _, l := range vals["line"] {
		add(l)
	}
	for k, vs := range vals {
		if k == "line" || k == "errorCode" || k == "errorMessage" {
			continue
		}
		for _, v := range vs {
			add(v)
		}
	}
	return out, nil
}
