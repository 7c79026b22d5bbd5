package atlas

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/pemutil"
)

// Issuer is certd's ca.Issuer and ca.DomainAuthorizer for one Atlas
// account. Orders are paid at submit (each counts against the account's
// issuance quota).
type Issuer struct {
	c    *Client
	now  func() time.Time
	opts IssuerOptions

	// chains holds every trust chain seen, by the issuing CA's subject key
	// id: Atlas rotates issuing CAs, and /trustchain only tells the current
	// one, which may already be newer than a leaf fetched a moment later.
	mu     sync.Mutex
	chains map[string][]*x509.Certificate
}

var (
	_ ca.Issuer           = (*Issuer)(nil)
	_ ca.DomainAuthorizer = (*Issuer)(nil)
)

// IssuerOptions are the account's choices beyond the API client.
type IssuerOptions struct {
	// IssuanceWindow is how long Atlas may take, at most, to issue a
	// certificate it accepted (default DefaultIssuanceWindow). Reports
	// list a certificate only once it is issued, so an order whose answer
	// was lost is known to be absent only when it has not appeared this
	// long after it was sent. The guide is silent on this bound.
	IssuanceWindow time.Duration
	// DelegationLabel is the "_"-label whose CNAME delegates a claim's
	// TXT record to another zone (default "_acme-challenge"; Atlas
	// accepts any "_"-prefixed authorization domain).
	DelegationLabel string
	// ClaimDomains are parent domains claimed instead of each name.
	ClaimDomains []string
	// ReassertBefore is how long before expiry a claim is proved again.
	ReassertBefore time.Duration
	// AIA fetches a leaf's issuing CA from the caIssuers URL in its
	// Authority Information Access when no trust chain seen has it (a
	// certificate issued before a rotation and fetched after a restart:
	// /trustchain names only the current issuing CA). Default: a plain
	// client with a 30 s timeout. DisableAIA turns the fetch off; the
	// order then waits with ErrChainUnavailable.
	AIA        *http.Client
	DisableAIA bool
}

// DefaultIssuanceWindow bounds how long Atlas takes to issue an accepted
// request (see IssuerOptions.IssuanceWindow).
const DefaultIssuanceWindow = time.Hour

// NewIssuer wraps a client.
func NewIssuer(c *Client, opts IssuerOptions) *Issuer {
	if opts.IssuanceWindow <= 0 {
		opts.IssuanceWindow = DefaultIssuanceWindow
	}
	if opts.DelegationLabel == "" {
		opts.DelegationLabel = "_acme-challenge"
	}
	if opts.ReassertBefore <= 0 {
		opts.ReassertBefore = 30 * 24 * time.Hour
	}
	if opts.AIA == nil {
		opts.AIA = &http.Client{Timeout: 30 * time.Second}
	}
	return &Issuer{c: c, now: c.opts.Now, opts: opts, chains: map[string][]*x509.Certificate{}}
}

// ClaimDomain implements ca.ClaimPolicy: the configured parent that
// covers domain, else the domain itself (without "*.").
func (is *Issuer) ClaimDomain(domain string) string {
	d := strings.TrimPrefix(domain, "*.")
	for _, parent := range is.opts.ClaimDomains {
		if d == parent || strings.HasSuffix(d, "."+parent) {
			return parent
		}
	}
	return d
}

// ReassertBefore implements ca.ClaimPolicy.
func (is *Issuer) ReassertBefore() time.Duration { return is.opts.ReassertBefore }

// ErrChainUnavailable: the leaf's issuing CA is not in any trust chain
// seen. The certificate is fine; the order stays pending and is fetched
// again later.
var ErrChainUnavailable = errors.New("atlas: no known trust chain for the certificate's issuing CA")

// learnChain fetches the current trust chain and remembers it.
func (is *Issuer) learnChain(ctx context.Context) error {
	chainPEM, err := is.c.TrustChain(ctx)
	if err != nil {
		return err
	}
	var chain []*x509.Certificate
	for i, p := range chainPEM {
		c, err := parseCert(p)
		if err != nil {
			return fmt.Errorf("atlas: trust chain entry %d: %w", i, err)
		}
		chain = append(chain, c)
	}
	is.mu.Lock()
	is.chains[string(chain[0].SubjectKeyId)] = chain
	is.mu.Unlock()
	return nil
}

