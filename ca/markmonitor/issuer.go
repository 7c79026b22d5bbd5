package markmonitor

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/logkey"
)

// Issuer is certd's ca.Issuer, ca.OrderAuthorizer and ca.ChallengeLocator
// for one Markmonitor account. Orders are paid at submit (it does not
// implement ca.Coster): a paid order is never replaced because validation
// failed or is slow; its proofs stay published and DigiCert is asked to
// check again.
type Issuer struct {
	c    *Client
	opts IssuerOptions
	log  *zap.Logger

	// orgLock is held by the one caller looking the organisation up or
	// creating it.
	orgLock chan struct{}
	mu      sync.Mutex
	org     *orgIDs
	// orgLost is when an organisation create's answer was lost: no
	// second one is sent before the search window has passed.
	orgLost time.Time
	orders  map[string]*orderState
}

var (
	_ ca.Issuer           = (*Issuer)(nil)
	_ ca.OrderAuthorizer  = (*Issuer)(nil)
	_ ca.ChallengeLocator = (*Issuer)(nil)
)

// IssuerOptions are the account's choices beyond the API client.
type IssuerOptions struct {
	// CertificateType is the product ordered (one of CertificateTypes).
	CertificateType string
	// Organization is the organisation orders are placed for, declared
	// in configuration: looked up by name, created (with its contacts)
	// when absent. OrganizationID instead names an existing one (guide
	// §8.1); its contacts of the ORGANIZATION_CONTACT and
	// EXTENDED_VALIDATION_APPROVER types go on every order.
	Organization   *OrganizationConfig
	OrganizationID string
	// Provider and Locale are sent with organisations, contacts and
	// orders (default DefaultProvider, DefaultLocale).
	Provider, Locale string
	// DCVMethod is the method of an order whose proofs are not given
	// (Submit): one of the API's methods (default: DNSMethod).
	DCVMethod string
	// DNSMethod is what certd's "dns" proofs mean: MethodDNSTXT (default)
	// or MethodDNSCNAME.
	DNSMethod string
	// TXTName places the TXT record (TXTAtDomain, default, or
	// TXTAtDNSAuth); CNAMEForm shapes the CNAME (CNAMEAtToken, default,
	// or CNAMEAtDNSAuth).
	TXTName, CNAMEForm string
	// RootHash, when set, is sent as rootHash (only "SHA_1" is known).
	RootHash string
	// DownloadFormat is pem_all (default) or p7b.
	DownloadFormat string
	// PollInterval is a pending Fetch's Retry-After (default
	// DefaultPollInterval).
	PollInterval time.Duration
	// RecheckInterval is the least time between two "validate domains"
	// requests for one order (default DefaultRecheckInterval).
	RecheckInterval time.Duration
	// SearchWindow is how long after a lost answer an order may take to
	// appear in the order search (default DefaultSearchWindow): an empty
	// search after it is a definite absence.
	SearchWindow time.Duration
	// OrgValidatedStatuses are the organisation validation statuses that
	// let OV and EV orders issue (default DefaultOrgValidatedStatuses);
	// DomainValidatedStatuses the per-domain DCV statuses that mean
	// validated (default DefaultDomainValidatedStatuses).
	OrgValidatedStatuses, DomainValidatedStatuses []string
	// Actions are the PATCH action path tokens (defaults DefaultActions).
	Actions Actions
	// Roots are the anchors issued chains must verify to (nil: the
	// self-signed certificates of the download, else the system's).
	Roots []*x509.Certificate
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *zap.Logger
}

// Actions are the {action} path tokens of PATCH /order/{id}/{action}: the
// guide names the actions in prose only.
type Actions struct {
	Cancel          string `yaml:"cancel"`
	Revoke          string `yaml:"revoke"`
	Reissue         string `yaml:"reissue"`
	ValidateDomains string `yaml:"validate_domains"`
}

// DefaultActions are certd's reading of the action tokens: cancel,
// revoke and reissue as the reference reads them, and validateDomains in
// the camel case of the API's other path (downloadCert).
func DefaultActions() Actions {
	return Actions{Cancel: "cancel", Revoke: "revoke", Reissue: "reissue", ValidateDomains: "validateDomains"}
}

// DefaultOrgValidatedStatuses and DefaultDomainValidatedStatuses are
// certd's reading of the (undocumented) validation status words,
// compared case-insensitively.
func DefaultOrgValidatedStatuses() []string {
	return []string{"VALIDATED", "VALID", "COMPLETED", "APPROVED"}
}
func DefaultDomainValidatedStatuses() []string {
	return []string{"VALIDATED", "VALID", "COMPLETED", "APPROVED"}
}

// orgIDs are the organisation and contacts orders are placed with.
type orgIDs struct {
	id       string
	name     string
	contacts []string
	// approvers are the EV approvers' addresses, for operators.
	approvers []string
}

// orderState is what the issuer remembers of an order between calls.
type orderState struct {
	mu sync.Mutex
	// asked is when DigiCert was last asked to validate the order's
	// domains.
	asked time.Time
	// pending are the names awaiting DCV at the last read.
	pending []string
	// reissued is when a reissue was requested: until its certificate is
	// delivered, the previous one is not.
	reissued time.Time
}

