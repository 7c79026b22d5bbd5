package sectigo

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/logkey"
)

// Issuer is certd's ca.Issuer, ca.PreSubmitChallenger and
// ca.OrderAuthorizer for one Sectigo reseller account. Orders are paid at
// submit (it does not implement ca.Coster): a paid order is never
// replaced because validation failed; its artefacts stay published and
// Sectigo is asked to check again.
type Issuer struct {
	c    *Client
	opts IssuerOptions
	log  *zap.Logger

	mu sync.Mutex
	// orders holds, per order reference, the lock that keeps status reads
	// and collection of one order sequential, the last status read, and
	// when Sectigo was last asked to check each domain again.
	orders map[string]*orderState
	// plans are the DCV methods ChallengesBefore was last given, per
	// client reference, for Submit and Authorizations (certd always calls
	// ChallengesBefore just before Submit).
	plans map[string][]domainPlan
	// listed is when GetDCVEmailAddressList last listed an approver
	// address (Sectigo honours a listed address for 24 hours).
	listed map[string]time.Time
}

var (
	_ ca.Reissuer            = (*Issuer)(nil)
	_ ca.Revoker             = (*Issuer)(nil)
	_ ca.Issuer              = (*Issuer)(nil)
	_ ca.PreSubmitChallenger = (*Issuer)(nil)
	_ ca.OrderAuthorizer     = (*Issuer)(nil)
)

// IssuerOptions are the account's choices beyond the API client.
type IssuerOptions struct {
	Product int
	Days    int
	// MultiDomain: the product is multi-domain (domainNames,
	// primaryDomainName; several names per order).
	MultiDomain bool
	// DCVMethod proves domains no proof names (default CNAME_CSR_HASH).
	DCVMethod string
	// HTTPScheme is what dcv.HTTPFile means: "http" (HTTP_CSR_HASH,
	// default) or "https" (HTTPS_CSR_HASH).
	HTTPScheme string
	// Approver is the mailbox used for EMAIL when the proof names no
	// address ("admin" gives admin@<domain>).
	Approver string
	// PollInterval is the least time between two status reads of one
	// order by Authorizations, and a pending Fetch's Retry-After (default
	// DefaultPollInterval).
	PollInterval time.Duration
	// Recheck is "update" (AutoUpdateDCV, default) or "resend"
	// (ResendDCVEmail): how Respond asks Sectigo to check again.
	Recheck string
	// RecheckInterval is the least time between two such requests for one
	// domain of an order, counted from the order's submission too
	// (default DefaultRecheckInterval).
	RecheckInterval time.Duration
	// RejectedStatuses end an order when CollectSSL reports one of them as
	// the certificate status (default DefaultRejectedStatuses).
	RejectedStatuses []string
	// ValidatedStatuses are the validation statuses that say every domain
	// is validated before issuance (default "Validated"; inferred).
	ValidatedStatuses []string
	// Roots are the anchors issued chains must verify to (nil: the
	// bundle's self-signed certificates, else the system's roots).
	Roots []*x509.Certificate
	// Test places unbilled test orders.
	Test bool
	// ServerSoftware is sent as is (default "-1").
	ServerSoftware string
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *zap.Logger
}

type orderState struct {
	mu     sync.Mutex
	readAt time.Time
	last   CollectResult
	asked  map[string]time.Time
	resent time.Time
	// unset are the domains whose method AutoUpdateDCV failed to set
	// after the order was placed: Respond sets it, whatever recheck says.
	unset map[string]bool
}

// domainPlan is how one domain of an order is proved.
type domainPlan struct {
	domain, method, email string
}

