package atlas

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// Policy is the account's validation policy (GET /validationpolicy), the
// parts certd builds requests from.
type Policy struct {
	Validity struct {
		SecondsMin            int64 `json:"secondsmin"`
		SecondsMax            int64 `json:"secondsmax"`
		NotBeforeNegativeSkew int64 `json:"not_before_negative_skew"`
		NotBeforePositiveSkew int64 `json:"not_before_positive_skew"`
	} `json:"validity"`
	SubjectDN map[string]json.RawMessage `json:"subject_dn"`
	SAN       struct {
		DNSNames ListPolicy `json:"dns_names"`
	} `json:"san"`
	PublicKey struct {
		KeyType        string `json:"key_type"`
		AllowedLengths []int  `json:"allowed_lengths"`
		KeyFormat      string `json:"key_format"`
	} `json:"public_key"`
	PublicKeySignature string `json:"public_key_signature"`
}

// StringPolicy is one subject attribute's rule.
type StringPolicy struct {
	Presence string `json:"presence"`
	Format   string `json:"format"`
}

// ListPolicy is a list's rule.
type ListPolicy struct {
	Static   bool     `json:"static"`
	List     []string `json:"list"`
	MinCount int      `json:"mincount"`
	MaxCount int      `json:"maxcount"`
}

// policyTTL is how long a fetched validation policy is trusted. Atlas
// lists the account's verified domains in it, so a daemon that runs for
// weeks must see claims verified after its first order.
const policyTTL = 10 * time.Minute

// ValidationPolicy returns the account's policy, cached for policyTTL and
// until InvalidatePolicy.
func (c *Client) ValidationPolicy(ctx context.Context) (*Policy, error) {
	c.mu.Lock()
	p, at := c.policy, c.policyAt
	c.mu.Unlock()
	if p != nil && c.opts.Now().Sub(at) < policyTTL {
		return p, nil
	}
	at = c.opts.Now()
	p = &Policy{}
	if _, err := c.getJSON(ctx, "/validationpolicy", p); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.policy, c.policyAt = p, at
	c.mu.Unlock()
	return p, nil
}

// InvalidatePolicy makes the next ValidationPolicy fetch it again: after
// a claim was verified or reasserted, and before a policy refusal is
// taken as final.
func (c *Client) InvalidatePolicy() {
	c.mu.Lock()
	c.policy = nil
	c.mu.Unlock()
}

// CertRequest is the body of POST /certificates.
type CertRequest struct {
	Validity struct {
		NotBefore int64 `json:"not_before"`
		NotAfter  int64 `json:"not_after,omitempty"`
	} `json:"validity"`
	SubjectDN          map[string]string `json:"subject_dn"`
	SAN                *SAN              `json:"san,omitempty"`
	PublicKey          string            `json:"public_key"`
	PublicKeySignature string            `json:"public_key_signature,omitempty"`
}

// SAN is the request's subject alternative names.
type SAN struct {
	DNSNames []string `json:"dns_names,omitempty"`
}

// CreateCertificate submits a request and returns the serial Atlas
// assigned (uppercase hex). It is never retried blindly: a failure after
// the request was sent wraps ErrAmbiguous, and so does a 5xx, since Atlas
// may have committed the request before failing; reconcile with
// FindIssued before sending again.
func (c *Client) CreateCertificate(ctx context.Context, req *CertRequest) (string, error) {
	resp, err := c.call(ctx, http.MethodPost, "/certificates", req, false)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		err := c.apiError(resp, http.MethodPost, "/certificates")
		// A success other than 201 is no refusal either: Atlas may
		// have committed the request (found by FuzzAnswers).
		if resp.StatusCode >= 500 || resp.StatusCode < 300 {
			return "", fmt.Errorf("%w: %w", ErrAmbiguous, err)
		}
		return "", err
	}
	drain(resp)
	serial := path.Base(resp.Header.Get("Location"))
	if serial == "" || serial == "." || serial == "/" {
		return "", fmt.Errorf("%w: POST /certificates: 201 without a Location", ErrAmbiguous)
	}
	return strings.ToUpper(serial), nil
}