// NewIssuer wraps a client.
func NewIssuer(c *Client, opts IssuerOptions) (*Issuer, error) {
	if ValidationLevel(opts.CertificateType) == "" {
		return nil, fmt.Errorf("markmonitor: unknown certificate type %q", opts.CertificateType)
	}
	if opts.Organization == nil && opts.OrganizationID == "" {
		return nil, errors.New("markmonitor: an organization (or an organization_id) is required")
	}
	if opts.OrganizationID != "" && !ValidID(opts.OrganizationID) {
		return nil, fmt.Errorf("markmonitor: organization_id %q is not a resourceId", opts.OrganizationID)
	}
	if opts.Organization != nil {
		if err := opts.Organization.check(opts.CertificateType); err != nil {
			return nil, fmt.Errorf("markmonitor: organization: %w", err)
		}
	}
	if opts.Provider == "" {
		opts.Provider = DefaultProvider
	}
	if opts.Locale == "" {
		opts.Locale = DefaultLocale
	}
	switch opts.DNSMethod {
	case "":
		opts.DNSMethod = MethodDNSTXT
	case MethodDNSTXT, MethodDNSCNAME:
	default:
		return nil, fmt.Errorf("markmonitor: dns method %q is neither %s nor %s", opts.DNSMethod, MethodDNSTXT, MethodDNSCNAME)
	}
	if opts.DCVMethod == "" {
		opts.DCVMethod = opts.DNSMethod
	}
	if !IsMethod(opts.DCVMethod) {
		return nil, fmt.Errorf("markmonitor: unknown DCV method %q", opts.DCVMethod)
	}
	if opts.TXTName == "" {
		opts.TXTName = TXTAtDomain
	}
	if opts.TXTName != TXTAtDomain && opts.TXTName != TXTAtDNSAuth {
		return nil, fmt.Errorf("markmonitor: txt_name %q is neither %s nor %s", opts.TXTName, TXTAtDomain, TXTAtDNSAuth)
	}
	if opts.CNAMEForm == "" {
		opts.CNAMEForm = CNAMEAtToken
	}
	if opts.CNAMEForm != CNAMEAtToken && opts.CNAMEForm != CNAMEAtDNSAuth {
		return nil, fmt.Errorf("markmonitor: cname_form %q is neither %s nor %s", opts.CNAMEForm, CNAMEAtToken, CNAMEAtDNSAuth)
	}
	if opts.DownloadFormat == "" {
		opts.DownloadFormat = FormatPEMAll
	}
	if opts.DownloadFormat != FormatPEMAll && opts.DownloadFormat != FormatP7B {
		return nil, fmt.Errorf("markmonitor: download format %q is neither %s nor %s", opts.DownloadFormat, FormatPEMAll, FormatP7B)
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.RecheckInterval <= 0 {
		opts.RecheckInterval = DefaultRecheckInterval
	}
	if opts.SearchWindow <= 0 {
		opts.SearchWindow = DefaultSearchWindow
	}
	if len(opts.OrgValidatedStatuses) == 0 {
		opts.OrgValidatedStatuses = DefaultOrgValidatedStatuses()
	}
	if len(opts.DomainValidatedStatuses) == 0 {
		opts.DomainValidatedStatuses = DefaultDomainValidatedStatuses()
	}
	def := DefaultActions()
	for _, a := range []struct {
		v *string
		d string
	}{{&opts.Actions.Cancel, def.Cancel}, {&opts.Actions.Revoke, def.Revoke},
		{&opts.Actions.Reissue, def.Reissue}, {&opts.Actions.ValidateDomains, def.ValidateDomains}} {
		if *a.v == "" {
			*a.v = a.d
		}
	}
	if opts.Now == nil {
		opts.Now = c.opts.Now
	}
	if opts.Logger == nil {
		opts.Logger = c.log
	}
	return &Issuer{c: c, opts: opts, log: opts.Logger, orgLock: make(chan struct{}, 1), orders: map[string]*orderState{}}, nil
}

// Client is the underlying API client.
func (is *Issuer) Client() *Client { return is.c }

// state is the in-memory state of order id, made on first use.
func (is *Issuer) state(id string) *orderState {
	is.mu.Lock()
	defer is.mu.Unlock()
	st, ok := is.orders[id]
	if !ok {
		st = &orderState{}
		is.orders[id] = st
	}
	return st
}

// --- the organisation

// EnsureOrganization returns the resourceId of the account's
// organisation: the one configured by id, else the one named as
// configured (created with its contacts when there is none, and missing
// contacts added), once per issuer; later calls use what was found.
func (is *Issuer) EnsureOrganization(ctx context.Context) (string, error) {
	o, err := is.organization(ctx)
	if err != nil {
		return "", err
	}
	return o.id, nil
}

func (is *Issuer) organization(ctx context.Context) (*orgIDs, error) {
	is.mu.Lock()
	o := is.org
	is.mu.Unlock()
	if o != nil {
		return o, nil
	}
	select {
	case is.orgLock <- struct{}{}:
	case <-ctx.Done():
		return nil, &ca.Error{CA: caName, Op: "organisation", Detail: "waiting for the organisation lookup", Err: ctx.Err()}
	}
	defer func() { <-is.orgLock }()
	is.mu.Lock()
	o, lost := is.org, is.orgLost
	is.mu.Unlock()
	if o != nil {
		return o, nil
	}
	var err error
	if is.opts.OrganizationID != "" {
		o, err = is.existingOrganization(ctx)
	} else {
		o, err = is.declaredOrganization(ctx, lost)
	}
	if err != nil {
		return nil, err
	}
	is.mu.Lock()
	is.org = o
	is.mu.Unlock()
	is.log.Info("markmonitor: organisation", zap.String("organization", o.id), zap.String("name", o.name), zap.Int("contacts", len(o.contacts)))
	return o, nil
}

// existingOrganization reads the configured organisation and its
// contacts.
func (is *Issuer) existingOrganization(ctx context.Context) (*orgIDs, error) {
	org, err := is.c.Organization(ctx, is.opts.OrganizationID)
	if err != nil {
		return nil, within("reading the organisation", err)
	}
	o := &orgIDs{id: org.ResourceID, name: org.Name}
	if o.id == "" {
		o.id = is.opts.OrganizationID
	}
	for _, ct := range org.Contacts {
		if slices.Contains(ct.ContactTypes, ContactOrganization) || slices.Contains(ct.ContactTypes, ContactEVApprover) {
			o.contacts = append(o.contacts, ct.ResourceID)
		}
		if slices.Contains(ct.ContactTypes, ContactEVApprover) {
			o.approvers = append(o.approvers, ct.Email)
		}
	}
	if len(o.contacts) == 0 {
		return nil, planError("reading the organisation", fmt.Errorf("markmonitor: organisation %s has no %s contact", o.id, ContactOrganization))
	}
	return o, nil
}

// declaredOrganization finds the configured organisation by name, or
// creates it with its contacts, and adds the contacts it lacks (matched by
// email).
func (is *Issuer) declaredOrganization(ctx context.Context, lost time.Time) (*orgIDs, error) {
	decl := is.opts.Organization
	found, err := is.c.FindOrganizations(ctx, decl.Name)
	if err != nil {
		return nil, within("looking the organisation up", err)
	}
	var org *Organization
	for i := range found {
		if strings.EqualFold(strings.TrimSpace(found[i].Name), strings.TrimSpace(decl.Name)) && ValidID(found[i].ResourceID) {
			if org != nil {
				is.log.Warn("markmonitor: several organisations bear the configured name; the first is used",
					zap.String("name", decl.Name), zap.String("used", org.ResourceID), zap.String("other", found[i].ResourceID))
				break
			}
			org = &found[i]
		}
	}
	if org == nil {
		if now := is.opts.Now(); !lost.IsZero() && now.Before(lost.Add(is.opts.SearchWindow)) {
			return nil, &ca.Error{CA: caName, Op: "creating the organisation", Retry: lost.Add(is.opts.SearchWindow).Sub(now),
				Detail: fmt.Sprintf("the answer to creating organisation %q was lost at %s and it does not show in the search yet; it is not created again before %s",
					decl.Name, lost.UTC().Format(time.RFC3339), lost.Add(is.opts.SearchWindow).UTC().Format(time.RFC3339))}
		}
		created, err := is.c.CreateOrganization(ctx, decl.request(is.opts.Provider))
		if err != nil {
			if errors.Is(err, ca.ErrAmbiguous) {
				is.mu.Lock()
				is.orgLost = is.opts.Now()
				is.mu.Unlock()
			}
			return nil, within("creating the organisation", err)
		}
		if !ValidID(created.ResourceID) {
			return nil, &ca.Error{CA: caName, Op: "creating the organisation", Detail: "the answer names no organisation resourceId"}
		}
		is.log.Info("markmonitor: organisation created; DigiCert validates it (OV and EV orders wait for that)",
			zap.String("organization", created.ResourceID), zap.String("name", decl.Name))
		org = &created
	}
	o := &orgIDs{id: org.ResourceID, name: decl.Name}
	for _, want := range decl.Contacts {
		id := ""
		for _, have := range org.Contacts {
			if strings.EqualFold(have.Email, want.Email) && ValidID(have.ResourceID) {
				id = have.ResourceID
				break
			}
		}
		if id == "" {
			nc := want.request(is.opts.Provider)
			nc.OrganizationID = org.ResourceID
			ct, err := is.c.CreateContact(ctx, nc)
			if err != nil {
				return nil, within("adding contact "+want.Email+" to the organisation", err)
			}
			if !ValidID(ct.ResourceID) {
				return nil, &ca.Error{CA: caName, Op: "adding a contact", Detail: "the answer names no contact resourceId"}
			}
			is.log.Info("markmonitor: contact added to the organisation", zap.String("organization", org.ResourceID), zap.Strings("types", want.Types))
			id = ct.ResourceID
		}
		o.contacts = append(o.contacts, id)
		if slices.Contains(want.Types, ContactEVApprover) {
			o.approvers = append(o.approvers, want.Email)
		}
	}
	return o, nil
}

// --- ordering

// spec is an order's certificate as certd sends it.
type spec struct {
	cn, method, algorithm, csrPEM string
	names                         []string
}

// specOf reads req's CSR and names and decides the order's DCV method.
func (is *Issuer) specOf(req ca.Request, how map[string]ca.Proof) (spec, error) {
	if len(req.Domains) == 0 {
		return spec{}, errors.New("markmonitor: the request names no domain")
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return spec{}, fmt.Errorf("markmonitor: the CSR: %w", err)
	}
	alg, err := algorithmOf(csr.PublicKey)
	if err != nil {
		return spec{}, err
	}
	names := uniq(req.Domains)
	cn := names[0]
	if c := strings.ToLower(csr.Subject.CommonName); c != "" && slices.Contains(names, c) {
		cn = c
	}
	method := ""
	for _, d := range names {
		p, ok := how[d]
		if !ok || p.Method == "" {
			continue
		}
		m, err := is.apiMethod(p)
		if err != nil {
			return spec{}, fmt.Errorf("%s: %w", d, err)
		}
		if method != "" && m != method {
			return spec{}, fmt.Errorf("markmonitor: an order has one DCV method, and the certificate asks for both %s and %s", method, m)
		}
		method = m
	}
	if method == "" {
		method = is.opts.DCVMethod
	}
	if method == MethodHTTP {
		for _, d := range names {
			if strings.HasPrefix(d, "*.") {
				return spec{}, fmt.Errorf("markmonitor: HTTP_TOKEN cannot validate the wildcard %s", d)
			}
		}
	}
	return spec{cn: cn, method: method, algorithm: alg, csrPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: req.CSR})),
		names: names}, nil
}

