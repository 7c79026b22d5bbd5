package reseller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/certd/certd/ca"
)

// Routes of the API, as Observe and InjectFault name them.
const (
	RouteList              = "GET /ssl-certificate"
	RouteCreate            = "POST /ssl-certificate"
	RouteGet               = "GET /ssl-certificate/{id}"
	RouteDelete            = "DELETE /ssl-certificate/{id}"
	RouteRenew             = "POST /ssl-certificate/{id}/renew"
	RouteValidate          = "POST /ssl-certificate/{id}/validate"
	RouteReissue           = "POST /ssl-certificate/{id}/reissue"
	RouteValidationDetails = "GET /ssl-certificate/{id}/validation-details"
)

// RouteDownload is the route of a download format (zip, pkcs7, crt, csr,
// ca).
func RouteDownload(format string) string { return "GET /ssl-certificate/{id}/download-" + format }

// The documented statuses.
const (
	statusPending = "pending"
	statusActive  = "active"
)

// OrderRequest is the body of POST /ssl-certificate, /{id}/renew and
// /{id}/reissue (the seed's field names; empty fields are left out). Plan
// is not sent to reissue, EEReferenceOrderID only to create.
type OrderRequest struct {
	// CSR is the full PEM text, header and footer lines included.
	CSR     string `json:"csr"`
	DCVType string `json:"dcv_type"`
	Plan    string `json:"plan,omitempty"`

	ChamberOfCommerce    string `json:"chamber_of_commerce,omitempty"`
	CompanyName          string `json:"company_name,omitempty"`
	Department           string `json:"department,omitempty"`
	Address              string `json:"address,omitempty"`
	City                 string `json:"city,omitempty"`
	ApproverFirstName    string `json:"approver_first_name,omitempty"`
	ApproverLastName     string `json:"approver_last_name,omitempty"`
	ApproverEmailAddress string `json:"approver_email_address,omitempty"`
	ApproverPhoneNumber  string `json:"approver_phone_number,omitempty"`
	ZipCode              string `json:"zip_code,omitempty"`

	ClientReference    string `json:"client_reference,omitempty"`
	EEReferenceOrderID string `json:"ee_reference_order_id,omitempty"`
}

func (r *OrderRequest) setContact(c Contact) {
	r.ChamberOfCommerce, r.CompanyName, r.Department = c.ChamberOfCommerce, c.CompanyName, c.Department
	r.Address, r.City, r.ZipCode = c.Address, c.City, c.ZipCode
	r.ApproverFirstName, r.ApproverLastName = c.ApproverFirstName, c.ApproverLastName
	r.ApproverEmailAddress, r.ApproverPhoneNumber = c.ApproverEmailAddress, c.ApproverPhoneNumber
}

// ValidateRequest is the body of POST /ssl-certificate/{id}/validate.
type ValidateRequest struct {
	DCVType      string `json:"dcv_type"`
	EmailAddress string `json:"email_address,omitempty"`
	// Domain is in the seed's sample, not its parameter table.
	Domain string `json:"domain,omitempty"`
}

// Certificate is an SSL Certificate object as far as certd reads it. The
// object's schema is not documented: the keys read are inferred (see the
// package doc) and the whole object is kept in Raw.
type Certificate struct {
	ID              string
	Status          string
	Plan            string
	ClientReference string
	// HasClientReference: the object carries the key at all.
	HasClientReference bool
	// CreatedAt is zero when the object does not say.
	CreatedAt time.Time
	Raw       json.RawMessage
}

// parseCertificate reads an object defensively: the id may be a string or
// a number; unknown keys are kept in Raw.
func parseCertificate(b []byte) (*Certificate, error) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decoding the SSL certificate object (%s): %w", ca.Snippet(b, 120), err)
	}
	return certificateFrom(m, b)
}

func certificateFrom(m map[string]any, raw []byte) (*Certificate, error) {
	if m == nil {
		return nil, errors.New("the SSL certificate object is null")
	}
	c := &Certificate{ID: scalar(m["id"]), Status: strings.TrimSpace(scalar(m["status"])), Plan: planOf(m["plan"]), Raw: raw}
	if v, ok := m["client_reference"]; ok {
		c.HasClientReference, c.ClientReference = true, scalar(v)
	}
	for _, k := range []string{"created_at", "created", "creation_date", "date_created"} {
		if s := scalar(m[k]); s != "" {
			if t, err := parseTime(s); err == nil {
				c.CreatedAt = t
				break
			}
		}
	}
	if c.Raw == nil {
		c.Raw, _ = json.Marshal(m)
	}
	return c, nil
}