// CertInfo is an issued certificate (GET /certificates/{serial}).
type CertInfo struct {
	PEM       string `json:"certificate"`
	Status    string `json:"status"`
	UpdatedAt int64  `json:"updated_at"`
}

// Certificate returns the certificate with serial. ErrNotReady means it
// is still being issued (202); an *Error with status 422 means Atlas
// rejected it: the serial is dead.
func (c *Client) Certificate(ctx context.Context, serial string) (*CertInfo, error) {
	p := "/certificates/" + url.PathEscape(serial)
	resp, err := c.call(ctx, http.MethodGet, p, nil, true)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusAccepted:
		return nil, ErrNotReady
	case http.StatusOK:
		var info CertInfo
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&info); err != nil || info.PEM == "" {
			return nil, fmt.Errorf("atlas: GET %s: no certificate in the answer", p)
		}
		return &info, nil
	}
	return nil, c.apiError(resp, http.MethodGet, p)
}

// WaitCertificate polls until the certificate is issued, with short first
// intervals growing to max, honouring ctx.
func (c *Client) WaitCertificate(ctx context.Context, serial string, maxInterval time.Duration) (*CertInfo, error) {
	wait := 250 * time.Millisecond
	for {
		info, err := c.Certificate(ctx, serial)
		if !errors.Is(err, ErrNotReady) {
			return info, err
		}
		if err := c.opts.Sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("atlas: waiting for %s: %w", serial, err)
		}
		wait = min(wait*2, maxInterval)
	}
}

// Revocation reasons, as Atlas spells them.
const (
	ReasonUnspecified          = "unspecified"
	ReasonKeyCompromise        = "keyCompromise"
	ReasonAffiliationChanged   = "affiliationChanged"
	ReasonSuperseded           = "superseded"
	ReasonCessationOfOperation = "cessationOfOperation"
	ReasonPrivilegeWithdrawn   = "privilegeWithdrawn"
)

// Revoke revokes serial (PATCH with a reason). at may be zero (now).
func (c *Client) Revoke(ctx context.Context, serial, reason string, at time.Time) error {
	body := map[string]any{"revocation_reason": reason}
	if !at.IsZero() {
		body["revocation_time"] = at.Unix()
	}
	p := "/certificates/" + url.PathEscape(serial)
	resp, err := c.call(ctx, http.MethodPatch, p, body, true)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return c.apiError(resp, http.MethodPatch, p)
	}
	drain(resp)
	return nil
}

// Rekey asks for a certificate with the same fields and not_after as
// serial, for a new key (public_key and, if the policy requires it,
// public_key_signature). It returns the new serial. Like
// CreateCertificate, it is never retried blindly.
func (c *Client) Rekey(ctx context.Context, serial, publicKey, signature string) (string, error) {
	body := map[string]string{"public_key": publicKey}
	if signature != "" {
		body["public_key_signature"] = signature
	}
	p := "/certificates/" + url.PathEscape(serial) + "/rekey"
	resp, err := c.call(ctx, http.MethodPost, p, body, false)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		err := c.apiError(resp, http.MethodPost, p)
		if resp.StatusCode >= 500 {
			return "", fmt.Errorf("%w: %w", ErrAmbiguous, err)
		}
		return "", err
	}
	drain(resp)
	serialOut := path.Base(resp.Header.Get("Location"))
	if serialOut == "" || serialOut == "." || serialOut == "/" {
		return "", fmt.Errorf("%w: POST %s: 201 without a Location", ErrAmbiguous, p)
	}
	return strings.ToUpper(serialOut), nil
}