// algorithmOf is the algorithmHash of a key: RSA or ECC.
func algorithmOf(pub crypto.PublicKey) (string, error) {
	switch pub.(type) {
	case *rsa.PublicKey:
		return AlgorithmRSA, nil
	case *ecdsa.PublicKey:
		return AlgorithmECC, nil
	}
	return "", fmt.Errorf("markmonitor: a %T key is neither RSA nor ECC", pub)
}

// Submit orders req with the account's DCV method (dcv_method). See
// SubmitWith.
func (is *Issuer) Submit(ctx context.Context, req ca.Request) (ca.Order, error) {
	return is.SubmitWith(ctx, req, req.Proofs)
}

// SubmitWith orders req (POST /order), its domains proved as how says
// (one method for the whole order; domains how omits, or a nil how, take
// the account's dcv_method). The organisation is looked up (or created)
// first. The order carries the organisation and its contacts, the
// certificate type, locale, provider, and the certificate: common name
// (the CSR's, when it is one of req.Domains, else the first domain), DNS
// names (every domain), the CSR (PEM), the DCV method and algorithmHash
// (RSA or ECC, from the CSR's key). The order's resourceId from the 202
// answer is the reference. A failure after the request was written (or a
// 5xx, or a 202 naming no order) is a *ca.Error with Ambiguous set.
func (is *Issuer) SubmitWith(ctx context.Context, req ca.Request, how map[string]ca.Proof) (ca.Order, error) {
	sp, err := is.specOf(req, how)
	if err != nil {
		return ca.Order{}, planError("submit", err)
	}
	org, err := is.organization(ctx)
	if err != nil {
		return ca.Order{}, within("submit", err)
	}
	body := NewOrder{OrganizationID: org.id, CertificateType: is.opts.CertificateType, Locale: is.opts.Locale, Provider: is.opts.Provider,
		Cert: NewCert{CommonName: sp.cn, DNSNames: sp.names, CSR: sp.csrPEM, DCVMethod: sp.method, AlgorithmHash: sp.algorithm, RootHash: is.opts.RootHash}}
	for _, id := range org.contacts {
		body.Contacts = append(body.Contacts, ContactRef{ResourceID: id})
	}
	info, err := is.c.CreateOrder(ctx, body)
	if err != nil {
		return ca.Order{}, within("submit", err)
	}
	if !ValidID(info.ResourceID) {
		return ca.Order{}, &ca.Error{CA: caName, Op: "submit (POST /order)", Ambiguous: true,
			Detail: "Markmonitor accepted the order but its answer names no order resourceId; the order is looked up"}
	}
	is.log.Info("markmonitor: order placed", zap.String(logkey.Order, info.ResourceID), zap.String(logkey.Cert, req.CertName),
		zap.Strings("domains", sp.names), zap.String(logkey.Method, sp.method), zap.String("certificate_type", is.opts.CertificateType),
		zap.String("status", info.Status))
	return ca.Order{Ref: info.ResourceID}, nil
}