// NewIssuer wraps a client.
func NewIssuer(c *Client, opts IssuerOptions) (*Issuer, error) {
	if opts.Product <= 0 {
		return nil, errors.New("sectigo: a product code is required")
	}
	if opts.Days <= 0 {
		opts.Days = 365
	}
	if opts.DCVMethod == "" {
		opts.DCVMethod = MethodCNAME
	}
	if !IsMethod(opts.DCVMethod) {
		return nil, fmt.Errorf("sectigo: unknown DCV method %q", opts.DCVMethod)
	}
	switch opts.HTTPScheme {
	case "":
		opts.HTTPScheme = "http"
		if opts.DCVMethod == MethodHTTPS {
			opts.HTTPScheme = "https"
		}
	case "http", "https":
	default:
		return nil, fmt.Errorf("sectigo: HTTP scheme %q is neither http nor https", opts.HTTPScheme)
	}
	if opts.Approver != "" && !approverOK(opts.Approver) {
		return nil, fmt.Errorf("sectigo: approver %q is not a mailbox Sectigo accepts", opts.Approver)
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	switch opts.Recheck {
	case "":
		opts.Recheck = "update"
	case "update", "resend":
	default:
		return nil, fmt.Errorf("sectigo: recheck %q is neither update nor resend", opts.Recheck)
	}
	if opts.RecheckInterval <= 0 {
		opts.RecheckInterval = DefaultRecheckInterval
	}
	if len(opts.RejectedStatuses) == 0 {
		opts.RejectedStatuses = DefaultRejectedStatuses()
	}
	if len(opts.ValidatedStatuses) == 0 {
		opts.ValidatedStatuses = []string{"Validated"}
	}
	if opts.ServerSoftware == "" {
		opts.ServerSoftware = "-1"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = c.log
	}
	return &Issuer{c: c, opts: opts, log: opts.Logger, orders: map[string]*orderState{}, plans: map[string][]domainPlan{},
		listed: map[string]time.Time{}}, nil
}

// Client is the underlying API client.
func (is *Issuer) Client() *Client { return is.c }

// FormatRef is the order reference certd journals: "orderNumber/certificateID"
// (just the order number when Sectigo returned no certificate ID).
func FormatRef(orderNumber, certificateID string) string {
	if certificateID == "" {
		return orderNumber
	}
	return orderNumber + "/" + certificateID
}

// ParseRef splits an order reference made by FormatRef.
func ParseRef(ref string) (orderNumber, certificateID string, err error) {
	orderNumber, certificateID, _ = strings.Cut(ref, "/")
	if orderNumber == "" || strings.ContainsAny(orderNumber, "#/ ") || strings.ContainsAny(certificateID, "#/ ") {
		return "", "", fmt.Errorf("sectigo: %q is not an order reference (orderNumber/certificateID)", ref)
	}
	return orderNumber, certificateID, nil
}

// planError is a request the account cannot place as configured: a
// person must change the configuration.
func planError(op string, err error) error {
	return &ca.Error{CA: "sectigo", Op: op, Detail: err.Error(), Permanent: true, Err: err}
}

// resolve decides the API method (and approver) of each domain of req.
func (is *Issuer) resolve(req ca.Request, how map[string]ca.Proof) ([]domainPlan, error) {
	if len(req.Domains) == 0 {
		return nil, errors.New("sectigo: the request names no domain")
	}
	if len(req.Domains) > 1 && !is.opts.MultiDomain {
		return nil, fmt.Errorf("sectigo: product %d is single-domain but the certificate names %d domains (set multi_domain for an MDC/UCC product)",
			is.opts.Product, len(req.Domains))
	}
	seen := map[string]bool{}
	plans := make([]domainPlan, 0, len(req.Domains))
	for _, d := range req.Domains {
		if seen[d] {
			return nil, fmt.Errorf("sectigo: %s is named twice", d)
		}
		seen[d] = true
		p := domainPlan{domain: d, method: is.opts.DCVMethod}
		if proof, ok := how[d]; ok && proof.Method != "" {
			if proof.Delegated {
				return nil, fmt.Errorf("sectigo: %s: delegated proofs do not apply to Sectigo's CSR-hash DCV (the CNAME is found at the domain or a parent)", d)
			}
			switch proof.Method {
			case dcv.HTTPFile:
				p.method = MethodHTTP
				if is.opts.HTTPScheme == "https" {
					p.method = MethodHTTPS
				}
			case dcv.DNSTXT, dcv.DNSCNAME:
				// certd's `dns` method: a DNS record through the configured
				// provider; Sectigo's DNS proof is the CSR-hash CNAME.
				p.method = MethodCNAME
			case dcv.Email:
				p.method, p.email = MethodEmail, proof.Email
			default:
				return nil, fmt.Errorf("sectigo: %s: Sectigo's CSR-hash DCV has no %s method (use an HTTP file, a CNAME or email)", d, proof.Method)
			}
		}
		if net.ParseIP(d) != nil && p.method != MethodHTTP && p.method != MethodHTTPS {
			return nil, fmt.Errorf("sectigo: %s is an IP address: only the HTTP(S) CSR-hash file can prove it (certd's http method), not %s", d, p.method)
		}
		if p.method == MethodEmail && p.email == "" && is.opts.Approver != "" {
			p.email = is.opts.Approver + "@" + strings.TrimPrefix(d, "*.")
		}
		plans = append(plans, p)
	}
	return plans, nil
}

// artefacts computes the hashes and uniqueValue of req.
func artefacts(req ca.Request) (CSRHashes, string, error) {
	h, err := HashCSR(req.CSR)
	if err != nil {
		return CSRHashes{}, "", err
	}
	uv, err := UniqueValue(req.ClientRef)
	return h, uv, err
}

func challengesFor(h CSRHashes, uv string, plans []domainPlan) ([]dcv.Challenge, error) {
	out := make([]dcv.Challenge, 0, len(plans))
	for _, p := range plans {
		ch, err := challenge(h, uv, p.domain, p.method, p.email)
		if err != nil {
			return nil, err
		}
		out = append(out, ch)
	}
	return out, nil
}

// ChallengesBefore implements ca.PreSubmitChallenger: what to publish for
// req before it is ordered, a pure function of the CSR (its MD5 and
// SHA-256), the client reference (the uniqueValue) and how. HTTP_CSR_HASH
// and HTTPS_CSR_HASH are a file at /.well-known/pki-validation/<MD5>.txt
// (refused for a wildcard); CNAME_CSR_HASH a CNAME from _<md5>.<domain>;
// EMAIL an approver address. The methods are remembered for Submit.
func (is *Issuer) ChallengesBefore(req ca.Request, how map[string]ca.Proof) ([]dcv.Challenge, error) {
	plans, err := is.resolve(req, how)
	if err != nil {
		return nil, planError("proofs", err)
	}
	h, uv, err := artefacts(req)
	if err != nil {
		return nil, planError("proofs", err)
	}
	chs, err := challengesFor(h, uv, plans)
	if err != nil {
		return nil, planError("proofs", err)
	}
	is.mu.Lock()
	is.plans[req.ClientRef] = plans
	is.mu.Unlock()
	return chs, nil
}

// Submit orders req (AutoApplySSL) with the DCV methods ChallengesBefore
// was last given for req.ClientRef, or the account's dcv_method for every
// domain when it was not called. See SubmitWith.
func (is *Issuer) Submit(ctx context.Context, req ca.Request) (ca.Order, error) {
	is.mu.Lock()
	plans := is.plans[req.ClientRef]
	is.mu.Unlock()
	how := map[string]ca.Proof{}
	for _, p := range plans {
		how[p.domain] = is.proofOf(p)
	}
	return is.SubmitWith(ctx, req, how)
}

// proofOf is the certd proof that resolves to p.
func (is *Issuer) proofOf(p domainPlan) ca.Proof {
	switch p.method {
	case MethodHTTP, MethodHTTPS:
		return ca.Proof{Method: dcv.HTTPFile}
	case MethodEmail:
		return ca.Proof{Method: dcv.Email, Email: p.email}
	}
	return ca.Proof{Method: dcv.DNSCNAME}
}

// SubmitWith orders req with the methods how gives (the account's default
// for domains it omits). It sends product, days, serverSoftware=-1, the CSR
// (PEM), isCustomerValidated=N, the DCV method, the uniqueValue derived
// from req.ClientRef, responseFormat=1 and showCertificateID=Y; for a
// multi-domain product also domainNames and primaryDomainName (the first
// domain).
//
// An approver address is first checked against GetDCVEmailAddressList
// (Sectigo accepts only an address it listed within 24 hours). When the
// domains of a multi-domain order use different methods, the order is
// placed with one non-email method and the others are set at once with
// AutoUpdateDCV (the reference gives no per-domain method at apply time);
// if that fails, the order stands and Respond sets them later.
//
// The order's reference is "orderNumber/certificateID". A failure after
// the request was written is a *ca.Error with Ambiguous set.
func (is *Issuer) SubmitWith(ctx context.Context, req ca.Request, how map[string]ca.Proof) (ca.Order, error) {
	plans, err := is.resolve(req, how)
	if err != nil {
		return ca.Order{}, planError("submit", err)
	}
	h, uv, err := artefacts(req)
	if err != nil {
		return ca.Order{}, planError("submit", err)
	}
	if _, err := challengesFor(h, uv, plans); err != nil {
		return ca.Order{}, planError("submit", err)
	}
	for _, p := range plans {
		if p.method == MethodEmail {
			if err := is.ensureListed(ctx, p.domain, p.email); err != nil {
				return ca.Order{}, within("submit", err)
			}
		}
	}
	ar := ApplyRequest{Product: is.opts.Product, Days: is.opts.Days, ServerSoftware: is.opts.ServerSoftware, CSR: req.CSR,
		UniqueValue: uv, Test: is.opts.Test}
	if is.opts.MultiDomain {
		ar.DomainNames, ar.PrimaryDomainName = req.Domains, req.Domains[0]
	}
	ar.DCVMethod = applyMethod(plans)
	if ar.DCVMethod == MethodEmail {
		if is.opts.MultiDomain {
			for _, p := range plans {
				ar.DCVEmailAddresses = append(ar.DCVEmailAddresses, p.email)
			}
		} else {
			ar.DCVEmailAddress = plans[0].email
		}
	}
	res, err := is.c.Apply(ctx, ar)
	if err != nil {
		return ca.Order{}, within("submit", err)
	}
	ref := FormatRef(res.OrderNumber, res.CertificateID)
	log := is.log.With(zap.String(logkey.Order, ref), zap.String(logkey.Cert, req.CertName))
	log.Info("sectigo: order placed", zap.Strings("domains", req.Domains), zap.String("unique_value", uv), zap.String("csr_md5", h.MD5),
		zap.String("cost", res.TotalCost))
	if res.PaymentPending {
		log.Warn("sectigo: the order is placed but its payment is pending or required (the account's billing mode)")
	}
	if res.UniqueValue != "" && res.UniqueValue != uv {
		log.Error("sectigo: the order's uniqueValue is not the one sent: the published artefacts will not match",
			zap.String("sent", uv), zap.String("returned", res.UniqueValue))
	}
	now := is.opts.Now()
	st := is.state(ref)
	st.mu.Lock()
	for _, p := range plans {
		st.asked[p.domain] = now // Sectigo checks a new order at once
	}
	st.mu.Unlock()
	if err := is.setMethods(ctx, res.OrderNumber, plans, ar.DCVMethod); err != nil {
		log.Warn("sectigo: setting the per-domain DCV methods failed; the order stands and they are set when its proofs are answered", zap.Error(err))
		st.mu.Lock()
		for _, p := range plans {
			if p.method != ar.DCVMethod {
				delete(st.asked, p.domain)
				st.unset[p.domain] = true
			}
		}
		st.mu.Unlock()
	}
	return ca.Order{Ref: ref}, nil
}

// applyMethod is the dcvMethod an order is placed with: the primary
// domain's, unless it is EMAIL while other domains use another method
// (then the first non-email one), so that dcvEmailAddresses is sent only
// when every domain is proved by email.
func applyMethod(plans []domainPlan) string {
	if plans[0].method != MethodEmail {
		return plans[0].method
	}
	for _, p := range plans {
		if p.method != MethodEmail {
			return p.method
		}
	}
	return MethodEmail
}

// setMethods sets, with AutoUpdateDCV, the methods of the domains whose
// method is not the one the order was placed with: one call for those
// proved by email (with their addresses), one for the others.
func (is *Issuer) setMethods(ctx context.Context, orderNumber string, plans []domainPlan, placed string) error {
	var email, other UpdateDCVRequest
	for _, p := range plans {
		switch {
		case p.method == placed:
		case p.method == MethodEmail:
			email.DomainNames = append(email.DomainNames, p.domain)
			email.NewMethods = append(email.NewMethods, p.method)
			email.NewDCVEmailAddresses = append(email.NewDCVEmailAddresses, p.email)
		default:
			other.DomainNames = append(other.DomainNames, p.domain)
			other.NewMethods = append(other.NewMethods, p.method)
		}
	}
	var errs []error
	for _, r := range []UpdateDCVRequest{other, email} {
		if len(r.DomainNames) == 0 {
			continue
		}
		r.OrderNumber = orderNumber
		if err := is.c.UpdateDCV(ctx, r); err != nil {
			errs = append(errs, within("setting DCV methods", err))
		}
	}
	return errors.Join(errs...)
}

// ensureListed lists the approver addresses of domain unless address was
// listed in the last 23 hours, and fails unless address is among them.
func (is *Issuer) ensureListed(ctx context.Context, domain, address string) error {
	address = strings.ToLower(address)
	now := is.opts.Now()
	is.mu.Lock()
	at, ok := is.listed[address]
	is.mu.Unlock()
	if ok && now.Sub(at) < 23*time.Hour {
		return nil
	}
	list, err := is.c.DCVEmailAddresses(ctx, strings.TrimPrefix(domain, "*."))
	if err != nil {
		return err
	}
	if !slices.Contains(list, address) {
		err := fmt.Errorf("sectigo: %s is not an approver address Sectigo accepts for %s (it lists %s)", address, domain, strings.Join(list, ", "))
		return planError("checking the approver address", err)
	}
	is.mu.Lock()
	is.listed[address] = now
	is.mu.Unlock()
	return nil
}

// Reconcile cannot look an order up: the reference documents no lookup by
// uniqueValue, CSR or date (WebHostReport's parameters and answer are not
// in it), and resending the same CSR and token would make Sectigo fail
// the original order. An order never sent is absent; an order that may
// have been sent is left to a person with everything needed to find it:
// a Permanent *ca.Error wrapping ca.ErrUndetermined, never "not found".
func (is *Issuer) Reconcile(_ context.Context, req ca.Request) (ca.Order, bool, error) {
	if req.SentAt.IsZero() {
		return ca.Order{}, false, nil // never sent: nothing can be at Sectigo
	}
	h, uv, err := artefacts(req)
	md5, sha := h.MD5, h.SHA256
	if err != nil {
		md5, sha, uv = "(unknown)", "(unknown)", "(unknown)"
	}
	detail := fmt.Sprintf("the answer to an order was lost and Sectigo's API cannot be asked whether it was placed; the order needs an operator: "+
		"look in the reseller account for an order of product %d for %s with uniqueValue %s (CSR MD5 %s, SHA-256 %s), sent at %s; "+
		"if it exists, resolve the order as found with its reference (orderNumber, or orderNumber/certificateID), else as absent to send it again",
		is.opts.Product, strings.Join(req.Domains, ", "), uv, md5, sha, req.SentAt.UTC().Format(time.RFC3339))
	return ca.Order{}, false, &ca.Error{CA: "sectigo", Op: "reconcile", Detail: detail, Permanent: true, Err: ca.ErrUndetermined}
}

// state is the in-memory state of the order with reference ref (an
// order and its reissues are apart), made on first use. The issuer's lock
// is never held while an order's lock is taken.
func (is *Issuer) state(ref string) *orderState {
	is.mu.Lock()
	defer is.mu.Unlock()
	st, ok := is.orders[ref]
	if !ok {
		st = &orderState{asked: map[string]time.Time{}, unset: map[string]bool{}}
		is.orders[ref] = st
	}
	return st
}

// forget drops the plan of an order that is over. Its state stays, so
// that its lock stays the one lock of the order.
func (is *Issuer) forget(clientRef string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	delete(is.plans, clientRef)
}

func statusIn(s string, list []string) bool {
	s = strings.TrimSpace(s)
	for _, x := range list {
		if strings.EqualFold(s, strings.TrimSpace(x)) {
			return true
		}
	}
	return false
}

// rejectedError is Fetch's "never": ca.ErrRejected with Sectigo's words.
func rejectedError(ref string, cause error, detail string) error {
	ce := &ca.Error{CA: "sectigo", Op: "fetch", Detail: fmt.Sprintf("order %s: %s", ref, detail), Permanent: true, Err: ca.ErrRejected}
	if cause != nil {
		ce.Err = fmt.Errorf("%w: %w", ca.ErrRejected, cause)
	}
	return ce
}

// ended reports whether err is Sectigo's "already refunded" or "already
// cancelled".
func ended(err error) bool {
	ce, ok := ca.AsError(err)
	return ok && (ce.Code == fmt.Sprint(CodeRefunded) || ce.Code == fmt.Sprint(CodeCancelled))
}

// Fetch collects the certificate (CollectSSL queryType 2, then 3 for the
// chain), one order at a time. Being processed is ca.ErrPending with the
// poll interval as Retry-After; a rejected, revoked or cancelled order
// (the extended certificate status, or error -18/-20) is ca.ErrRejected.
// Nothing is verified here: certd verifies the result.
func (is *Issuer) Fetch(ctx context.Context, order ca.Order, req ca.Request) (*ca.Result, error) {
	num, certID, err := ParseRef(order.Ref)
	if err != nil {
		return nil, planError("fetch", err)
	}
	st := is.state(order.Ref)
	st.mu.Lock()
	defer st.mu.Unlock()
	res, err := is.c.Collect(ctx, CollectRequest{OrderNumber: num, CertificateID: certID, QueryType: QueryCertificate})
	if ended(err) {
		is.forget(req.ClientRef)
		return nil, rejectedError(order.Ref, err, "Sectigo says the order is over")
	}
	if err != nil {
		return nil, within("fetch", err)
	}
	st.readAt, st.last = is.opts.Now(), CollectResult{Status: res.Status, CertificateStatus: res.CertificateStatus, ValidationStatus: res.ValidationStatus}
	if statusIn(res.CertificateStatus, is.opts.RejectedStatuses) {
		is.forget(req.ClientRef)
		return nil, rejectedError(order.Ref, nil, "certificate status "+res.CertificateStatus)
	}
	if res.Status != CollectAttached || len(res.Certificate) == 0 {
		detail := fmt.Sprintf("order %s is being processed by Sectigo", order.Ref)
		if res.ValidationStatus != "" || res.CertificateStatus != "" {
			detail += fmt.Sprintf(" (certificate: %s; validation: %s)", res.CertificateStatus, res.ValidationStatus)
		}
		return nil, pendingError("fetch", detail, is.opts.PollInterval)
	}
	leaf, err := x509.ParseCertificate(res.Certificate)
	if err != nil {
		return nil, &ca.Error{CA: "sectigo", Op: "fetch", Detail: fmt.Sprintf("order %s: the certificate does not parse: %v", order.Ref, err), Err: err}
	}
	bundle, err := is.c.Collect(ctx, CollectRequest{OrderNumber: num, CertificateID: certID, QueryType: QueryChain})
	if err != nil {
		return nil, within("fetch (chain)", err)
	}
	out := &ca.Result{Leaf: leaf, Roots: is.opts.Roots}
	var bundleRoots []*x509.Certificate
	for i, der := range bundle.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, &ca.Error{CA: "sectigo", Op: "fetch", Detail: fmt.Sprintf("order %s: chain certificate %d does not parse: %v", order.Ref, i+1, err), Err: err}
		}
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			bundleRoots = append(bundleRoots, c)
			continue
		}
		out.Chain = append(out.Chain, c)
	}
	if len(out.Roots) == 0 {
		out.Roots = bundleRoots
	}
	is.forget(req.ClientRef)
	is.log.Info("sectigo: certificate collected", zap.String(logkey.Order, order.Ref), zap.String(logkey.Serial, fmt.Sprintf("%X", leaf.SerialNumber)),
		zap.Time(logkey.NotAfter, leaf.NotAfter))
	return out, nil
}

