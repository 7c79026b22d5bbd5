package reseller

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/logkey"
	"github.com/certd/certd/internal/pemutil"
)

// Issuer is certd's ca.Issuer and ca.OrderAuthorizer for one reseller
// account. Orders are paid at submit; the order's proofs are read from
// its validation details, and a failed check is asked again within the
// same order (POST /{id}/validate), never by a new order.
type Issuer struct {
	c        *Client
	opts     IssuerOptions
	log      *zap.Logger
	rejected []string
}

var (
	_ ca.Issuer          = (*Issuer)(nil)
	_ ca.OrderAuthorizer = (*Issuer)(nil)
)

// IssuerOptions are the account's choices beyond the API client.
type IssuerOptions struct {
	// Plan is the UUID of the plan ordered (required).
	Plan string
	// DCVType is DNS (default), FILE or EMAIL.
	DCVType string
	// Contact is sent with every order (OV/EV plans need it; EMAIL DCV
	// needs its approver email).
	Contact Contact
	// PollInterval is how long before a pending order is looked at again
	// (default DefaultPollInterval): Fetch's Retry-After.
	PollInterval time.Duration
	// Roots, when set, are the anchors issued chains must verify to;
	// otherwise the self-signed certificates of the CA bundle the API
	// delivers are, and with none the system's roots.
	Roots []*x509.Certificate
	// RejectedStatuses end an order (default DefaultRejectedStatuses).
	RejectedStatuses []string
	Logger           *zap.Logger
}