// chainFor returns the remembered chain whose first certificate signed leaf.
func (is *Issuer) chainFor(leaf *x509.Certificate) []*x509.Certificate {
	is.mu.Lock()
	defer is.mu.Unlock()
	if c, ok := is.chains[string(leaf.AuthorityKeyId)]; ok && leaf.CheckSignatureFrom(c[0]) == nil {
		return c
	}
	for _, c := range is.chains {
		if leaf.CheckSignatureFrom(c[0]) == nil {
			return c
		}
	}
	return nil
}

// maxAIACert bounds an AIA answer: one certificate, DER or PEM.
const maxAIACert = 64 << 10

// chainViaAIA fetches leaf's issuing CA from its AIA caIssuers URLs and
// joins it to a known chain that signed it (the root, or an intermediate
// above the issuing CA, outlives a rotation). Nothing fetched is trusted
// by itself: it must have signed leaf and be signed by a known chain
// member. The joined chain is remembered.
func (is *Issuer) chainViaAIA(ctx context.Context, leaf *x509.Certificate) ([]*x509.Certificate, error) {
	if len(leaf.IssuingCertificateURL) == 0 {
		return nil, errors.New("the certificate names no issuer URL (AIA caIssuers)")
	}
	var errs []error
	for _, u := range leaf.IssuingCertificateURL[:min(len(leaf.IssuingCertificateURL), 3)] {
		ica, err := is.fetchAIA(ctx, u)
		if err == nil {
			err = leaf.CheckSignatureFrom(ica)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("AIA %s: %w", u, err))
			continue
		}
		is.mu.Lock()
		var joined []*x509.Certificate
		for _, c := range is.chains {
			for j, up := range c {
				if ica.CheckSignatureFrom(up) == nil {
					joined = append([]*x509.Certificate{ica}, c[j:]...)
					break
				}
			}
			if joined != nil {
				break
			}
		}
		if joined != nil {
			is.chains[string(ica.SubjectKeyId)] = joined
		}
		is.mu.Unlock()
		if joined != nil {
			return joined, nil
		}
		errs = append(errs, fmt.Errorf("AIA %s: %s is signed by no certificate of a trust chain Atlas served", u, ica.Subject))
	}
	return nil, errors.Join(errs...)
}

// fetchAIA reads one certificate, DER or PEM, from an http(s) URL.
func (is *Issuer) fetchAIA(ctx context.Context, u string) (*x509.Certificate, error) {
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") {
		return nil, errors.New("not an http(s) URL")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := is.opts.AIA.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAIACert+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxAIACert {
		return nil, fmt.Errorf("answer larger than %d bytes", maxAIACert)
	}
	if b, _ := pem.Decode(body); b != nil && b.Type == "CERTIFICATE" {
		body = b.Bytes
	}
	c, err := x509.ParseCertificate(body)
	if err != nil {
		return nil, fmt.Errorf("not a certificate: %w", err)
	}
	if !c.IsCA {
		return nil, errors.New("not a CA certificate")
	}
	return c, nil
}

// Client is the underlying API client.
func (is *Issuer) Client() *Client { return is.c }

// Submit builds the request from the account's validation policy and
// posts it. Atlas has no client reference: an ambiguous answer is settled
// by Reconcile through the public key.
//
// Atlas lists the account's verified domains in the policy: a name the
// cached policy refuses is checked again against a fresh policy before
// the refusal stands, and a name still refused (or refused by the CA as
// not covered by a verified claim) is reported in ca.Error.Unauthorized,
// so the caller proves it again.
func (is *Issuer) Submit(ctx context.Context, req ca.Request) (ca.Order, error) {
	spec := RequestSpec{Domains: req.Domains, Key: req.Key, CSR: req.CSR, NotBefore: is.now()}
	if req.Lifetime > 0 {
		spec.NotAfter = spec.NotBefore.Add(req.Lifetime)
	}
	body, err := is.build(ctx, spec)
	if err != nil {
		return ca.Order{}, err
	}
	// The chain current before the request: with the one fetched after,
	// it brackets any rotation in between.
	if err := is.learnChain(ctx); err != nil {
		return ca.Order{}, classify("submit", err)
	}
	serial, err := is.c.CreateCertificate(ctx, body)
	if err != nil {
		e := classify("submit", err)
		if ce, ok := ca.AsError(e); ok && ce.Status == http.StatusUnprocessableEntity {
			ce.Unauthorized = unauthorizedNames(err, req.Domains)
			if len(ce.Unauthorized) > 0 {
				is.c.InvalidatePolicy()
			}
		}
		return ca.Order{}, e
	}
	return ca.Order{Ref: serial}, nil
}