// status reads the order's status, at most once per poll interval; st.mu
// must be held.
func (is *Issuer) status(ctx context.Context, st *orderState, num, certID string) (CollectResult, error) {
	now := is.opts.Now()
	if !st.readAt.IsZero() && now.Sub(st.readAt) < is.opts.PollInterval {
		return st.last, nil
	}
	res, err := is.c.Collect(ctx, CollectRequest{OrderNumber: num, CertificateID: certID, QueryType: QueryStatus})
	if err != nil {
		return CollectResult{}, err
	}
	st.readAt, st.last = now, res
	return res, nil
}

// Authorizations implements ca.OrderAuthorizer: one authorization per
// domain, offering the same artefacts ChallengesBefore gives (the
// domain's planned method first, then the account's default, then the
// others). The reference documents no per-domain DCV status, so every
// domain is AuthPending until Sectigo reports the order validated or
// issued, then AuthValid. The status is read at most once per poll
// interval (Sectigo asks for sparse CollectSSL polling). An order that is
// over (rejected, revoked, cancelled) has nothing left to prove: the list
// is empty and Fetch reports the end.
func (is *Issuer) Authorizations(ctx context.Context, order ca.Order, req ca.Request) ([]ca.OrderAuthorization, error) {
	num, certID, err := ParseRef(order.Ref)
	if err != nil {
		return nil, planError("authorizations", err)
	}
	st := is.state(order.Ref)
	st.mu.Lock()
	res, err := is.status(ctx, st, num, certID)
	st.mu.Unlock()
	if ended(err) {
		return nil, nil
	}
	if err != nil {
		return nil, within("reading the order's status", err)
	}
	if statusIn(res.CertificateStatus, is.opts.RejectedStatuses) {
		return nil, nil
	}
	h, uv, err := artefacts(req)
	if err != nil {
		return nil, planError("authorizations", err)
	}
	is.mu.Lock()
	plans := is.plans[req.ClientRef]
	is.mu.Unlock()
	status, detail := ca.AuthPending, "awaiting validation"
	if res.ValidationStatus != "" {
		detail = "validation status: " + res.ValidationStatus
	}
	if res.Status >= CollectAvailable || statusIn(res.ValidationStatus, is.opts.ValidatedStatuses) {
		status, detail = ca.AuthValid, ""
	}
	out := make([]ca.OrderAuthorization, 0, len(req.Domains))
	for _, d := range req.Domains {
		out = append(out, ca.OrderAuthorization{Ref: order.Ref + "#" + d, Domain: d, Status: status, Detail: detail,
			Challenges: is.offered(h, uv, d, plans)})
	}
	return out, nil
}