// NewIssuer wraps a client.
func NewIssuer(c *Client, opts IssuerOptions) (*Issuer, error) {
	if c == nil {
		return nil, errors.New("reseller: no client")
	}
	if !uuidRE.MatchString(opts.Plan) {
		return nil, errors.New("reseller: the plan must be a UUID")
	}
	if opts.DCVType == "" {
		opts.DCVType = DCVDNS
	}
	opts.DCVType = strings.ToUpper(opts.DCVType)
	if !slices.Contains([]string{DCVDNS, DCVFile, DCVEmail}, opts.DCVType) {
		return nil, fmt.Errorf("reseller: unknown dcv_type %q", opts.DCVType)
	}
	if opts.DCVType == DCVEmail && opts.Contact.ApproverEmailAddress == "" {
		return nil, errors.New("reseller: dcv_type EMAIL needs an approver email address")
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Logger == nil {
		opts.Logger = c.log
	}
	rejected := opts.RejectedStatuses
	if len(rejected) == 0 {
		rejected = DefaultRejectedStatuses()
	}
	is := &Issuer{c: c, opts: opts, log: opts.Logger}
	for _, s := range rejected {
		is.rejected = append(is.rejected, normWord(s))
	}
	return is, nil
}

// NewFromConfig builds an Issuer from an account block: it resolves the
// API key and reads the trust files. It sends nothing.
func NewFromConfig(c *Config, log *zap.Logger, mods ...func(*ClientOptions)) (*Issuer, error) {
	if log == nil {
		log = zap.NewNop()
	}
	key, err := c.APIKey.Resolve()
	if err != nil {
		return nil, fmt.Errorf("reseller: %w", err)
	}
	if key.Reveal() == "" {
		return nil, fmt.Errorf("reseller: api_key (%s) is empty", c.APIKey)
	}
	opts := ClientOptions{URL: c.URL, Username: c.Username, APIKey: key.Reveal(), Logger: log}
	if c.CA != "" {
		certs, err := readPEMCerts(c.CA)
		if err != nil {
			return nil, fmt.Errorf("reseller: ca: %w", err)
		}
		opts.RootCAs = x509.NewCertPool()
		for _, cert := range certs {
			opts.RootCAs.AddCert(cert)
		}
	}
	var roots []*x509.Certificate
	if c.Roots != "" {
		if roots, err = readPEMCerts(c.Roots); err != nil {
			return nil, fmt.Errorf("reseller: roots: %w", err)
		}
	}
	for _, m := range mods {
		m(&opts)
	}
	client, err := NewClient(opts)
	if err != nil {
		return nil, err
	}
	return NewIssuer(client, IssuerOptions{Plan: c.Plan, DCVType: c.DCVType, Contact: c.contact(), PollInterval: c.PollInterval.D(),
		Roots: roots, RejectedStatuses: c.RejectedStatuses, Logger: log})
}

func readPEMCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := pemutil.Certificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// Client is the underlying API client.
func (is *Issuer) Client() *Client { return is.c }

// orderRequest is the body for req: its CSR, the account's plan, DCV type
// and contact, and req's client reference.
func (is *Issuer) orderRequest(csrDER []byte, clientRef string) OrderRequest {
	r := OrderRequest{CSR: csrPEM(csrDER), DCVType: is.opts.DCVType, Plan: is.opts.Plan, ClientReference: clientRef}
	r.setContact(is.opts.Contact)
	return r
}

// dcvTypeFor is the order's dcv_type from how configuration proves its
// names (certd's dns → DNS, http → FILE, email → EMAIL), or the account's
// dcv_type when it does not say. The API proves every name of an order
// one way: names configured differently are refused.
func (is *Issuer) dcvTypeFor(req ca.Request) (string, error) {
	typ := ""
	for _, d := range req.Domains {
		p, ok := req.Proofs[d]
		if !ok || p.Method == "" {
			continue
		}
		t := map[dcv.Method]string{dcv.DNSTXT: DCVDNS, dcv.DNSCNAME: DCVDNS, dcv.HTTPFile: DCVFile, dcv.Email: DCVEmail}[p.Method]
		if t == "" {
			return "", fmt.Errorf("reseller: %s: the API has no %s validation", d, p.Method)
		}
		if typ != "" && t != typ {
			return "", fmt.Errorf("reseller: the API proves every name of an order one way, but %s is configured for %s and another name for %s", d, t, typ)
		}
		typ = t
	}
	if typ == "" {
		typ = is.opts.DCVType
	}
	if typ == DCVFile {
		for _, d := range req.Domains {
			if strings.HasPrefix(d, "*.") {
				return "", fmt.Errorf("reseller: %s: a wildcard cannot be proved by a file", d)
			}
		}
	}
	return typ, nil
}

func csrPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// checkRequest refuses, before anything is sent, what the API would
// refuse or what would buy a certificate that cannot be proved.
func (is *Issuer) checkRequest(op string, req ca.Request) error {
	if len(req.CSR) == 0 {
		return &ca.Error{CA: caName, Op: op, Detail: "the request has no CSR", Permanent: true}
	}
	if is.opts.DCVType == DCVFile {
		for _, d := range req.Domains {
			if strings.HasPrefix(d, "*.") {
				return &ca.Error{CA: caName, Op: op, Code: "invalid:dcv_type", Permanent: true,
					Detail: fmt.Sprintf("dcv_type FILE cannot prove the wildcard name %s; use DNS or EMAIL", d)}
			}
		}
	}
	return nil
}

// Submit places the order: POST /ssl-certificate with the CSR, the plan,
// the DCV type, the contact fields and client_reference = req.ClientRef.
// The order's Ref is the object's id. A lost answer (or a 5xx) is
// Ambiguous, and is settled by Reconcile through the client reference.
func (is *Issuer) Submit(ctx context.Context, req ca.Request) (ca.Order, error) {
	if err := is.checkRequest("submit", req); err != nil {
		return ca.Order{}, err
	}
	if req.ClientRef == "" {
		return ca.Order{}, &ca.Error{CA: caName, Op: "submit", Permanent: true,
			Detail: "the request has no client reference: a lost answer could not be looked up"}
	}
	r := is.orderRequest(req.CSR, req.ClientRef)
	typ, err := is.dcvTypeFor(req)
	if err != nil {
		return ca.Order{}, &ca.Error{CA: caName, Op: "submit", Permanent: true, Detail: err.Error(), Err: err}
	}
	r.DCVType = typ
	cert, err := is.c.Create(ctx, r)
	if err != nil {
		return ca.Order{}, err
	}
	is.log.Info("reseller: order placed", zap.String(logkey.Order, cert.ID), zap.String("client_reference", req.ClientRef),
		zap.String("status", cert.Status))
	return ca.Order{Ref: cert.ID}, nil
}

// Reconcile looks the order up by its client reference (GET
// /ssl-certificate?client_reference=). The API creates the object
// synchronously, pending included, so an empty answer proves the order
// absent. One object is expected; with several, the oldest is the order
// and the others are reported loudly (each was charged).
func (is *Issuer) Reconcile(ctx context.Context, req ca.Request) (ca.Order, bool, error) {
	if req.SentAt.IsZero() {
		return ca.Order{}, false, nil // never sent: nothing can be there
	}
	if req.ClientRef == "" {
		return ca.Order{}, false, &ca.Error{CA: caName, Op: "reconcile", Permanent: true, Err: ca.ErrUndetermined,
			Detail: "the request has no client reference to look the order up by"}
	}
	list, err := is.c.List(ctx, ListFilter{ClientReference: req.ClientRef})
	if err != nil {
		return ca.Order{}, false, err
	}
	var match []Certificate
	for _, c := range list {
		switch {
		case c.HasClientReference && c.ClientReference != req.ClientRef:
			// The server did not filter (or filtered loosely): never take
			// another order for this one.
			is.log.Warn("reseller: the lookup by client reference listed another order; ignored",
				zap.String(logkey.Order, c.ID), zap.String("client_reference", req.ClientRef))
		case !c.HasClientReference:
			is.log.Warn("reseller: a listed order does not show its client reference; trusting the API's filter",
				zap.String(logkey.Order, c.ID), zap.String("client_reference", req.ClientRef))
			match = append(match, c)
		default:
			match = append(match, c)
		}
	}
	if len(match) == 0 {
		return ca.Order{}, false, nil
	}
	oldest := match[0]
	for _, c := range match[1:] {
		if !c.CreatedAt.IsZero() && (oldest.CreatedAt.IsZero() || c.CreatedAt.Before(oldest.CreatedAt)) {
			oldest = c
		}
	}
	if len(match) > 1 {
		ids := make([]string, len(match))
		for i, c := range match {
			ids[i] = c.ID
		}
		is.log.Error("reseller: SEVERAL ORDERS CARRY ONE CLIENT REFERENCE: each was charged; the oldest is kept, a person must delete the others (refunded within the plan's grace period)",
			zap.String("client_reference", req.ClientRef), zap.Strings("orders", ids), zap.String(logkey.Order, oldest.ID))
	}
	return ca.Order{Ref: oldest.ID}, true, nil
}

// Fetch reads the order: pending is ca.ErrPending (Retry = the poll
// interval); active is downloaded (download-crt and download-ca, or the
// PKCS #7 form); a rejected status (see RejectedStatuses) is
// ca.ErrRejected; any other status is taken as still pending, and logged.
func (is *Issuer) Fetch(ctx context.Context, order ca.Order, req ca.Request) (*ca.Result, error) {
	cert, err := is.c.Get(ctx, order.Ref)
	if err != nil {
		return nil, err
	}
	st := normWord(cert.Status)
	switch {
	case st == statusActive:
		return is.download(ctx, order.Ref, req)
	case st == statusPending:
		return nil, &ca.Error{CA: caName, Op: "fetch", Detail: "order " + order.Ref + " is pending", Retry: is.opts.PollInterval, Err: ca.ErrPending}
	case slices.Contains(is.rejected, st):
		return nil, &ca.Error{CA: caName, Op: "fetch", Code: cert.Status, Detail: fmt.Sprintf("order %s is %s", order.Ref, cert.Status), Err: ca.ErrRejected}
	default:
		is.log.Warn("reseller: unknown order status; taken as still pending (set rejected_statuses if it ends the order)",
			zap.String(logkey.Order, order.Ref), zap.String("status", cert.Status))
		return nil, &ca.Error{CA: caName, Op: "fetch", Code: cert.Status,
			Detail: fmt.Sprintf("order %s has the unknown status %q; looked at again later", order.Ref, cert.Status), Retry: is.opts.PollInterval, Err: ca.ErrPending}
	}
}

// download collects the issued certificate and its chain.
func (is *Issuer) download(ctx context.Context, id string, req ca.Request) (*ca.Result, error) {
	var certs []*x509.Certificate
	crt, err := is.c.Download(ctx, id, "crt")
	if err == nil {
		var caBundle []byte
		if caBundle, err = is.c.Download(ctx, id, "ca"); err == nil {
			certs, err = parseDownload("crt", crt, certs)
			if err == nil {
				certs, err = parseDownload("ca", caBundle, certs)
			}
		}
	}
	if err != nil {
		// The PKCS #7 form carries the leaf and the chain together.
		p7, perr := is.c.Download(ctx, id, "pkcs7")
		if perr != nil {
			return nil, errors.Join(err, perr)
		}
		is.log.Info("reseller: crt/ca download failed; using the PKCS #7 form", zap.String(logkey.Order, id), zap.Error(err))
		if certs, err = parseDownload("pkcs7", p7, nil); err != nil {
			return nil, err
		}
	}
	return is.assemble(id, certs, req)
}

func parseDownload(format string, b []byte, into []*x509.Certificate) ([]*x509.Certificate, error) {
	certs, err := parseCerts(b)
	if err != nil {
		return nil, &ca.Error{CA: caName, Op: opName("fetch", RouteDownload(format)), Detail: "reading the certificates: " + err.Error(), Err: err}
	}
	return append(into, certs...), nil
}

// assemble picks the leaf (the certificate for the request's key, else
// the first that is not a CA), orders the chain from the leaf's issuer up
// and separates the roots.
func (is *Issuer) assemble(id string, certs []*x509.Certificate, req ca.Request) (*ca.Result, error) {
	var leaf *x509.Certificate
	var pub interface{ Equal(crypto.PublicKey) bool }
	if req.Key != nil {
		pub, _ = req.Key.Public().(interface{ Equal(crypto.PublicKey) bool })
	}
	for _, c := range certs {
		if pub != nil && pub.Equal(c.PublicKey) {
			leaf = c
			break
		}
	}
	if leaf == nil {
		if pub != nil {
			return nil, &ca.Error{CA: caName, Op: "fetch",
				Detail: fmt.Sprintf("order %s delivered no certificate for the order's key (reissued for another key?)", id)}
		}
		for _, c := range certs {
			if !c.IsCA {
				leaf = c
				break
			}
		}
	}
	if leaf == nil {
		return nil, &ca.Error{CA: caName, Op: "fetch", Detail: fmt.Sprintf("order %s delivered no end-entity certificate", id)}
	}
	var rest, roots []*x509.Certificate
	seen := map[string]bool{string(leaf.Raw): true}
	for _, c := range certs {
		if seen[string(c.Raw)] {
			continue
		}
		seen[string(c.Raw)] = true
		if selfSigned(c) {
			roots = append(roots, c)
		} else {
			rest = append(rest, c)
		}
	}
	// The path from the leaf up, then anything else the CA sent.
	var chain []*x509.Certificate
	for cur := leaf; ; {
		i := slices.IndexFunc(rest, func(c *x509.Certificate) bool { return cur.CheckSignatureFrom(c) == nil })
		if i < 0 {
			break
		}
		cur = rest[i]
		chain = append(chain, cur)
		rest = slices.Delete(rest, i, i+1)
	}
	chain = append(chain, rest...)
	if len(is.opts.Roots) > 0 {
		roots = is.opts.Roots
	}
	return &ca.Result{Leaf: leaf, Chain: chain, Roots: roots}, nil
}

func selfSigned(c *x509.Certificate) bool {
	return c.IsCA && string(c.RawIssuer) == string(c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// Authorizations reads the order's validation details and returns one
// authorization per requested name, with the challenges the answer gives
// (see parseValidation): DNS as a TXT or CNAME as the answer says, FILE
// as an HTTP file (never for a wildcard), EMAIL as the approver address.
// A name is AuthValid when the answer says it is validated (or the order
// is already active), else AuthPending.
func (is *Issuer) Authorizations(ctx context.Context, order ca.Order, req ca.Request) ([]ca.OrderAuthorization, error) {
	body, err := is.c.ValidationDetails(ctx, order.Ref)
	if err != nil {
		return nil, err
	}
	rep, err := parseValidation(body, req.Domains)
	if err != nil {
		return nil, &ca.Error{CA: caName, Op: opName("authorizations", RouteValidationDetails), Detail: err.Error(), Err: err}
	}
	log := is.log.With(zap.String(logkey.Order, order.Ref))
	for _, n := range rep.Notes {
		log.Info("reseller: validation details: " + n)
	}
	unread := false
	for _, dv := range rep.Domains {
		if !dv.Valid && len(dv.Challenges) == 0 {
			unread = true
		}
	}
	active := rep.AllValid
	if unread && !active {
		// Nothing to publish for a name: perhaps nothing is needed any
		// more (the order is issued, and the answer says so its own way).
		if cert, err := is.c.Get(ctx, order.Ref); err == nil && normWord(cert.Status) == statusActive {
			active = true
		}
	}
	if unread && !active {
		log.Warn("reseller: the validation details give nothing to publish for some names; their shape is not known to certd",
			zap.String("shape", rep.Shape))
	}
	out := make([]ca.OrderAuthorization, 0, len(rep.Domains))
	for _, dv := range rep.Domains {
		a := ca.OrderAuthorization{Ref: order.Ref, Domain: dv.Domain, Status: ca.AuthPending, Detail: dv.Detail}
		if dv.Valid || active {
			a.Status = ca.AuthValid
		}
		for _, ch := range dv.Challenges {
			if is.opts.DCVType == DCVEmail && ch.Method == dcv.Email && ch.EmailAddress == "" {
				ch.EmailAddress = is.opts.Contact.ApproverEmailAddress
			}
			ch.CARef = order.Ref
			a.Challenges = append(a.Challenges, ch)
		}
		if is.opts.DCVType == DCVEmail && !slices.ContainsFunc(a.Challenges, func(c dcv.Challenge) bool { return c.Method == dcv.Email }) {
			// The approver was named in the order itself.
			a.Challenges = append(a.Challenges, dcv.Challenge{Domain: strings.TrimPrefix(dv.Domain, "*."), Method: dcv.Email,
				EmailAddress: is.opts.Contact.ApproverEmailAddress, CARef: order.Ref})
		}
		out = append(out, a)
	}
	return out, nil
}

// Respond asks the API to check the order's proof for auth's name again
// (POST /ssl-certificate/{id}/validate with the challenge's DCV type), and
// returns at once with what the validation details then say: usually
// AuthPending, the scheduler looking again later. A name already valid is
// returned as is, without asking.
func (is *Issuer) Respond(ctx context.Context, auth ca.OrderAuthorization, ch dcv.Challenge) (ca.OrderAuthorization, error) {
	if auth.Status == ca.AuthValid {
		return auth, nil
	}
	r := ValidateRequest{Domain: auth.Domain}
	switch ch.Method {
	case dcv.DNSTXT, dcv.DNSCNAME:
		r.DCVType = DCVDNS
	case dcv.HTTPFile:
		r.DCVType = DCVFile
	case dcv.Email:
		r.DCVType, r.EmailAddress = DCVEmail, ch.EmailAddress
	default:
		return auth, &ca.Error{CA: caName, Op: "respond", Permanent: true, Detail: fmt.Sprintf("the API cannot check a %s challenge", ch.Method)}
	}
	if err := is.c.Validate(ctx, auth.Ref, r); err != nil {
		var e *ca.Error
		if errors.As(err, &e) && e.Status == http.StatusConflict {
			// Already being checked (or already validated): only wait.
			is.log.Info("reseller: the API is already checking", zap.String(logkey.Order, auth.Ref), zap.String(logkey.Domain, auth.Domain), zap.Error(err))
		} else {
			return auth, err
		}
	}
	out := auth
	out.Status = ca.AuthPending
	body, err := is.c.ValidationDetails(ctx, auth.Ref)
	if err != nil {
		return out, nil // the check was asked for; the next look tells
	}
	if rep, err := parseValidation(body, []string{auth.Domain}); err == nil && len(rep.Domains) == 1 {
		dv := rep.Domains[0]
		if dv.Valid {
			out.Status = ca.AuthValid
		}
		out.Detail = dv.Detail
	}
	return out, nil
}

// Renew renews the certificate id in place (POST /ssl-certificate/{id}/
// renew): a paid action (the plan is charged again) that turns the same
// object pending until the new certificate is active. The reference marks
// the CSR required for renew; clientRef becomes the object's
// client_reference, so that a lost answer is looked up like a new order's.
// The returned order's Ref is id.
func (is *Issuer) Renew(ctx context.Context, prev ca.Order, req ca.Request) (ca.Order, error) {
	id := prev.Ref
	if err := is.checkRequest("renew", req); err != nil {
		return ca.Order{}, err
	}
	r := is.orderRequest(req.CSR, req.ClientRef)
	typ, err := is.dcvTypeFor(req)
	if err != nil {
		return ca.Order{}, &ca.Error{CA: caName, Op: "renew", Permanent: true, Detail: err.Error(), Err: err}
	}
	r.DCVType = typ // as the certificate is proved now, not the account's default
	cert, err := is.c.Renew(ctx, id, r)
	if err != nil {
		return ca.Order{}, err
	}
	is.log.Info("reseller: order renewed", zap.String(logkey.Order, cert.ID), zap.String("client_reference", req.ClientRef))
	return ca.Order{Ref: cert.ID}, nil
}

// Reissue replaces the certificate id with one for req's CSR (POST
// /ssl-certificate/{id}/reissue): no purchase; the API activates it at
// once, making the current certificate invalid. Fetch collects it.
func (is *Issuer) Reissue(ctx context.Context, prev ca.Order, req ca.Request) (ca.Order, error) {
	id := prev.Ref
	if err := is.checkRequest("reissue", req); err != nil {
		return ca.Order{}, err
	}
	r := is.orderRequest(req.CSR, req.ClientRef)
	typ, err := is.dcvTypeFor(req)
	if err != nil {
		return ca.Order{}, &ca.Error{CA: caName, Op: "reissue", Permanent: true, Detail: err.Error(), Err: err}
	}
	r.DCVType = typ
	cert, err := is.c.Reissue(ctx, id, r)
	if err != nil {
		return ca.Order{}, err
	}
	is.log.Info("reseller: certificate reissued", zap.String(logkey.Order, cert.ID))
	return ca.Order{Ref: cert.ID}, nil
}

// Cancel implements ca.Canceler: the object is deleted (refunded inside
// the plan's grace period).
func (is *Issuer) Cancel(ctx context.Context, order ca.Order) (ca.Refund, error) {
	r, err := is.Delete(ctx, order.Ref)
	if err != nil {
		return ca.RefundUnsaid, err
	}
	switch r {
	case Refunded:
		return ca.Refunded, nil
	case NotRefunded:
		return ca.NotRefunded, nil
	}
	return ca.RefundUnsaid, nil
}

// Revoke implements ca.Revoker with what the API offers: DELETE, which
// disables the certificate at once (and refunds it inside the plan's
// grace period). The reason is not sent: the API takes none.
func (is *Issuer) Revoke(ctx context.Context, order ca.Order, _ *x509.Certificate, reason ca.RevocationReason) error {
	r, err := is.Delete(ctx, order.Ref)
	if err != nil {
		return err
	}
	is.log.Warn("reseller: certificate deleted (the API's revocation)", zap.String(logkey.Order, order.Ref), zap.String("reason", string(reason)), zap.Int("refund", int(r)))
	return nil
}

var (
	_ ca.Renewer  = (*Issuer)(nil)
	_ ca.Reissuer = (*Issuer)(nil)
	_ ca.Canceler = (*Issuer)(nil)
	_ ca.Revoker  = (*Issuer)(nil)
)

// Delete disables the certificate id at once (DELETE
// /ssl-certificate/{id}); the API refunds it inside the plan's grace
// period, and says so (or not: RefundUnknown).
func (is *Issuer) Delete(ctx context.Context, id string) (Refund, error) {
	r, err := is.c.Delete(ctx, id)
	if err != nil {
		return RefundUnknown, err
	}
	is.log.Info("reseller: certificate deleted", zap.String(logkey.Order, id), zap.Stringer("refund", r))
	return r, nil
}