// Reconcile finds the order req's lost answer was about, in the order
// search (GET /order, every page) by common name, matched by CSR, or by
// common name and DNS names with a creation time after req.Since. The
// search is complete for the common name, pending orders included, but an
// order may take a while to show in it: an empty search proves absence
// only once SearchWindow has passed since req.SentAt; until then the
// answer is ca.ErrUndetermined. An order never sent is absent at once.
func (is *Issuer) Reconcile(ctx context.Context, req ca.Request) (ca.Order, bool, error) {
	if req.SentAt.IsZero() {
		return ca.Order{}, false, nil // never sent: nothing can be at Markmonitor
	}
	sp, err := is.specOf(req, nil)
	if err != nil {
		return ca.Order{}, false, &ca.Error{CA: caName, Op: "reconcile", Detail: err.Error(), Permanent: true, Err: errors.Join(ca.ErrUndetermined, err)}
	}
	orders, complete, err := is.c.SearchOrders(ctx, OrderQuery{CommonNames: []string{sp.cn}})
	if err != nil {
		e := &ca.Error{CA: caName, Op: "reconcile", Detail: "searching the orders: " + err.Error(), Err: errors.Join(ca.ErrUndetermined, err)}
		if ce, ok := ca.AsError(err); ok {
			e.Status, e.Code, e.Retry, e.Permanent = ce.Status, ce.Code, ce.Retry, ce.Permanent
		}
		return ca.Order{}, false, e
	}
	orders, err = is.complete(ctx, orders, req)
	if err != nil {
		e := &ca.Error{CA: caName, Op: "reconcile", Detail: "reading a found order: " + err.Error(), Err: errors.Join(ca.ErrUndetermined, err)}
		if ce, ok := ca.AsError(err); ok {
			e.Status, e.Code, e.Retry, e.Permanent = ce.Status, ce.Code, ce.Retry, ce.Permanent
		}
		return ca.Order{}, false, e
	}
	if o, ok := is.match(orders, req, sp); ok {
		is.log.Info("markmonitor: order found after a lost answer", zap.String(logkey.Order, o.ResourceID), zap.String(logkey.Cert, req.CertName),
			zap.String("status", o.Status))
		return ca.Order{Ref: o.ResourceID}, true, nil
	}
	if !complete {
		return ca.Order{}, false, &ca.Error{CA: caName, Op: "reconcile", Permanent: true, Err: ca.ErrUndetermined,
			Detail: fmt.Sprintf("the orders for %s fill more pages than certd reads (search_max_pages); look in the Markmonitor portal for an order with this CSR sent at %s",
				sp.cn, req.SentAt.UTC().Format(time.RFC3339))}
	}
	now := is.opts.Now()
	if left := req.SentAt.Add(is.opts.SearchWindow).Sub(now); left > 0 {
		return ca.Order{}, false, &ca.Error{CA: caName, Op: "reconcile", Retry: min(left, is.opts.PollInterval), Err: ca.ErrUndetermined,
			Detail: fmt.Sprintf("no order for %s shows in the search yet; Markmonitor may still be recording one (absence is certain %s after it was sent, in %s)",
				sp.cn, is.opts.SearchWindow, left.Round(time.Second))}
	}
	return ca.Order{}, false, nil
}