// offered are the challenges a domain can be proved by, the planned one
// first.
func (is *Issuer) offered(h CSRHashes, uv, domain string, plans []domainPlan) []dcv.Challenge {
	httpMethod := MethodHTTP
	if is.opts.HTTPScheme == "https" {
		httpMethod = MethodHTTPS
	}
	var order []domainPlan
	for _, p := range plans {
		if p.domain == domain {
			order = append(order, p)
		}
	}
	email := ""
	if is.opts.Approver != "" {
		email = is.opts.Approver + "@" + strings.TrimPrefix(domain, "*.")
	}
	order = append(order, domainPlan{domain, is.opts.DCVMethod, email}, domainPlan{domain, MethodCNAME, ""},
		domainPlan{domain, httpMethod, ""}, domainPlan{domain, MethodEmail, email})
	var out []dcv.Challenge
	seen := map[string]bool{}
	for _, p := range order {
		if seen[p.method] {
			continue
		}
		seen[p.method] = true
		if ch, err := challenge(h, uv, domain, p.method, p.email); err == nil {
			out = append(out, ch)
		}
	}
	return out
}

// Respond implements ca.OrderAuthorizer: it asks Sectigo to check the
// domain again (AutoUpdateDCV with the challenge's method, or
// ResendDCVEmail per the account's recheck setting) and returns at once
// with AuthPending: Sectigo checks in its own time, and Authorizations
// reads the outcome. It asks at most once per recheck interval per domain
// (per order with ResendDCVEmail), counted from the order's submission:
// Sectigo checks a new order by itself.
func (is *Issuer) Respond(ctx context.Context, auth ca.OrderAuthorization, ch dcv.Challenge) (ca.OrderAuthorization, error) {
	ref, domain, ok := strings.Cut(auth.Ref, "#")
	if !ok || domain == "" {
		return auth, planError("respond", fmt.Errorf("sectigo: %q is not an authorization reference (orderNumber/certificateID#domain)", auth.Ref))
	}
	num, _, err := ParseRef(ref)
	if err != nil {
		return auth, planError("respond", err)
	}
	method := ch.CARef
	if !IsMethod(method) {
		method, err = is.methodOf(ch)
		if err != nil {
			return auth, planError("respond", err)
		}
	}
	st := is.state(ref)
	st.mu.Lock()
	defer st.mu.Unlock()
	now := is.opts.Now()
	out := auth
	out.Status, out.Checking = ca.AuthPending, false
	resend := is.opts.Recheck == "resend" && !st.unset[domain]
	last := st.asked[domain]
	if resend && st.resent.After(last) {
		last = st.resent
	}
	if !last.IsZero() && now.Sub(last) < is.opts.RecheckInterval {
		out.Detail = fmt.Sprintf("Sectigo is checking (last asked %s ago; asked again after %s)", now.Sub(last).Round(time.Second), is.opts.RecheckInterval)
		return out, nil
	}
	if method == MethodEmail {
		if err := is.ensureListed(ctx, domain, ch.EmailAddress); err != nil {
			return auth, within("asking Sectigo to check "+domain+" again", err)
		}
	}
	if resend {
		err = is.c.ResendDCVEmail(ctx, num, "")
	} else {
		r := UpdateDCVRequest{OrderNumber: num, NewMethod: method}
		if is.opts.MultiDomain {
			r.DomainName = domain
		}
		if method == MethodEmail {
			r.NewDCVEmailAddress = ch.EmailAddress
		}
		err = is.c.UpdateDCV(ctx, r)
	}
	if err != nil {
		return auth, within("asking Sectigo to check "+domain+" again", err)
	}
	st.asked[domain] = now
	delete(st.unset, domain)
	if resend {
		st.resent = now
	}
	is.log.Info("sectigo: asked to check again", zap.String(logkey.Order, ref), zap.String(logkey.Domain, domain), zap.String(logkey.Method, method))
	out.Detail = "Sectigo was asked to check again"
	return out, nil
}