// TrustChain returns the current chain, issuing CA first, root last (PEM).
// Atlas rotates issuing CAs, so fetch it after every issuance.
func (c *Client) TrustChain(ctx context.Context) ([]string, error) {
	var chain []string
	if _, err := c.getJSON(ctx, "/trustchain", &chain); err != nil {
		return nil, err
	}
	if len(chain) == 0 {
		return nil, errors.New("atlas: GET /trustchain: empty chain")
	}
	return chain, nil
}

// StatEntry is one certificate in a statistics listing.
type StatEntry struct {
	Serial    string `json:"serial_number"`
	NotBefore int64  `json:"not_before"`
	NotAfter  int64  `json:"not_after"`
}

// Stats lists issued, revoked or expiring certificates in [from, to]
// (at most 30 days; zero times use Atlas's defaults), every page.
func (c *Client) Stats(ctx context.Context, kind string, from, to time.Time) ([]StatEntry, error) {
	switch kind {
	case "issued", "revoked", "expiring":
	default:
		return nil, fmt.Errorf("atlas: unknown statistics %q", kind)
	}
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", strconv.FormatInt(from.Unix(), 10))
	}
	if !to.IsZero() {
		q.Set("to", strconv.FormatInt(to.Unix(), 10))
	}
	return getAll[StatEntry](ctx, c, "/stats/"+kind, q)
}

// Counter returns the count of issued or revoked certificates.
func (c *Client) Counter(ctx context.Context, kind string) (int, error) {
	var v struct {
		Value int `json:"value"`
	}
	_, err := c.getJSON(ctx, "/counters/certificates/"+url.PathEscape(kind), &v)
	return v.Value, err
}

// Quota returns the issuances left.
func (c *Client) Quota(ctx context.Context) (int, error) {
	var v struct {
		Value int `json:"value"`
	}
	_, err := c.getJSON(ctx, "/quotas/issuance", &v)
	return v.Value, err
}

// Claim is a domain claim of the account.
type Claim struct {
	ID        string     `json:"id"`
	Status    string     `json:"status"` // PENDING or VERIFIED
	Domain    string     `json:"domain"` // with a trailing dot, as Atlas sends it
	CreatedAt int64      `json:"created_at"`
	ExpiresAt int64      `json:"expires_at"`
	AssertBy  int64      `json:"assert_by"`
	Log       []ClaimLog `json:"log"`
}

// ClaimLog is one entry of a claim's log.
type ClaimLog struct {
	Status      string `json:"status"`
	Description string `json:"description"`
	Timestamp   int64  `json:"timestamp"`
	Method      string `json:"method"`
}

// Name is the claimed domain without its trailing dot.
func (c *Claim) Name() string { return strings.TrimSuffix(c.Domain, ".") }

// ClaimToken is what creating or reasserting a claim returns: the token
// to publish, by when.
type ClaimToken struct {
	ID       string
	Token    string `json:"token"`
	AssertBy int64  `json:"assert_by"`
}

// Claims lists the account's claims (status "", PENDING or VERIFIED),
// every page.
func (c *Client) Claims(ctx context.Context, status string) ([]Claim, error) {
	q := url.Values{}
	if status != "" {
		q.Set("status", status)
	}
	return getAll[Claim](ctx, c, "/claims/domains", q)
}

// CreateClaim claims domain (punycode, no trailing dot).
func (c *Client) CreateClaim(ctx context.Context, domain string) (*ClaimToken, error) {
	return c.claimToken(ctx, "/claims/domains/"+url.PathEscape(strings.TrimSuffix(domain, ".")))
}

// Reassert issues a new token for a claim whose assert_by passed (the
// claim stays verified meanwhile).
func (c *Client) Reassert(ctx context.Context, id string) (*ClaimToken, error) {
	return c.claimToken(ctx, "/claims/domains/"+url.PathEscape(id)+"/reassert")
}

