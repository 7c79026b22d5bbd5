package atlas

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/pemutil"
)

// Issuer is certd's ca.Issuer and ca.DomainAuthorizer for one Atlas
// account.
type Issuer struct {
	c   *Client
	now func() time.Time

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

// NewIssuer wraps a client.
func NewIssuer(c *Client) *Issuer {
	return &Issuer{c: c, now: c.opts.Now, chains: map[string][]*x509.Certificate{}}
}

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

// Client is the underlying API client.
func (is *Issuer) Client() *Client { return is.c }

// Submit builds the request from the account's validation policy and
// posts it. Atlas has no client reference: an ambiguous answer is settled
// by Reconcile through the public key.
func (is *Issuer) Submit(ctx context.Context, req ca.Request) (ca.Order, error) {
	pol, err := is.c.ValidationPolicy(ctx)
	if err != nil {
		return ca.Order{}, err
	}
	spec := RequestSpec{Domains: req.Domains, Key: req.Key, CSR: req.CSR, NotBefore: is.now()}
	if req.Lifetime > 0 {
		spec.NotAfter = spec.NotBefore.Add(req.Lifetime)
	}
	body, err := BuildRequest(pol, spec)
	if err != nil {
		return ca.Order{}, err
	}
	// The chain current before the request: with the one fetched after,
	// it brackets any rotation in between.
	if err := is.learnChain(ctx); err != nil {
		return ca.Order{}, err
	}
	serial, err := is.c.CreateCertificate(ctx, body)
	if err != nil {
		if errors.Is(err, ErrAmbiguous) {
			return ca.Order{}, fmt.Errorf("%w: %w", ca.ErrAmbiguous, err)
		}
		return ca.Order{}, err
	}
	return ca.Order{Ref: serial}, nil
}

// Reconcile finds a certificate issued since req.Since for req's key.
func (is *Issuer) Reconcile(ctx context.Context, req ca.Request) (ca.Order, bool, error) {
	spki, err := x509.MarshalPKIXPublicKey(req.Key.Public())
	if err != nil {
		return ca.Order{}, false, fmt.Errorf("atlas: %w", err)
	}
	serial, found, err := is.c.FindIssued(ctx, spki, req.Since)
	if errors.Is(err, ErrNotReady) {
		return ca.Order{}, false, fmt.Errorf("%w: %w", ca.ErrPending, err)
	}
	if err != nil || !found {
		return ca.Order{}, false, err
	}
	return ca.Order{Ref: serial}, true, nil
}

// Fetch reads the certificate and, since Atlas rotates issuing CAs, the
// trust chain current right after it.
func (is *Issuer) Fetch(ctx context.Context, order ca.Order, _ ca.Request) (*ca.Result, error) {
	info, err := is.c.Certificate(ctx, order.Ref)
	if errors.Is(err, ErrNotReady) {
		return nil, fmt.Errorf("%w: %w", ca.ErrPending, err)
	}
	if IsStatus(err, 422) {
		return nil, fmt.Errorf("%w: %w", ca.ErrRejected, err)
	}
	if err != nil {
		return nil, err
	}
	leaf, err := parseCert(info.PEM)
	if err != nil {
		return nil, fmt.Errorf("atlas: certificate %s: %w", order.Ref, err)
	}
	if err := is.learnChain(ctx); err != nil {
		return nil, err
	}
	chain := is.chainFor(leaf)
	if chain == nil {
		return nil, fmt.Errorf("%w: %s (issuer %s)", ErrChainUnavailable, order.Ref, leaf.Issuer)
	}
	return &ca.Result{Leaf: leaf, Chain: chain[:len(chain)-1], Roots: chain[len(chain)-1:]}, nil
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
			return ca.Authorization{}, false, err
		}
		return toAuth(c), true, nil
	}
	claims, err := is.c.Claims(ctx, "")
	if err != nil {
		return ca.Authorization{}, false, err
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
		return ca.Authorization{}, dcv.Challenge{}, err
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
		ch.Method, ch.RecordName, ch.Value = dcv.DNSTXT, authDomain(how, auth.Domain), auth.Token
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
		ch.RecordName, ch.Value = authDomain(how, domain), value
	case dcv.HTTPFile:
		ch.Path, ch.Content = "/.well-known/pki-validation/"+value+".txt", value
	default:
		return dcv.Challenge{}, false
	}
	return ch, true
}

func authDomain(how ca.Proof, domain string) string {
	if how.AuthorizationDomain != "" {
		return how.AuthorizationDomain
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
		if how.AuthorizationDomain != "" && how.AuthorizationDomain != auth.Domain {
			adn = how.AuthorizationDomain
		}
		_, err = is.c.VerifyDNS(ctx, auth.ID, adn)
	case dcv.HTTPFile:
		_, err = is.c.VerifyHTTP(ctx, auth.ID, authDomain(how, auth.Domain), "http")
	case dcv.Email:
		_, err = is.c.SendEmail(ctx, auth.ID, how.Email)
	default:
		return auth, fmt.Errorf("atlas: claims cannot be proved by %s", how.Method)
	}
	if IsStatus(err, 424) {
		return auth, fmt.Errorf("%w: %w", ErrTokenLapsed, err)
	}
	if err != nil {
		return auth, err
	}
	c, err := is.c.Claim(ctx, auth.ID)
	if err != nil {
		return auth, err
	}
	out := toAuth(c)
	out.Token = auth.Token
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