// methodOf is the API method of a challenge built elsewhere.
func (is *Issuer) methodOf(ch dcv.Challenge) (string, error) {
	switch ch.Method {
	case dcv.HTTPFile:
		if is.opts.HTTPScheme == "https" {
			return MethodHTTPS, nil
		}
		return MethodHTTP, nil
	case dcv.DNSCNAME:
		return MethodCNAME, nil
	case dcv.Email:
		return MethodEmail, nil
	}
	return "", fmt.Errorf("sectigo: no DCV method for a %s challenge", ch.Method)
}

// Revoke implements ca.Revoker through RevokeRef.
func (is *Issuer) Revoke(ctx context.Context, order ca.Order, _ *x509.Certificate, reason ca.RevocationReason) error {
	codes := map[ca.RevocationReason]RevocationCode{ca.ReasonUnspecified: RevokeUnspecified, ca.ReasonKeyCompromise: RevokeKeyCompromise,
		ca.ReasonAffiliationChanged: RevokeAffiliationChanged, ca.ReasonSuperseded: RevokeSuperseded, ca.ReasonCessationOfOperation: RevokeCessationOfOperation}
	code, ok := codes[reason]
	if !ok {
		return planError("revoke", fmt.Errorf("sectigo: AutoRevokeSSL has no code for reason %s", reason))
	}
	return is.RevokeRef(ctx, order.Ref, code, "revoked by certd: "+string(reason))
}