// planOf reads the plan as a UUID string or an object with an id.
func planOf(v any) string {
	if m, ok := v.(map[string]any); ok {
		return scalar(m["id"])
	}
	return scalar(v)
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("unknown time format %q", s)
}

// Create places an order (POST /ssl-certificate). A 2xx without a
// readable id is Ambiguous: the order was committed but its id is not
// known, so it is found by its client reference.
func (c *Client) Create(ctx context.Context, r OrderRequest) (*Certificate, error) {
	ans, err := c.call(ctx, "submit", RouteCreate, "", nil, r, "application/json")
	if err != nil {
		return nil, err
	}
	cert, err := parseCertificate(ans.body)
	if err == nil && cert.ID == "" {
		err = errors.New("the answer carries no id")
	}
	if err != nil {
		return nil, &ca.Error{CA: caName, Op: opName("submit", RouteCreate), Status: ans.status, Ambiguous: true,
			Detail: "the order was accepted but its answer cannot be read: " + err.Error(), Err: err}
	}
	return cert, nil
}

// ListFilter are the documented filters of GET /ssl-certificate.
type ListFilter struct {
	Plan            string
	ClientReference string
}

// maxPages bounds how many "next" links a listing follows.
const maxPages = 100

// List returns the account's certificates matching f (GET
// /ssl-certificate). The listing may be a bare array or an object
// carrying one (see the package doc); any other shape is an error, never
// an empty list.
func (c *Client) List(ctx context.Context, f ListFilter) ([]Certificate, error) {
	q := url.Values{}
	if f.Plan != "" {
		q.Set("plan", f.Plan)
	}
	if f.ClientReference != "" {
		q.Set("client_reference", f.ClientReference)
	}
	var out []Certificate
	for page := 0; ; page++ {
		ans, err := c.call(ctx, "list", RouteList, "", q, nil, "application/json")
		if err != nil {
			return nil, err
		}
		items, next, err := parseListing(ans.body)
		if err != nil {
			return nil, &ca.Error{CA: caName, Op: opName("list", RouteList), Status: ans.status, Detail: err.Error(), Err: err}
		}
		out = append(out, items...)
		if next == "" {
			return out, nil
		}
		nu, err := url.Parse(next)
		if err != nil || nu.IsAbs() && (nu.Scheme != c.base.Scheme || nu.Host != c.base.Host) {
			// Never send the credentials to another host.
			return nil, &ca.Error{CA: caName, Op: opName("list", RouteList), Detail: "the listing's next page is not on the API's host"}
		}
		if page >= maxPages {
			return nil, &ca.Error{CA: caName, Op: opName("list", RouteList), Detail: fmt.Sprintf("more than %d pages", maxPages)}
		}
		q = nu.Query()
	}
}

// parseListing reads a listing: a bare array, or an object with the array
// under "results" (DRF), "data", "items", "ssl_certificates" or
// "certificates", and a "next" link.
func parseListing(b []byte) ([]Certificate, string, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, "", fmt.Errorf("decoding the listing: %w", err)
	}
	var items []any
	next := ""
	switch t := v.(type) {
	case []any:
		items = t
	case map[string]any:
		found := false
		for _, k := range []string{"results", "data", "items", "ssl_certificates", "certificates", "objects"} {
			if a, ok := t[k].([]any); ok {
				items, found = a, true
				break
			}
		}
		if !found {
			return nil, "", fmt.Errorf("the listing is an object without a list of certificates (keys %s)", strings.Join(sortedKeys(t), ", "))
		}
		next = scalar(t["next"])
	default:
		return nil, "", fmt.Errorf("the listing is neither a list nor an object")
	}
	out := make([]Certificate, 0, len(items))
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return nil, "", fmt.Errorf("listing entry %d is not an object", i)
		}
		cert, err := certificateFrom(m, nil)
		if err != nil {
			return nil, "", fmt.Errorf("listing entry %d: %w", i, err)
		}
		if cert.ID == "" {
			return nil, "", fmt.Errorf("listing entry %d has no id", i)
		}
		out = append(out, *cert)
	}
	return out, next, nil
}

// Get reads one certificate (GET /ssl-certificate/{id}).
func (c *Client) Get(ctx context.Context, id string) (*Certificate, error) {
	ans, err := c.call(ctx, "fetch", RouteGet, id, nil, nil, "application/json")
	if err != nil {
		return nil, err
	}
	cert, err := parseCertificate(ans.body)
	if err != nil {
		return nil, &ca.Error{CA: caName, Op: opName("fetch", RouteGet), Status: ans.status, Detail: err.Error(), Err: err}
	}
	if cert.ID == "" {
		cert.ID = id
	}
	return cert, nil
}