// build makes the request body from the policy, refreshing a cached
// policy once before a refusal of the names stands.
func (is *Issuer) build(ctx context.Context, spec RequestSpec) (*CertRequest, error) {
	for attempt := 0; ; attempt++ {
		pol, err := is.c.ValidationPolicy(ctx)
		if err != nil {
			return nil, classify("reading the validation policy", err)
		}
		body, err := BuildRequest(pol, spec)
		var pe *PolicyError
		if !errors.As(err, &pe) {
			if err != nil {
				return nil, &ca.Error{CA: "atlas", Op: "building the request", Detail: err.Error(), Err: err}
			}
			return body, nil
		}
		if !strings.HasPrefix(pe.Field, "san.dns_names[") {
			// A key type, subject field or lifetime the policy refuses:
			// configuration must change, retrying cannot help.
			return nil, &ca.Error{CA: "atlas", Op: "checking the validation policy", Code: pe.Field, Detail: pe.Msg, Permanent: true, Err: err}
		}
		if attempt == 0 {
			is.c.InvalidatePolicy() // claims verified since it was read
			continue
		}
		return nil, &ca.Error{CA: "atlas", Op: "checking the validation policy", Code: pe.Field, Detail: pe.Msg + " (no verified claim covers it)",
			Unauthorized: policyRefused(pol, spec.Domains), Err: err}
	}
}

// policyRefused are the names pol's SAN list does not cover.
func policyRefused(pol *Policy, names []string) []string {
	var out []string
	for _, n := range names {
		if !matchesList(pol.SAN.DNSNames.List, n) {
			out = append(out, n)
		}
	}
	return out
}