func (c *Client) claimToken(ctx context.Context, p string) (*ClaimToken, error) {
	resp, err := c.call(ctx, http.MethodPost, p, nil, false)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return nil, c.apiError(resp, http.MethodPost, p)
	}
	defer drain(resp)
	var tok ClaimToken
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tok); err != nil || tok.Token == "" {
		return nil, fmt.Errorf("atlas: POST %s: no token in the answer", p)
	}
	tok.ID = path.Base(resp.Header.Get("Location"))
	if tok.ID == "" || tok.ID == "." {
		return nil, fmt.Errorf("atlas: POST %s: no Location with the claim id", p)
	}
	return &tok, nil
}

// Claim returns one claim.
func (c *Client) Claim(ctx context.Context, id string) (*Claim, error) {
	var cl Claim
	if _, err := c.getJSON(ctx, "/claims/domains/"+url.PathEscape(id), &cl); err != nil {
		return nil, err
	}
	return &cl, nil
}

// DeleteClaim deletes a claim.
func (c *Client) DeleteClaim(ctx context.Context, id string) error {
	p := "/claims/domains/" + url.PathEscape(id)
	resp, err := c.call(ctx, http.MethodDelete, p, nil, true)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return c.apiError(resp, http.MethodDelete, p)
	}
	drain(resp)
	return nil
}

// VerifyResult is what asking Atlas to check a claim started.
type VerifyResult int

// Outcomes of a verification request.
const (
	Verified VerifyResult = iota // 204: verified now
	Started                      // 201: an assertion job runs; poll the claim
	Pending                      // 202: an earlier assertion is still running
)

// VerifyDNS asks Atlas to look for the token in TXT at adn (the domain
// itself when empty, or an "_"-label CNAMEd to a delegated zone). An
// *Error with status 424 means assert_by passed: Reassert first.
func (c *Client) VerifyDNS(ctx context.Context, id, adn string) (VerifyResult, error) {
	var body any // no body at all when adn is empty: Atlas refuses an empty one
	if adn != "" {
		body = map[string]string{"authorization_domain": adn}
	}
	return c.verify(ctx, "/claims/domains/"+url.PathEscape(id)+"/dns", body)
}

// VerifyHTTP asks Atlas to fetch scheme://adn/.well-known/pki-validation/gsdv.txt.
func (c *Client) VerifyHTTP(ctx context.Context, id, adn, scheme string) (VerifyResult, error) {
	return c.verify(ctx, "/claims/domains/"+url.PathEscape(id)+"/http", map[string]string{"authorization_domain": adn, "scheme": scheme})
}

// SendEmail asks Atlas to send the approval email to address.
func (c *Client) SendEmail(ctx context.Context, id, address string) (VerifyResult, error) {
	return c.verify(ctx, "/claims/domains/"+url.PathEscape(id)+"/email", map[string]string{"email_address": address})
}

func (c *Client) verify(ctx context.Context, p string, body any) (VerifyResult, error) {
	resp, err := c.call(ctx, http.MethodPost, p, body, true)
	if err != nil {
		return 0, err
	}
	switch resp.StatusCode {
	case http.StatusNoContent:
		drain(resp)
		return Verified, nil
	case http.StatusCreated:
		drain(resp)
		return Started, nil
	case http.StatusAccepted:
		drain(resp)
		return Pending, nil
	}
	return 0, c.apiError(resp, http.MethodPost, p)
}

// EmailAddresses lists the approver addresses Atlas allows for a claim.
func (c *Client) EmailAddresses(ctx context.Context, id string) ([]string, error) {
	var out struct {
		Constructed []string `json:"constructed"`
		DNS         struct {
			SOA struct {
				Emails []string `json:"emails"`
			} `json:"SOA"`
		} `json:"DNS"`
	}
	if _, err := c.getJSON(ctx, "/claims/domains/"+url.PathEscape(id)+"/email", &out); err != nil {
		return nil, err
	}
	return append(out.Constructed, out.DNS.SOA.Emails...), nil
}