// Renew renews certificate id (POST /ssl-certificate/{id}/renew): a paid
// action on the same object, which turns pending and then active again.
// A lost answer is Ambiguous.
func (c *Client) Renew(ctx context.Context, id string, r OrderRequest) (*Certificate, error) {
	r.EEReferenceOrderID = ""
	ans, err := c.call(ctx, "renew", RouteRenew, id, nil, r, "application/json")
	if err != nil {
		return nil, err
	}
	return c.objectOr(ans, id), nil
}

// Reissue reissues certificate id for a new CSR (POST
// /ssl-certificate/{id}/reissue): no purchase; the new certificate
// replaces the current one at once.
func (c *Client) Reissue(ctx context.Context, id string, r OrderRequest) (*Certificate, error) {
	r.Plan, r.EEReferenceOrderID = "", ""
	ans, err := c.call(ctx, "reissue", RouteReissue, id, nil, r, "application/json")
	if err != nil {
		return nil, err
	}
	return c.objectOr(ans, id), nil
}

// objectOr is the object an answer carries, or one with only id when it
// carries none (the seed documents no answer for some actions).
func (c *Client) objectOr(ans *answer, id string) *Certificate {
	if cert, err := parseCertificate(ans.body); err == nil {
		if cert.ID == "" {
			cert.ID = id
		}
		return cert
	}
	return &Certificate{ID: id}
}

// Refund says what a deletion did to the account's money.
type Refund int

// Refund outcomes.
const (
	// RefundUnknown: the API did not say.
	RefundUnknown Refund = iota
	Refunded
	NotRefunded
)

func (r Refund) String() string {
	switch r {
	case Refunded:
		return "refunded"
	case NotRefunded:
		return "not refunded"
	}
	return "refund unknown"
}

// Delete disables certificate id at once (DELETE /ssl-certificate/{id});
// the API refunds it when it is still inside the plan's grace period. The
// answer is not documented: a boolean key naming a refund, or a refund
// amount, is read when present.
func (c *Client) Delete(ctx context.Context, id string) (Refund, error) {
	ans, err := c.call(ctx, "delete", RouteDelete, id, nil, nil, "application/json")
	if err != nil {
		return RefundUnknown, err
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(ans.body))
	dec.UseNumber()
	if dec.Decode(&m) != nil {
		return RefundUnknown, nil
	}
	return refundOf(m), nil
}

func refundOf(m map[string]any) Refund {
	for _, k := range []string{"refunded", "is_refunded", "refund"} {
		if b, ok := m[k].(bool); ok {
			if b {
				return Refunded
			}
			return NotRefunded
		}
	}
	for _, k := range []string{"refund_amount", "refunded_amount", "refund"} {
		if n, ok := m[k].(json.Number); ok {
			if f, err := n.Float64(); err == nil {
				if f > 0 {
					return Refunded
				}
				return NotRefunded
			}
		}
	}
	return RefundUnknown
}

// Validate asks the API to check an order's proofs again (POST
// /ssl-certificate/{id}/validate), optionally switching method or email.
func (c *Client) Validate(ctx context.Context, id string, r ValidateRequest) error {
	_, err := c.call(ctx, "validate", RouteValidate, id, nil, r, "application/json")
	return err
}

// ValidationDetails returns the raw answer of GET
// /ssl-certificate/{id}/validation-details, whose shape is undocumented
// (see parseValidation).
func (c *Client) ValidationDetails(ctx context.Context, id string) ([]byte, error) {
	ans, err := c.call(ctx, "validation details", RouteValidationDetails, id, nil, nil, "application/json")
	if err != nil {
		return nil, err
	}
	return ans.body, nil
}

// Download formats.
var downloadFormats = []string{"zip", "pkcs7", "crt", "csr", "ca"}

// Download returns certificate id in format (zip, pkcs7, crt, csr or ca),
// as the attachment's bytes.
func (c *Client) Download(ctx context.Context, id, format string) ([]byte, error) {
	if !slices.Contains(downloadFormats, format) {
		return nil, fmt.Errorf("reseller: unknown download format %q", format)
	}
	ans, err := c.call(ctx, "download", RouteDownload(format), id, nil, nil, "application/octet-stream, */*")
	if err != nil {
		return nil, err
	}
	if ans.status == http.StatusNoContent || len(ans.body) == 0 {
		return nil, &ca.Error{CA: caName, Op: opName("download", RouteDownload(format)), Status: ans.status, Detail: "empty download"}
	}
	return ans.body, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