// Reissue implements ca.Reissuer: AutoReplaceSSL under prev, proved as
// the account's DCV method says (ChallengesBefore names the same proofs
// for req, so certd publishes them first).
func (is *Issuer) Reissue(ctx context.Context, prev ca.Order, req ca.Request) (ca.Order, error) {
	is.mu.Lock()
	plans := is.plans[req.ClientRef]
	is.mu.Unlock()
	how := map[string]ca.Proof{}
	for _, p := range plans {
		how[p.domain] = is.proofOf(p)
	}
	return is.ReissueWith(ctx, prev.Ref, req, how)
}

// RevokeRef revokes the certificate of order ref (by its certificate ID
// when the reference has one), or rejects the order if it is not issued
// yet (AutoRevokeSSL). reason is free text for Sectigo's records.
func (is *Issuer) RevokeRef(ctx context.Context, ref string, code RevocationCode, reason string) error {
	num, certID, err := ParseRef(ref)
	if err != nil {
		return planError("revoke", err)
	}
	if err := is.c.Revoke(ctx, RevokeRequest{OrderNumber: num, CertificateID: certID, Reason: reason, Code: code}); err != nil {
		return within("revoke", err)
	}
	is.log.Info("sectigo: revoked", zap.String(logkey.Order, ref), zap.Int("code_reason", int(code)))
	return nil
}