// maxDetailReads bounds how many orders of a search Reconcile reads one
// by one.
const maxDetailReads = 20

// complete reads, one by one, the orders of a search that came without
// their certificate (a listing may hold summaries), unless they were
// created before req.Since: an order certd cannot compare is never read
// as absent.
func (is *Issuer) complete(ctx context.Context, orders []OrderInfo, req ca.Request) ([]OrderInfo, error) {
	reads := 0
	for i, o := range orders {
		if o.Cert.CSR != "" && o.Cert.CommonName != "" {
			continue
		}
		if at, ok := o.Created(); ok && at.Before(req.Since.Add(-creationSkew)) {
			continue
		}
		if !ValidID(o.ResourceID) {
			continue
		}
		if reads++; reads > maxDetailReads {
			return nil, &ca.Error{CA: caName, Op: "reconcile", Permanent: true,
				Detail: fmt.Sprintf("the search lists more than %d orders without their certificate; an operator must look", maxDetailReads)}
		}
		full, err := is.c.Order(ctx, o.ResourceID)
		if err != nil {
			return nil, err
		}
		orders[i] = full
	}
	return orders, nil
}

// creationSkew allows for the clocks of certd and Markmonitor.
const creationSkew = time.Minute

// match picks req's order: the one with req's CSR, else the latest with
// its common name and names created after req.Since.
func (is *Issuer) match(orders []OrderInfo, req ca.Request, sp spec) (OrderInfo, bool) {
	var best OrderInfo
	var bestAt time.Time
	found := false
	for _, o := range orders {
		if !ValidID(o.ResourceID) {
			continue
		}
		if der := csrDER(o.Cert.CSR); der != nil && bytes.Equal(der, req.CSR) {
			return o, true
		}
		if !strings.EqualFold(o.Cert.CommonName, sp.cn) || !slices.Equal(o.Names(), nameSet(sp.names)) {
			continue
		}
		if o.CertificateType != "" && o.CertificateType != is.opts.CertificateType {
			continue
		}
		at, ok := o.Created()
		if !ok || at.Before(req.Since.Add(-creationSkew)) {
			continue
		}
		if !found || at.After(bestAt) {
			best, bestAt, found = o, at, true
		}
	}
	return best, found
}