// unauthorizedNames reads the names a 422 refused for want of a verified
// claim: errors keyed "san.dns_names[i]" (the index into names) or naming
// a verified claim.
func unauthorizedNames(err error, names []string) []string {
	var e *Error
	if !errors.As(err, &e) {
		return nil
	}
	var out []string
	for k, v := range e.Errors {
		var i int
		if _, serr := fmt.Sscanf(k, "san.dns_names[%d]", &i); serr == nil && i >= 0 && i < len(names) {
			out = append(out, names[i])
			continue
		}
		if strings.Contains(strings.ToLower(v), "claim") {
			for _, n := range names {
				if strings.Contains(v, n) && !slices.Contains(out, n) {
					out = append(out, n)
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Reconcile finds a certificate issued since req.Since for req's key.
// Atlas reports list a certificate only once it is issued, so "not
// listed" proves absence only after the issuance window has passed since
// the request was last sent; until then the answer is ErrUndetermined.
func (is *Issuer) Reconcile(ctx context.Context, req ca.Request) (ca.Order, bool, error) {
	spki, err := x509.MarshalPKIXPublicKey(req.Key.Public())
	if err != nil {
		return ca.Order{}, false, fmt.Errorf("atlas: %w", err)
	}
	serial, found, err := is.c.FindIssued(ctx, spki, req.Since)
	if errors.Is(err, ErrNotReady) {
		return ca.Order{}, false, &ca.Error{CA: "atlas", Op: "reconcile", Detail: err.Error(), Retry: 5 * time.Second, Err: errors.Join(ca.ErrUndetermined, err)}
	}
	if err != nil {
		return ca.Order{}, false, classify("reconcile", err)
	}
	if found {
		return ca.Order{Ref: serial}, true, nil
	}
	if req.SentAt.IsZero() {
		return ca.Order{}, false, nil // never sent
	}
	if left := req.SentAt.Add(is.opts.IssuanceWindow).Sub(is.now()); left > 0 {
		return ca.Order{}, false, &ca.Error{CA: "atlas", Op: "reconcile",
			Detail: fmt.Sprintf("no certificate for the order's key is issued yet; Atlas may still be issuing one (absence is certain %s after the request was sent, in %s)",
				is.opts.IssuanceWindow, left.Round(time.Second)),
			Err: ca.ErrUndetermined}
	}
	return ca.Order{}, false, nil
}

// Reissue implements ca.Reissuer through Atlas's rekey: a certificate
// with the fields and not_after of prev's, for req's key, without using a
// new issuance of the quota's orders (the guide's rekey; its body is
// inferred: the public key, and its signature when the policy requires).
func (is *Issuer) Reissue(ctx context.Context, prev ca.Order, req ca.Request) (ca.Order, error) {
	body, err := is.build(ctx, RequestSpec{Domains: req.Domains, Key: req.Key, CSR: req.CSR, NotBefore: is.now()})
	if err != nil {
		return ca.Order{}, err
	}
	if err := is.learnChain(ctx); err != nil {
		return ca.Order{}, classify("rekey", err)
	}
	serial, err := is.c.Rekey(ctx, prev.Ref, body.PublicKey, body.PublicKeySignature)
	if err != nil {
		return ca.Order{}, classify("rekey", err)
	}
	return ca.Order{Ref: serial}, nil
}

// Revoke implements ca.Revoker (PATCH with the reason).
func (is *Issuer) Revoke(ctx context.Context, order ca.Order, _ *x509.Certificate, reason ca.RevocationReason) error {
	return classify("revoke", is.c.Revoke(ctx, order.Ref, string(reason), time.Time{}))
}

var (
	_ ca.Reissuer = (*Issuer)(nil)
	_ ca.Revoker  = (*Issuer)(nil)
)

// OrderWindow is how long an accepted order may take to issue.
func (is *Issuer) OrderWindow() time.Duration { return is.opts.IssuanceWindow }

// Fetch reads the certificate and, since Atlas rotates issuing CAs, the
// trust chain current right after it.
func (is *Issuer) Fetch(ctx context.Context, order ca.Order, _ ca.Request) (*ca.Result, error) {
	info, err := is.c.Certificate(ctx, order.Ref)
	if errors.Is(err, ErrNotReady) {
		return nil, fmt.Errorf("%w: %w", ca.ErrPending, err)
	}
	if IsStatus(err, 422) {
		return nil, fmt.Errorf("%w: %w", ca.ErrRejected, classify("fetch", err))
	}
	if err != nil {
		return nil, classify("fetch", err)
	}
	leaf, err := parseCert(info.PEM)
	if err != nil {
		return nil, &ca.Error{CA: "atlas", Op: "fetch", Detail: fmt.Sprintf("certificate %s: %v", order.Ref, err), Err: err}
	}
	if err := is.learnChain(ctx); err != nil {
		return nil, classify("fetch", err)
	}
	chain := is.chainFor(leaf)
	if chain == nil && !is.opts.DisableAIA {
		var aiaErr error
		if chain, aiaErr = is.chainViaAIA(ctx, leaf); aiaErr != nil {
			return nil, fmt.Errorf("%w: %s (issuer %s): %w", ErrChainUnavailable, order.Ref, leaf.Issuer, aiaErr)
		}
	}
	if chain == nil {
		return nil, fmt.Errorf("%w: %s (issuer %s)", ErrChainUnavailable, order.Ref, leaf.Issuer)
	}
	return &ca.Result{Leaf: leaf, Chain: chain[:len(chain)-1], Roots: chain[len(chain)-1:]}, nil
}

// classify turns a client error into the typed ca.Error: Retry-After,
// ambiguity, and whether a person must act (credentials refused, quota
// used up).
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := ca.AsError(err); ok {
		return err
	}
	ce := &ca.Error{CA: "atlas", Op: op, Err: err, Ambiguous: errors.Is(err, ErrAmbiguous)}
	var e *Error
	if errors.As(err, &e) {
		ce.Op = op + " (" + e.Method + " " + e.Path + ")"
		ce.Status, ce.Retry, ce.Detail = e.Status, e.Retry, e.Description
		if ce.Detail == "" {
			ce.Detail = http.StatusText(e.Status)
		}
		for k, v := range e.Errors {
			ce.Detail += "; " + k + ": " + v
		}
		switch e.Status {
		case http.StatusUnauthorized, http.StatusForbidden:
			ce.Permanent = true
			ce.Detail += " (the account's credentials or client certificate were refused)"
		case http.StatusPaymentRequired:
			ce.Permanent, ce.Code = true, "quota"
			ce.Detail += " (the account's issuance quota is used up)"
		}
	} else {
		ce.Detail = err.Error()
	}
	return ce
}

func parseCert(s string) (*x509.Certificate, error) {
	certs, err := pemutil.Certificates([]byte(s))
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

func toAuth(c *Claim) ca.Authorization {
	a := ca.Authorization{ID: c.ID, Domain: c.Name(), Status: ca.AuthStatus(c.Status)}
	if c.AssertBy > 0 {
		a.AssertBy = time.Unix(c.AssertBy, 0)
	}
	if c.ExpiresAt > 0 {
		a.ExpiresAt = time.Unix(c.ExpiresAt, 0)
	}
	for i := len(c.Log) - 1; i >= 0; i-- {
		if c.Log[i].Status == "ERROR" {
			a.Detail = c.Log[i].Description
			break
		}
	}
	return a
}

// Authorization finds the account's claim on domain: by id when known
// (the guide recommends keeping claim ids), else by listing claims and
// preferring a verified one.
func (is *Issuer) Authorization(ctx context.Context, id, domain string) (ca.Authorization, bool, error) {
	if id != "" {
		c, err := is.c.Claim(ctx, id)
		if IsStatus(err, 404) {
			return ca.Authorization{}, false, nil
		}
		if err != nil {
			return ca.Authorization{}, false, classify("reading claim "+id, err)
		}
		a := toAuth(c)
		if a.Status == ca.AuthValid {
			is.c.InvalidatePolicy() // verified since the policy was read, perhaps
		}
		return a, true, nil
	}
	claims, err := is.c.Claims(ctx, "")
	if err != nil {
		return ca.Authorization{}, false, classify("listing claims", err)
	}
	var best *Claim
	for i := range claims {
		c := &claims[i]
		if c.Name() != domain {
			continue
		}
		if best == nil || c.Status == "VERIFIED" && (best.Status != "VERIFIED" || c.ExpiresAt > best.ExpiresAt) {
			best = c
		}
	}
	if best == nil {
		return ca.Authorization{}, false, nil
	}
	return toAuth(best), true, nil
}

// Authorize creates a claim on domain, or reasserts auth's claim when it
// has one (a new token; a verified claim stays verified meanwhile), and
// returns the challenge to publish.
func (is *Issuer) Authorize(ctx context.Context, auth ca.Authorization, domain string, how ca.Proof) (ca.Authorization, dcv.Challenge, error) {
	var tok *ClaimToken
	var err error
	if auth.ID != "" {
		tok, err = is.c.Reassert(ctx, auth.ID)
	} else {
		tok, err = is.c.CreateClaim(ctx, domain)
	}
	if err != nil {
		return ca.Authorization{}, dcv.Challenge{}, classify("claiming "+domain, err)
	}
	if auth.ID == "" {
		auth = ca.Authorization{ID: tok.ID, Domain: domain, Status: ca.AuthPending}
	}
	auth.Token, auth.AssertBy = tok.Token, time.Unix(tok.AssertBy, 0)
	ch, err := is.Challenge(auth, how)
	return auth, ch, err
}

// Challenge is the artefact for auth's token: TXT at the authorization
// domain, gsdv.txt, or the approver email.
func (is *Issuer) Challenge(auth ca.Authorization, how ca.Proof) (dcv.Challenge, error) {
	ch := dcv.Challenge{Domain: auth.Domain, Expires: auth.AssertBy, CARef: auth.ID}
	switch how.Method {
	case dcv.DNSTXT:
		ch.Method, ch.RecordName, ch.Value = dcv.DNSTXT, is.authDomain(how, auth.Domain), auth.Token
	case dcv.HTTPFile:
		ch.Method, ch.Path, ch.Content = dcv.HTTPFile, "/.well-known/pki-validation/gsdv.txt", auth.Token
	case dcv.Email:
		ch.Method, ch.EmailAddress = dcv.Email, how.Email
	default:
		return dcv.Challenge{}, fmt.Errorf("atlas: claims cannot be proved by %s", how.Method)
	}
	if auth.Token == "" && how.Method != dcv.Email {
		return dcv.Challenge{}, fmt.Errorf("atlas: claim %s has no token to publish", auth.ID)
	}
	return ch, nil
}

// Locate implements ca.ChallengeLocator: a TXT value where the claim's
// token goes, or a file beside (never over) gsdv.txt.
func (is *Issuer) Locate(domain string, how ca.Proof, value string) (dcv.Challenge, bool) {
	ch := dcv.Challenge{Domain: domain, Method: how.Method}
	switch how.Method {
	case dcv.DNSTXT:
		ch.RecordName, ch.Value = is.authDomain(how, domain), value
	case dcv.HTTPFile:
		ch.Path, ch.Content = "/.well-known/pki-validation/"+value+".txt", value
	default:
		return dcv.Challenge{}, false
	}
	return ch, true
}

// authDomain is where Atlas looks for the token: the domain itself, or
// the delegation label under it (CNAMEd to the zone certd writes to).
func (is *Issuer) authDomain(how ca.Proof, domain string) string {
	if how.Delegated {
		return is.opts.DelegationLabel + "." + domain
	}
	return domain
}

// ErrTokenLapsed: the claim's assert_by passed; Authorize again.
var ErrTokenLapsed = errors.New("atlas: claim token lapsed; reassert")

// Verify asks Atlas to check the published token and returns the claim
// as it stands afterwards.
func (is *Issuer) Verify(ctx context.Context, auth ca.Authorization, how ca.Proof) (ca.Authorization, error) {
	var err error
	switch how.Method {
	case dcv.DNSTXT:
		adn := ""
		if how.Delegated {
			adn = is.authDomain(how, auth.Domain)
		}
		_, err = is.c.VerifyDNS(ctx, auth.ID, adn)
	case dcv.HTTPFile:
		_, err = is.c.VerifyHTTP(ctx, auth.ID, auth.Domain, "http")
	case dcv.Email:
		_, err = is.c.SendEmail(ctx, auth.ID, how.Email)
	default:
		return auth, fmt.Errorf("atlas: claims cannot be proved by %s", how.Method)
	}
	if IsStatus(err, 424) {
		return auth, fmt.Errorf("%w: %w", ErrTokenLapsed, err)
	}
	if err != nil {
		return auth, classify("verifying claim "+auth.ID, err)
	}
	c, err := is.c.Claim(ctx, auth.ID)
	if err != nil {
		return auth, classify("reading claim "+auth.ID, err)
	}
	out := toAuth(c)
	out.Token = auth.Token
	if out.Status == ca.AuthValid {
		is.c.InvalidatePolicy() // the policy lists verified domains
	}
	return out, nil
}

// RevokedSince lists serials revoked since then (stats/revoked, in windows
// of at most 30 days).
func (is *Issuer) RevokedSince(ctx context.Context, since time.Time) ([]string, error) {
	var out []string
	end := is.now().Add(2 * time.Minute) // windows travel as whole seconds; and clocks differ
	for from := since; from.Before(end); from = from.Add(30 * 24 * time.Hour) {
		to := from.Add(30 * 24 * time.Hour)
		if to.After(end) {
			to = end
		}
		entries, err := is.c.Stats(ctx, "revoked", from, to)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			out = append(out, strings.ToUpper(e.Serial))
		}
	}
	return out, nil
}

var _ ca.RevocationLister = (*Issuer)(nil)

// DeleteAuthorization deletes a claim at Atlas.
func (is *Issuer) DeleteAuthorization(ctx context.Context, id string) error {
	return is.c.DeleteClaim(ctx, id)
}

// Quota is the issuances left on the account.
func (is *Issuer) Quota(ctx context.Context) (int, error) { return is.c.Quota(ctx) }