// ReissueWith replaces the certificate of order ref with one for req's CSR
// (AutoReplaceSSL), proved as how says, with the uniqueValue of
// req.ClientRef (a fresh reference per reissue keeps tokens unique). The
// old certificate is not revoked. It returns the new reference
// (orderNumber/newCertificateID); publish ChallengesBefore(req, how) first.
// A failure after the request was written is ambiguous.
func (is *Issuer) ReissueWith(ctx context.Context, ref string, req ca.Request, how map[string]ca.Proof) (ca.Order, error) {
	num, _, err := ParseRef(ref)
	if err != nil {
		return ca.Order{}, planError("reissue", err)
	}
	plans, err := is.resolve(req, how)
	if err != nil {
		return ca.Order{}, planError("reissue", err)
	}
	h, uv, err := artefacts(req)
	if err != nil {
		return ca.Order{}, planError("reissue", err)
	}
	if _, err := challengesFor(h, uv, plans); err != nil {
		return ca.Order{}, planError("reissue", err)
	}
	rr := ReplaceRequest{OrderNumber: num, CSR: req.CSR, ServerSoftware: is.opts.ServerSoftware, UniqueValue: uv, DCVMethod: applyMethod(plans)}
	if is.opts.MultiDomain {
		rr.DomainNames, rr.PrimaryDomainName = req.Domains, req.Domains[0]
	}
	for _, p := range plans {
		if p.method == MethodEmail {
			if err := is.ensureListed(ctx, p.domain, p.email); err != nil {
				return ca.Order{}, within("reissue", err)
			}
		}
	}
	if rr.DCVMethod == MethodEmail {
		if is.opts.MultiDomain {
			for _, p := range plans {
				rr.DCVEmailAddresses = append(rr.DCVEmailAddresses, p.email)
			}
		} else {
			rr.DCVEmailAddress = plans[0].email
		}
	}
	res, err := is.c.Replace(ctx, rr)
	if err != nil {
		return ca.Order{}, within("reissue", err)
	}
	orderNumber := res.OrderNumber
	if orderNumber == "" {
		orderNumber = num
	}
	newRef := FormatRef(orderNumber, res.CertificateID)
	st := is.state(newRef)
	st.mu.Lock()
	for _, p := range plans {
		st.asked[p.domain] = is.opts.Now()
	}
	st.mu.Unlock()
	if err := is.setMethods(ctx, orderNumber, plans, rr.DCVMethod); err != nil {
		is.log.Warn("sectigo: setting the per-domain DCV methods of a reissue failed; they are set when its proofs are answered", zap.Error(err))
		st.mu.Lock()
		for _, p := range plans {
			if p.method != rr.DCVMethod {
				delete(st.asked, p.domain)
				st.unset[p.domain] = true
			}
		}
		st.mu.Unlock()
	}
	is.log.Info("sectigo: reissue placed", zap.String(logkey.Order, newRef), zap.String("replaces", ref))
	return ca.Order{Ref: newRef}, nil
}