// csrDER reads a CSR as the API returns it: PEM, or bare Base64 DER.
func csrDER(s string) []byte {
	if b, _ := pem.Decode([]byte(s)); b != nil {
		return b.Bytes
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil || len(der) == 0 {
		return nil
	}
	return der
}

// terminal reports whether an order status ends the order without a
// certificate to collect.
func terminal(status string) bool {
	switch status {
	case StatusRejected, StatusFailed, StatusCanceled, StatusRevoked, StatusExpired, StatusReissueFailed:
		return true
	}
	return false
}

// domainValid reports whether name is validated in info.
func (is *Issuer) domainValid(info OrderInfo, entry *DomainDCV) bool {
	switch info.Status {
	case StatusProcessing, StatusIssued, StatusWaitingPickup:
		return true
	}
	return entry != nil && statusIn(entry.ValidationStatus, is.opts.DomainValidatedStatuses)
}

// entryFor is the order's DCV entry for domain (by its name, or a
// wildcard's base).
func entryFor(info OrderInfo, domain string) *DomainDCV {
	base := strings.TrimPrefix(domain, "*.")
	for i, e := range info.Cert.Domains {
		if strings.EqualFold(e.Name, domain) {
			return &info.Cert.Domains[i]
		}
	}
	for i, e := range info.Cert.Domains {
		if strings.EqualFold(e.Name, base) {
			return &info.Cert.Domains[i]
		}
	}
	return nil
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

// Authorizations implements ca.OrderAuthorizer: the order's domains as
// it stands (GET /order/{id}), each with the challenge of the order's
// DCV method carrying DigiCert's random value for it. A domain already
// validated (or an order past validation) needs nothing; a domain whose
// random value has not arrived yet (the order is still CREATED at
// Markmonitor) is left out until it has; an order that is over has
// nothing left to prove (Fetch reports its end).
func (is *Issuer) Authorizations(ctx context.Context, order ca.Order, req ca.Request) ([]ca.OrderAuthorization, error) {
	if !ValidID(order.Ref) {
		return nil, idError("authorizations", order.Ref)
	}
	info, err := is.c.Order(ctx, order.Ref)
	if err != nil {
		return nil, within("reading the order's authorizations", err)
	}
	if terminal(info.Status) {
		return nil, nil
	}
	method := info.Cert.DCVMethod
	if method == "" {
		method = is.opts.DCVMethod
	}
	var expires time.Time
	if at, ok := info.Created(); ok {
		expires = at.Add(TokenLife)
	}
	var out []ca.OrderAuthorization
	var pending []string
	for _, d := range uniq(req.Domains) {
		entry := entryFor(info, d)
		ref := order.Ref + "#" + d
		if is.domainValid(info, entry) {
			out = append(out, ca.OrderAuthorization{Ref: ref, Domain: d, Status: ca.AuthValid})
			continue
		}
		token := info.Cert.DCVToken
		var emails []string
		detail := "awaiting DigiCert's domain control validation"
		if entry != nil {
			if entry.DCVToken != "" {
				token = entry.DCVToken
			}
			emails = entry.Emails
			if entry.Message != "" {
				detail = entry.Message
			}
		}
		if token == "" && method != MethodEmail {
			if info.Status == StatusPending || info.Status == StatusReissuePending {
				// At DigiCert, yet no random value: certd does not read
				// it where this API puts it (json_names).
				is.log.Warn("markmonitor: the order is at DigiCert but shows no DCV random value for a domain; check json_names (dcvToken)",
					zap.String(logkey.Order, order.Ref), zap.String(logkey.Domain, d), zap.String("status", info.Status))
			}
			continue // nothing to publish yet
		}
		ch, err := is.challenge(d, method, token, emails, expires)
		if err != nil {
			return nil, planError("authorizations", err)
		}
		pending = append(pending, d)
		out = append(out, ca.OrderAuthorization{Ref: ref, Domain: d, Status: ca.AuthPending, Challenges: []dcv.Challenge{ch}, Expires: expires,
			Detail: detail})
	}
	st := is.state(order.Ref)
	st.mu.Lock()
	st.pending = pending
	st.mu.Unlock()
	return out, nil
}

// Respond implements ca.OrderAuthorizer: it asks DigiCert to check the
// order's domains now (the "validate domains" action, with every domain
// of the order still awaiting validation) and returns at once: AuthValid
// when the answer shows the domain validated, else AuthPending (DigiCert
// also checks by itself, and Authorizations reads the outcome). It asks
// at most once per RecheckInterval per order; a call within it only
// reports.
func (is *Issuer) Respond(ctx context.Context, auth ca.OrderAuthorization, ch dcv.Challenge) (ca.OrderAuthorization, error) {
	id, domain, ok := strings.Cut(auth.Ref, "#")
	if !ok || domain == "" || !ValidID(id) {
		return auth, planError("respond", fmt.Errorf("markmonitor: %q is not an authorization reference (orderId#domain)", auth.Ref))
	}
	st := is.state(id)
	st.mu.Lock()
	defer st.mu.Unlock()
	out := auth
	out.Status, out.Checking = ca.AuthPending, false
	now := is.opts.Now()
	if !st.asked.IsZero() && now.Sub(st.asked) < is.opts.RecheckInterval {
		out.Detail = fmt.Sprintf("DigiCert was asked to validate %s ago; asked again after %s", now.Sub(st.asked).Round(time.Second), is.opts.RecheckInterval)
		return out, nil
	}
	domains := slices.Clone(st.pending)
	if !slices.Contains(domains, domain) {
		domains = append(domains, domain)
	}
	info, err := is.c.Action(ctx, id, is.opts.Actions.ValidateDomains, ValidateDomainsRequest{Domains: domains})
	if err != nil {
		if ce, ok := ca.AsError(err); ok && ce.Status == 409 {
			// The order moved on (validated, processing) or cannot be
			// validated now: what it needs is read again later.
			st.asked = now
			out.Detail = "Markmonitor did not take the validation request now: " + ce.Detail
			return out, nil
		}
		return auth, within("asking DigiCert to validate "+domain, err)
	}
	st.asked = now
	is.log.Info("markmonitor: DigiCert asked to validate", zap.String(logkey.Order, id), zap.Strings("domains", domains), zap.String(logkey.Method, ch.CARef))
	if info.ResourceID != "" && is.domainValid(info, entryFor(info, domain)) {
		out.Status, out.Detail = ca.AuthValid, ""
		return out, nil
	}
	out.Detail = "DigiCert was asked to validate"
	if e := entryFor(info, domain); e != nil && e.Message != "" {
		out.Detail += ": " + e.Message
	}
	return out, nil
}

// Fetch reads the order (GET /order/{id}) and acts on its status as the
// reference's table says:
//
//	DIGI_ISSUED                       the certificate is downloaded (downloadCert, Accept: application/x-pkcs7-certificates)
//	CREATED, REISSUE_REQUEST_PENDING,
//	DIGI_PROCESSING                   ca.ErrPending, Retry = the poll interval
//	DIGI_PENDING, DIGI_REISSUE_PENDING ca.ErrPending, its Detail naming what is awaited: domain validation, or
//	                                  for OV and EV the organisation's validation (read from the organisation)
//	DIGI_NEEDS_APPROVAL               ca.ErrPending: the EV approver must approve by email
//	DIGI_WAITING_PICKUP               ca.ErrPending: a person must look (client certificates only)
//	DIGI_REJECTED, DIGI_FAILED,
//	DIGI_CANCELED, DIGI_REVOKED,
//	DIGI_EXPIRED, DIGI_REISSUE_FAILED ca.ErrRejected (Permanent)
//
// An unknown status is an error that is retried, not a wait.
func (is *Issuer) Fetch(ctx context.Context, order ca.Order, req ca.Request) (*ca.Result, error) {
	if !ValidID(order.Ref) {
		return nil, idError("fetch", order.Ref)
	}
	info, err := is.c.Order(ctx, order.Ref)
	if err != nil {
		return nil, within("fetch", err)
	}
	ref := order.Ref
	poll := is.opts.PollInterval
	switch info.Status {
	case StatusIssued:
		return is.collect(ctx, ref, info, req)
	case StatusCreated, StatusReissueRequestPending:
		return nil, pendingError("fetch", fmt.Sprintf("order %s (%s) is accepted by Markmonitor and not yet at DigiCert", ref, info.Status), poll)
	case StatusProcessing:
		return nil, pendingError("fetch", fmt.Sprintf("order %s (%s) is validated; DigiCert is issuing", ref, info.Status), poll)
	case StatusPending, StatusReissuePending:
		return nil, pendingError("fetch", fmt.Sprintf("order %s (%s) waits for %s", ref, info.Status, is.awaited(ctx, info)), poll)
	case StatusNeedsApproval:
		who := "the organisation's EV approver"
		is.mu.Lock()
		if is.org != nil && len(is.org.approvers) > 0 {
			who = "the EV approver (" + strings.Join(is.org.approvers, ", ") + ")"
		}
		is.mu.Unlock()
		return nil, pendingError("fetch", fmt.Sprintf("order %s (%s) waits for %s to approve it by the link DigiCert emailed", ref, info.Status, who), poll)
	case StatusWaitingPickup:
		return nil, pendingError("fetch", fmt.Sprintf("order %s (%s) waits for a pickup by email (a client certificate flow): a person must look", ref, info.Status), poll)
	}
	if terminal(info.Status) {
		is.log.Warn("markmonitor: order ended without a certificate", zap.String(logkey.Order, ref), zap.String("status", info.Status))
		return nil, rejectedError(ref, "status "+info.Status)
	}
	return nil, &ca.Error{CA: caName, Op: "fetch", Code: info.Status, Detail: fmt.Sprintf("order %s has status %q, which certd does not know", ref, info.Status)}
}

// awaited says what a DIGI_PENDING order waits for.
func (is *Issuer) awaited(ctx context.Context, info OrderInfo) string {
	var parts []string
	var names []string
	for _, n := range info.Names() {
		if !is.domainValid(info, entryFor(info, n)) {
			names = append(names, n)
		}
	}
	if len(names) > 0 {
		parts = append(parts, fmt.Sprintf("domain control validation of %s (%s)", strings.Join(names, ", "), info.Cert.DCVMethod))
	}
	certType := info.CertificateType
	if certType == "" {
		certType = is.opts.CertificateType
	}
	if level := ValidationLevel(certType); (level == "OV" || level == "EV") && ValidID(info.OrganizationID) {
		org, err := is.c.Organization(ctx, info.OrganizationID)
		switch {
		case err != nil:
			parts = append(parts, fmt.Sprintf("the validation of organisation %s (its status could not be read: %v)", info.OrganizationID, err))
		case !statusIn(org.ValidationStatus, is.opts.OrgValidatedStatuses):
			status := org.ValidationStatus
			if status == "" {
				status = "not given"
			}
			parts = append(parts, fmt.Sprintf("DigiCert's validation of organisation %q (%s, status %s): its contacts are called at their public numbers",
				org.Name, info.OrganizationID, status))
		}
	}
	if len(parts) == 0 {
		return "DigiCert to finish its checks"
	}
	return strings.Join(parts, "; and ")
}

// collect downloads the certificate and splits leaf, chain and roots.
func (is *Issuer) collect(ctx context.Context, ref string, info OrderInfo, req ca.Request) (*ca.Result, error) {
	body, _, err := is.c.Download(ctx, ref, is.opts.DownloadFormat)
	if err != nil {
		return nil, within("fetch", err)
	}
	certs, err := parseBundle(body)
	if err != nil {
		return nil, &ca.Error{CA: caName, Op: "fetch (downloadCert)", Detail: fmt.Sprintf("order %s: %v", ref, err), Err: err}
	}
	st := is.state(ref)
	var leaf *x509.Certificate
	if req.Key != nil {
		if pub, ok := req.Key.Public().(interface{ Equal(crypto.PublicKey) bool }); ok {
			for _, c := range certs {
				if pub.Equal(c.PublicKey) {
					leaf = c
					break
				}
			}
		}
	}
	st.mu.Lock()
	reissued := st.reissued
	if leaf != nil {
		st.reissued = time.Time{}
	}
	st.mu.Unlock()
	if leaf == nil {
		// The download is not for req's key. When a reissue is under way
		// (requested by this issuer, or the order already holds req's
		// CSR), it is the certificate being replaced: not delivered.
		if !reissued.IsZero() || (len(req.CSR) > 0 && bytes.Equal(csrDER(info.Cert.CSR), req.CSR)) {
			return nil, pendingError("fetch", fmt.Sprintf("order %s still delivers the certificate its reissue replaces", ref), is.opts.PollInterval)
		}
		for _, c := range certs {
			if !c.IsCA {
				leaf = c // not for req's key: certd's checks refuse it, loudly
				break
			}
		}
	}
	if leaf == nil {
		return nil, &ca.Error{CA: caName, Op: "fetch (downloadCert)", Detail: fmt.Sprintf("order %s: the download holds no end-entity certificate", ref)}
	}
	out := &ca.Result{Leaf: leaf, Roots: is.opts.Roots}
	var roots []*x509.Certificate
	rest := map[*x509.Certificate]bool{}
	for _, c := range certs {
		switch {
		case c == leaf:
		case bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil:
			roots = append(roots, c)
		default:
			rest[c] = true
		}
	}
	// The chain, issuer first: follow the issuers up from the leaf, then
	// anything left in the order given.
	for cur := leaf; ; {
		var next *x509.Certificate
		for _, c := range certs {
			if rest[c] && bytes.Equal(cur.RawIssuer, c.RawSubject) {
				next = c
				break
			}
		}
		if next == nil {
			break
		}
		out.Chain = append(out.Chain, next)
		delete(rest, next)
		cur = next
	}
	for _, c := range certs {
		if rest[c] {
			out.Chain = append(out.Chain, c)
		}
	}
	if len(out.Roots) == 0 {
		out.Roots = roots
	}
	is.log.Info("markmonitor: certificate collected", zap.String(logkey.Order, ref), zap.String(logkey.Serial, fmt.Sprintf("%X", leaf.SerialNumber)),
		zap.Time(logkey.NotAfter, leaf.NotAfter))
	return out, nil
}

// --- actions on orders

// Reissue asks for a new certificate in the issued order ref for csr (DER)
// (PATCH /order/{id}/reissue): the same order, no purchase. The names are
// the CSR's (common name and DNS names); the common name cannot change.
// The order then goes through DCV for new names and is collected with
// Fetch under the same reference (ca.Order{Ref: ref}), with a request for
// the new key: until the new certificate is delivered Fetch does not
// return the previous one. A lost answer is ambiguous.
func (is *Issuer) Reissue(ctx context.Context, prev ca.Order, req ca.Request) (ca.Order, error) {
	return is.ReissueRef(ctx, prev.Ref, req.CSR)
}

// ReissueRef reissues order ref for csr (DER) under the same order id.
func (is *Issuer) ReissueRef(ctx context.Context, ref string, csr []byte) (ca.Order, error) {
	if !ValidID(ref) {
		return ca.Order{}, idError("reissue", ref)
	}
	parsed, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		return ca.Order{}, planError("reissue", fmt.Errorf("markmonitor: the CSR: %w", err))
	}
	alg, err := algorithmOf(parsed.PublicKey)
	if err != nil {
		return ca.Order{}, planError("reissue", err)
	}
	names := uniq(append([]string{parsed.Subject.CommonName}, parsed.DNSNames...))
	if len(names) == 0 {
		return ca.Order{}, planError("reissue", errors.New("markmonitor: the CSR names no domain"))
	}
	body := ReissueRequest{Cert: ReissueCert{CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
		DNSNames: names, AlgorithmHash: alg}}
	st := is.state(ref)
	st.mu.Lock()
	defer st.mu.Unlock()
	info, err := is.c.Action(ctx, ref, is.opts.Actions.Reissue, body)
	if err != nil {
		if errors.Is(err, ca.ErrAmbiguous) {
			st.reissued = is.opts.Now()
		}
		return ca.Order{}, within("reissue", err)
	}
	st.reissued, st.asked, st.pending = is.opts.Now(), time.Time{}, nil
	is.log.Info("markmonitor: reissue requested", zap.String(logkey.Order, ref), zap.Strings("domains", names), zap.String("status", info.Status))
	return ca.Order{Ref: ref}, nil
}

// Cancel cancels order ref (PATCH /order/{id}/cancel): allowed while it
// is CREATED, DIGI_PENDING or DIGI_WAITING_PICKUP, or DIGI_REISSUE_PENDING
// for a pending reissue; an issued certificate is revoked instead.
func (is *Issuer) Cancel(ctx context.Context, order ca.Order) (ca.Refund, error) {
	if err := is.CancelRef(ctx, order.Ref); err != nil {
		return ca.RefundUnsaid, err
	}
	return ca.RefundUnsaid, nil
}

// CancelRef cancels order ref (PATCH /order/{id}/cancel).
func (is *Issuer) CancelRef(ctx context.Context, ref string) error {
	if _, err := is.c.Action(ctx, ref, is.opts.Actions.Cancel, nil); err != nil {
		return within("cancel", err)
	}
	is.log.Info("markmonitor: order cancelled", zap.String(logkey.Order, ref))
	return nil
}

// Revoke revokes the certificate of order ref (PATCH /order/{id}/revoke),
// permanently; reason is free text for the CA's records.
func (is *Issuer) Revoke(ctx context.Context, order ca.Order, _ *x509.Certificate, reason ca.RevocationReason) error {
	return is.RevokeRef(ctx, order.Ref, string(reason))
}

// RevokeRef revokes order ref's certificate with a free-text reason.
func (is *Issuer) RevokeRef(ctx context.Context, ref, reason string) error {
	if _, err := is.c.Action(ctx, ref, is.opts.Actions.Revoke, RevokeRequest{Reason: reason}); err != nil {
		return within("revoke", err)
	}
	is.log.Info("markmonitor: certificate revoked", zap.String(logkey.Order, ref))
	return nil
}

var (
	_ ca.Reissuer = (*Issuer)(nil)
	_ ca.Canceler = (*Issuer)(nil)
	_ ca.Revoker  = (*Issuer)(nil)
)

// uniq lower-cases names and drops empty and repeated ones, keeping the
// first occurrence's place.
func uniq(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		n = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(n), "."))
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// nameSet is the sorted, unique, lower-case set of names.
func nameSet(names []string) []string {
	set := uniq(names)
	slices.Sort(set)
	return set
}
