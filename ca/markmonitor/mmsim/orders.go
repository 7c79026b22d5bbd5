package mmsim

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/certd/certd/internal/simpki"
)

// Order statuses (guide §7.4.2).
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
	StatusRejected              = "DIGI_REJECTED"
)

// Organisation validation statuses (inferred words).
const (
	OrgPending   = "PENDING"
	OrgValidated = "VALIDATED"
)

// level is the validation level of a certificate type ("" if unknown).
func level(certType string) string {
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

type org struct {
	id, name                                         string
	address, address2, city, state, country, zip, ph string
	created                                          time.Time
	validated                                        bool
	contacts                                         []string
}

type contact struct {
	id, orgID                                  string
	first, last, title, email, phone, provider string
	types                                      []string
}

type order struct {
	id, orgID, certType, locale string
	contacts                    []string
	created                     time.Time
	status                      string
	// moveAt is when a CREATED (REISSUE_REQUEST_PENDING) order reaches
	// DigiCert.
	moveAt time.Time
	// reissue: the current request is a reissue.
	reissue                bool
	cn                     string
	names                  []string
	method, alg, rootHash  string
	csrPEM                 string
	pub                    crypto.PublicKey
	dcv                    []*domainDCV
	delay                  time.Duration
	readyAt                time.Time
	leaves                 [][]byte // issued certificates, the latest last
	approved, failNext     bool
	checks                 int
	prevStatus, revokedWhy string
}

type domainDCV struct {
	name, token string
	ok          bool
	next        time.Time // next check due
	last        string    // the last check's failure
}

// --- views (the JSON the API answers)

type contactView struct {
	ResourceID     string   `json:"resourceId"`
	OrganizationID string   `json:"organizationId"`
	Provider       string   `json:"provider"`
	FirstName      string   `json:"firstName"`
	LastName       string   `json:"lastName"`
	JobTitle       string   `json:"jobTitle,omitempty"`
	Email          string   `json:"email"`
	Phone          string   `json:"phone"`
	ContactTypes   []string `json:"contactTypes"`
}

type orgView struct {
	ResourceID       string        `json:"resourceId"`
	Name             string        `json:"name"`
	Address          string        `json:"address"`
	Address2         string        `json:"address2,omitempty"`
	City             string        `json:"city"`
	State            string        `json:"state,omitempty"`
	Country          string        `json:"country"`
	Zip              string        `json:"zip"`
	Phone            string        `json:"phone"`
	Provider         string        `json:"provider"`
	ValidationStatus string        `json:"validationStatus"`
	CreatedDate      string        `json:"createdDate"`
	Contacts         []contactView `json:"contacts"`
}

type contactRef struct {
	ResourceID string `json:"resourceId"`
}

type domainView struct {
	Name             string   `json:"name"`
	DCVToken         string   `json:"dcvToken,omitempty"`
	ValidationStatus string   `json:"validationStatus"`
	Emails           []string `json:"emails,omitempty"`
	Message          string   `json:"message,omitempty"`
}

type certView struct {
	CommonName    string       `json:"commonName"`
	DNSNames      []string     `json:"dnsNames"`
	CSR           string       `json:"csr"`
	DCVMethod     string       `json:"dcvMethod"`
	AlgorithmHash string       `json:"algorithmHash"`
	RootHash      string       `json:"rootHash,omitempty"`
	Domains       []domainView `json:"domains"`
}

type orderView struct {
	ResourceID      string       `json:"resourceId"`
	OrganizationID  string       `json:"organizationId"`
	CertificateType string       `json:"certificateType"`
	Locale          string       `json:"locale"`
	Provider        string       `json:"provider"`
	Status          string       `json:"status"`
	CreatedDate     string       `json:"createdDate"`
	Contacts        []contactRef `json:"contacts"`
	Cert            certView     `json:"cert"`
}

type page struct {
	Content       any  `json:"content"`
	TotalElements int  `json:"totalElements"`
	TotalPages    int  `json:"totalPages"`
	Number        int  `json:"number"`
	Size          int  `json:"size"`
	Last          bool `json:"last"`
}

// orgValidated reports whether DigiCert has validated o by now; s.mu held.
func (s *Server) orgValidated(o *org, now time.Time) bool {
	if !o.validated && !now.Before(o.created.Add(s.opts.OrgValidation)) {
		o.validated = true
	}
	return o.validated
}

func (s *Server) orgView(o *org, now time.Time) orgView {
	v := orgView{ResourceID: o.id, Name: o.name, Address: o.address, Address2: o.address2, City: o.city, State: o.state, Country: o.country,
		Zip: o.zip, Phone: o.ph, Provider: s.opts.Provider, ValidationStatus: OrgPending, CreatedDate: o.created.UTC().Format(time.RFC3339Nano),
		Contacts: []contactView{}}
	if s.orgValidated(o, now) {
		v.ValidationStatus = OrgValidated
	}
	for _, id := range o.contacts {
		v.Contacts = append(v.Contacts, contactViewOf(s.contacts[id]))
	}
	return v
}

func contactViewOf(c *contact) contactView {
	return contactView{ResourceID: c.id, OrganizationID: c.orgID, Provider: c.provider, FirstName: c.first, LastName: c.last, JobTitle: c.title,
		Email: c.email, Phone: c.phone, ContactTypes: slices.Clone(c.types)}
}

// tokensShown: the order has reached DigiCert, which generated its DCV
// tokens.
func (o *order) tokensShown() bool {
	return o.status != StatusCreated && o.status != StatusReissueRequestPending
}

func (s *Server) orderView(o *order) orderView {
	v := orderView{ResourceID: o.id, OrganizationID: o.orgID, CertificateType: o.certType, Locale: o.locale, Provider: s.opts.Provider,
		Status: o.status, CreatedDate: o.created.UTC().Format(time.RFC3339Nano), Contacts: []contactRef{},
		Cert: certView{CommonName: o.cn, DNSNames: slices.Clone(o.names), CSR: o.csrPEM, DCVMethod: o.method, AlgorithmHash: o.alg,
			RootHash: o.rootHash, Domains: []domainView{}}}
	for _, id := range o.contacts {
		v.Contacts = append(v.Contacts, contactRef{ResourceID: id})
	}
	for _, d := range o.dcv {
		dv := domainView{Name: d.name, ValidationStatus: "PENDING", Message: d.last}
		if d.ok {
			dv.ValidationStatus = "VALIDATED"
		}
		if o.tokensShown() && o.method != "EMAIL" {
			dv.DCVToken = d.token
		}
		if o.method == "EMAIL" {
			dv.Emails = approvers(d.name)
		}
		v.Cert.Domains = append(v.Cert.Domains, dv)
	}
	return v
}

// --- validation helpers

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	return strings.IndexFunc(l, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') }) < 0
}

// validName: a lower-case host name with two labels or more, optionally a
// wildcard.
func validName(n string) bool {
	n = strings.TrimPrefix(n, "*.")
	labels := strings.Split(n, ".")
	if len(labels) < 2 || len(n) > 253 {
		return false
	}
	for _, l := range labels {
		if !validLabel(l) {
			return false
		}
	}
	return true
}

func validMethod(m string) bool {
	switch m {
	case "EMAIL", "DNS_CNAME_TOKEN", "HTTP_TOKEN", "DNS_TXT_TOKEN":
		return true
	}
	return false
}

// approvers are the constructed addresses DigiCert mails for domain.
func approvers(domain string) []string {
	d := strings.TrimPrefix(domain, "*.")
	var out []string
	for _, local := range []string{"admin", "administrator", "hostmaster", "postmaster", "webmaster"} {
		out = append(out, local+"@"+d)
	}
	return out
}

// parseCSR reads a PEM CSR and checks its signature.
func parseCSR(v string) (*x509.CertificateRequest, *httpError) {
	b, _ := pem.Decode([]byte(v))
	if b == nil || (b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST") {
		return nil, fail(400, "cert.csr: not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fail(400, "cert.csr: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fail(400, "cert.csr: signature: %v", err)
	}
	return csr, nil
}

func algorithmOf(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "ECC"
	}
	return ""
}

// orderNames is the order's name set: the common name first, then the
// DNS names, lower case, without repeats.
func orderNames(cn string, dnsNames []string) []string {
	out := []string{cn}
	for _, n := range dnsNames {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// checkNames refuses invalid names, and HTTP_TOKEN for wildcards.
func checkNames(names []string, method string) *httpError {
	for _, n := range names {
		if !validName(n) {
			return fail(400, "cert.dnsNames: %q is not a lower-case FQDN", n)
		}
		if method == "HTTP_TOKEN" && strings.HasPrefix(n, "*.") {
			return fail(400, "cert.dcvMethod: HTTP_TOKEN cannot validate the wildcard %s", n)
		}
	}
	return nil
}

// query reads the query string: only allowed names, each once.
func query(c *call, allowed ...string) (url.Values, *httpError) {
	q := c.r.URL.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(allowed, k) {
			return nil, fail(400, "unknown query parameter %q", k)
		}
		if len(q[k]) > 1 && k != "commonNames" && k != "statuses" && k != "certificateTypes" {
			return nil, fail(400, "query parameter %q given %d times", k, len(q[k]))
		}
	}
	return q, nil
}

// listParam reads a list parameter: repeated, or comma-separated.
func listParam(q url.Values, k string) []string {
	var out []string
	for _, v := range q[k] {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// paged answers one page of items.
func (s *Server) paged(q url.Values, items []any) (int, any, *httpError) {
	pg, size := 0, 20
	var err error
	if v := q.Get("page"); v != "" {
		if pg, err = strconv.Atoi(v); err != nil || pg < 0 {
			return 0, nil, fail(400, "page: %q is not a page number (the first page is 0)", v)
		}
	}
	if v := q.Get("size"); v != "" {
		if size, err = strconv.Atoi(v); err != nil || size < 1 || size > s.opts.MaxPageSize {
			return 0, nil, fail(400, "size: %q is not between 1 and %d", v, s.opts.MaxPageSize)
		}
	}
	total := (len(items) + size - 1) / size
	from := min(pg*size, len(items))
	to := min(from+size, len(items))
	content := items[from:to]
	if content == nil {
		content = []any{}
	}
	return 200, page{Content: content, TotalElements: len(items), TotalPages: total, Number: pg, Size: size, Last: pg >= total-1}, nil
}

// --- organisations and contacts

type newContact struct {
	OrganizationID string   `json:"organizationId"`
	Provider       string   `json:"provider"`
	FirstName      string   `json:"firstName"`
	LastName       string   `json:"lastName"`
	JobTitle       string   `json:"jobTitle"`
	Email          string   `json:"email"`
	Phone          string   `json:"phone"`
	ContactTypes   []string `json:"contactTypes"`
}

func (s *Server) checkContact(nc newContact, field string) *httpError {
	for _, f := range []struct{ k, v string }{{"firstName", nc.FirstName}, {"lastName", nc.LastName}, {"email", nc.Email}, {"phone", nc.Phone}} {
		if strings.TrimSpace(f.v) == "" {
			return fail(400, "%s.%s is required", field, f.k)
		}
	}
	if !strings.Contains(nc.Email, "@") {
		return fail(400, "%s.email: %q is not an email address", field, nc.Email)
	}
	if nc.Provider != "" && nc.Provider != s.opts.Provider {
		return fail(400, "%s.provider: unknown provider %q", field, nc.Provider)
	}
	if len(nc.ContactTypes) == 0 {
		return fail(400, "%s.contactTypes is required", field)
	}
	for _, t := range nc.ContactTypes {
		if t != "ORGANIZATION_CONTACT" && t != "EXTENDED_VALIDATION_APPROVER" {
			return fail(400, "%s.contactTypes: unknown contact type %q", field, t)
		}
	}
	return nil
}

// addContact records a contact; s.mu held.
func (s *Server) addContact(o *org, nc newContact) *contact {
	c := &contact{id: newUUID(), orgID: o.id, first: nc.FirstName, last: nc.LastName, title: nc.JobTitle, email: nc.Email, phone: nc.Phone,
		provider: s.opts.Provider, types: slices.Clone(nc.ContactTypes)}
	s.contacts[c.id] = c
	o.contacts = append(o.contacts, c.id)
	return c
}

func (s *Server) createOrg(_ context.Context, c *call) (int, any, *httpError) {
	var req struct {
		Name     string       `json:"name"`
		Address  string       `json:"address"`
		Address2 string       `json:"address2"`
		City     string       `json:"city"`
		State    string       `json:"state"`
		Country  string       `json:"country"`
		Zip      string       `json:"zip"`
		Phone    string       `json:"phone"`
		Provider string       `json:"provider"`
		Contacts []newContact `json:"contacts"`
	}
	if e := readJSON(c.r, &req); e != nil {
		return 0, nil, e
	}
	for _, f := range []struct{ k, v string }{{"name", req.Name}, {"address", req.Address}, {"city", req.City}, {"country", req.Country},
		{"zip", req.Zip}, {"phone", req.Phone}, {"provider", req.Provider}} {
		if strings.TrimSpace(f.v) == "" {
			return 0, nil, fail(400, "%s is required", f.k)
		}
	}
	if len(req.Country) != 2 {
		return 0, nil, fail(400, "country: %q is not a two-letter code", req.Country)
	}
	if req.Provider != s.opts.Provider {
		return 0, nil, fail(400, "provider: unknown provider %q", req.Provider)
	}
	if len(req.Contacts) == 0 {
		return 0, nil, fail(400, "contacts: at least one contact is required")
	}
	hasOrgContact := false
	for i, nc := range req.Contacts {
		if nc.OrganizationID != "" {
			return 0, nil, fail(400, "contacts[%d].organizationId: not taken when the organisation is created", i)
		}
		if e := s.checkContact(nc, fmt.Sprintf("contacts[%d]", i)); e != nil {
			return 0, nil, e
		}
		hasOrgContact = hasOrgContact || slices.Contains(nc.ContactTypes, "ORGANIZATION_CONTACT")
	}
	if !hasOrgContact {
		return 0, nil, fail(400, "contacts: an ORGANIZATION_CONTACT is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := &org{id: newUUID(), name: req.Name, address: req.Address, address2: req.Address2, city: req.City, state: req.State, country: req.Country,
		zip: req.Zip, ph: req.Phone, created: c.now}
	for _, nc := range req.Contacts {
		s.addContact(o, nc)
	}
	// Markmonitor adds a technical contact of its own to every organisation.
	tech := &contact{id: newUUID(), orgID: o.id, first: "Markmonitor", last: "Support", email: "ssl-support@markmonitor.example",
		phone: "+1.2083895740", provider: s.opts.Provider, types: []string{"TECHNICAL_CONTACT"}}
	s.contacts[tech.id] = tech
	o.contacts = append(o.contacts, tech.id)
	s.orgs[o.id] = o
	s.orgSeq = append(s.orgSeq, o.id)
	return 201, s.orgView(o, c.now), nil
}

func (s *Server) listOrgs(_ context.Context, c *call) (int, any, *httpError) {
	q, e := query(c, "name", "providerId", "page", "size")
	if e != nil {
		return 0, nil, e
	}
	name := strings.ToLower(q.Get("name"))
	s.mu.Lock()
	var items []any
	for _, id := range s.orgSeq {
		o := s.orgs[id]
		if name == "" || strings.Contains(strings.ToLower(o.name), name) {
			items = append(items, s.orgView(o, c.now))
		}
	}
	s.mu.Unlock()
	return s.paged(q, items)
}

func (s *Server) getOrg(_ context.Context, c *call) (int, any, *httpError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orgs[c.r.PathValue("id")]
	if !ok {
		return 0, nil, fail(404, "no organization %s", c.r.PathValue("id"))
	}
	return 200, s.orgView(o, c.now), nil
}

func (s *Server) createContact(_ context.Context, c *call) (int, any, *httpError) {
	var nc newContact
	if e := readJSON(c.r, &nc); e != nil {
		return 0, nil, e
	}
	if nc.OrganizationID == "" {
		return 0, nil, fail(400, "organizationId is required")
	}
	if nc.Provider == "" {
		return 0, nil, fail(400, "provider is required")
	}
	if e := s.checkContact(nc, "contact"); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orgs[nc.OrganizationID]
	if !ok {
		return 0, nil, fail(400, "organizationId: no organization %s", nc.OrganizationID)
	}
	ct := s.addContact(o, nc)
	if slices.Contains(nc.ContactTypes, "EXTENDED_VALIDATION_APPROVER") {
		o.validated, o.created = false, c.now // a new EV approver: the organisation is validated again
	}
	return 201, contactViewOf(ct), nil
}

func (s *Server) listContacts(_ context.Context, c *call) (int, any, *httpError) {
	q, e := query(c, "email", "page", "size")
	if e != nil {
		return 0, nil, e
	}
	email := strings.ToLower(q.Get("email"))
	s.mu.Lock()
	var items []any
	for _, oid := range s.orgSeq {
		for _, id := range s.orgs[oid].contacts {
			if ct := s.contacts[id]; email == "" || strings.ToLower(ct.email) == email {
				items = append(items, contactViewOf(ct))
			}
		}
	}
	s.mu.Unlock()
	return s.paged(q, items)
}

func (s *Server) getContact(_ context.Context, c *call) (int, any, *httpError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ct, ok := s.contacts[c.r.PathValue("id")]
	if !ok {
		return 0, nil, fail(404, "no contact %s", c.r.PathValue("id"))
	}
	return 200, contactViewOf(ct), nil
}

// --- orders

type newCert struct {
	CommonName    string   `json:"commonName"`
	DNSNames      []string `json:"dnsNames"`
	CSR           string   `json:"csr"`
	DCVMethod     string   `json:"dcvMethod"`
	AlgorithmHash string   `json:"algorithmHash"`
	RootHash      string   `json:"rootHash"`
}

func (s *Server) createOrder(_ context.Context, c *call) (int, any, *httpError) {
	var req struct {
		OrganizationID  string       `json:"organizationId"`
		Contacts        []contactRef `json:"contacts"`
		CertificateType string       `json:"certificateType"`
		Locale          string       `json:"locale"`
		Provider        string       `json:"provider"`
		Cert            *newCert     `json:"cert"`
	}
	if e := readJSON(c.r, &req); e != nil {
		return 0, nil, e
	}
	switch {
	case req.OrganizationID == "":
		return 0, nil, fail(400, "organizationId is required")
	case len(req.Contacts) == 0:
		return 0, nil, fail(400, "contacts is required")
	case req.CertificateType == "":
		return 0, nil, fail(400, "certificateType is required")
	case level(req.CertificateType) == "":
		return 0, nil, fail(400, "certificateType: unknown type %q", req.CertificateType)
	case req.Locale == "":
		return 0, nil, fail(400, "locale is required")
	case req.Provider != s.opts.Provider:
		return 0, nil, fail(400, "provider: unknown provider %q", req.Provider)
	case req.Cert == nil:
		return 0, nil, fail(400, "cert is required")
	}
	nc := req.Cert
	switch {
	case nc.CommonName == "":
		return 0, nil, fail(400, "cert.commonName is required")
	case nc.CSR == "":
		return 0, nil, fail(400, "cert.csr is required")
	case !validMethod(nc.DCVMethod):
		return 0, nil, fail(400, "cert.dcvMethod: %q is not EMAIL, DNS_CNAME_TOKEN, HTTP_TOKEN or DNS_TXT_TOKEN", nc.DCVMethod)
	case nc.AlgorithmHash != "RSA" && nc.AlgorithmHash != "ECC":
		return 0, nil, fail(400, "cert.algorithmHash: %q is not RSA or ECC", nc.AlgorithmHash)
	case nc.RootHash != "" && nc.RootHash != "SHA_1":
		return 0, nil, fail(400, "cert.rootHash: %q is not SHA_1", nc.RootHash)
	}
	csr, e := parseCSR(nc.CSR)
	if e != nil {
		return 0, nil, e
	}
	if alg := algorithmOf(csr.PublicKey); alg != nc.AlgorithmHash {
		return 0, nil, fail(400, "cert.algorithmHash: %s, but the CSR's key is %s", nc.AlgorithmHash, alg)
	}
	names := orderNames(nc.CommonName, nc.DNSNames)
	if e := checkNames(names, nc.DCVMethod); e != nil {
		return 0, nil, e
	}
	v, e := s.commitOrder(c, req.OrganizationID, req.Contacts, req.CertificateType, req.Locale, nc, names, csr)
	if e != nil {
		return 0, nil, e
	}
	if s.opts.OnCreate != nil {
		s.opts.OnCreate(v.ResourceID, slices.Clone(names))
	}
	return 202, v, nil
}

// commitOrder checks the organisation and contacts and records the order
// with its ledger entry.
func (s *Server) commitOrder(c *call, orgID string, refs []contactRef, certType, locale string, nc *newCert, names []string,
	csr *x509.CertificateRequest) (orderView, *httpError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	og, ok := s.orgs[orgID]
	if !ok {
		return orderView{}, fail(400, "organizationId: no organization %s", orgID)
	}
	var types []string
	var ids []string
	for i, ref := range refs {
		ct, ok := s.contacts[ref.ResourceID]
		if !ok || ct.orgID != og.id {
			return orderView{}, fail(400, "contacts[%d]: %q is not a contact of the organization", i, ref.ResourceID)
		}
		types = append(types, ct.types...)
		ids = append(ids, ct.id)
	}
	lvl := level(certType)
	if lvl != "DV" && !slices.Contains(types, "ORGANIZATION_CONTACT") {
		return orderView{}, fail(400, "contacts: an %s order needs an ORGANIZATION_CONTACT", lvl)
	}
	if lvl == "EV" && !slices.Contains(types, "EXTENDED_VALIDATION_APPROVER") {
		return orderView{}, fail(400, "contacts: an EV order needs an EXTENDED_VALIDATION_APPROVER")
	}
	o := &order{id: newUUID(), orgID: og.id, certType: certType, locale: locale, contacts: ids, created: c.now,
		status: StatusCreated, moveAt: c.now.Add(s.opts.StatusDelay), cn: nc.CommonName, names: names, method: nc.DCVMethod,
		alg: nc.AlgorithmHash, rootHash: nc.RootHash, csrPEM: nc.CSR, pub: csr.PublicKey, delay: s.issueDelay}
	for _, n := range names {
		o.dcv = append(o.dcv, &domainDCV{name: n, token: randomHex(16)})
	}
	s.orders[o.id] = o
	s.orderSeq = append(s.orderSeq, o.id)
	s.ledger = append(s.ledger, LedgerEntry{OrderID: o.id, OrganizationID: og.id, CertificateType: o.certType, CommonName: o.cn,
		DNSNames: slices.Clone(names), At: c.now})
	s.step(o, c.now)
	return s.orderView(o), nil
}

func (s *Server) searchOrders(_ context.Context, c *call) (int, any, *httpError) {
	q, e := query(c, "providerId", "organizationId", "certificateTypes", "statuses", "commonNames", "validUntil", "page", "size")
	if e != nil {
		return 0, nil, e
	}
	cns, statuses, types := listParam(q, "commonNames"), listParam(q, "statuses"), listParam(q, "certificateTypes")
	for _, t := range types {
		if level(t) == "" {
			return 0, nil, fail(400, "certificateTypes: unknown type %q", t)
		}
	}
	if v := q.Get("validUntil"); v != "" {
		if _, err := time.Parse(time.RFC3339, v); err != nil {
			if _, err := time.Parse("2006-01-02", v); err != nil {
				return 0, nil, fail(400, "validUntil: %q is not a date", v)
			}
		}
	}
	s.mu.Lock()
	var found []*order
	for _, id := range s.orderSeq {
		o := s.orders[id]
		s.step(o, c.now)
		switch {
		case c.now.Before(o.created.Add(s.opts.SearchLag)):
		case len(cns) > 0 && !slices.Contains(cns, o.cn):
		case len(statuses) > 0 && !slices.Contains(statuses, o.status):
		case len(types) > 0 && !slices.Contains(types, o.certType):
		case q.Get("organizationId") != "" && q.Get("organizationId") != o.orgID:
		default:
			found = append(found, o)
		}
	}
	// Newest first.
	slices.SortStableFunc(found, func(a, b *order) int { return b.created.Compare(a.created) })
	items := make([]any, 0, len(found))
	for _, o := range found {
		items = append(items, s.orderView(o))
	}
	s.mu.Unlock()
	return s.paged(q, items)
}

// target finds the order of the path, with its due checks run.
func (s *Server) target(ctx context.Context, c *call) (*order, *httpError) {
	s.mu.Lock()
	o, ok := s.orders[c.r.PathValue("id")]
	s.mu.Unlock()
	if !ok {
		return nil, fail(404, "no order %s", c.r.PathValue("id"))
	}
	s.advance(ctx, o)
	return o, nil
}

func (s *Server) getOrder(ctx context.Context, c *call) (int, any, *httpError) {
	o, e := s.target(ctx, c)
	if e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return 200, s.orderView(o), nil
}

func (s *Server) download(ctx context.Context, c *call) (int, any, *httpError) {
	q, e := query(c, "format")
	if e != nil {
		return 0, nil, e
	}
	if !strings.Contains(c.r.Header.Get("Accept"), "application/x-pkcs7-certificates") {
		return 0, nil, fail(406, "the Accept header must be application/x-pkcs7-certificates")
	}
	format := q.Get("format")
	if format != "p7b" && format != "pem_all" {
		return 0, nil, fail(400, "format: %q is not p7b or pem_all", format)
	}
	o, e := s.target(ctx, c)
	if e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(o.leaves) == 0 || (o.status != StatusIssued && o.status != StatusReissuePending && o.status != StatusReissueRequestPending &&
		o.status != StatusProcessing) {
		return 0, nil, fail(409, "order %s has no certificate to download (status %s)", o.id, o.status)
	}
	leaf := o.leaves[len(o.leaves)-1]
	if format == "p7b" {
		der, err := p7b(leaf, s.ica.Cert.Raw, s.root.Cert.Raw)
		if err != nil {
			return 0, nil, fail(500, "encoding PKCS #7")
		}
		c.raw, c.contentType = der, "application/x-pkcs7-certificates"
		return 200, nil, nil
	}
	c.raw = []byte(simpki.PEMCert(leaf) + s.ica.PEM + s.root.PEM)
	c.contentType = "application/x-pem-file"
	return 200, nil, nil
}

func (s *Server) validateDomains(ctx context.Context, c *call) (int, any, *httpError) {
	var req struct {
		Domains []string `json:"domains"`
	}
	if e := readJSON(c.r, &req); e != nil {
		return 0, nil, e
	}
	if len(req.Domains) == 0 {
		return 0, nil, fail(400, "domains is required")
	}
	s.mu.Lock()
	o, ok := s.orders[c.r.PathValue("id")]
	if !ok {
		s.mu.Unlock()
		return 0, nil, fail(404, "no order %s", c.r.PathValue("id"))
	}
	s.step(o, c.now)
	if o.status != StatusPending && o.status != StatusReissuePending {
		st := o.status
		s.mu.Unlock()
		return 0, nil, fail(409, "order %s is not awaiting domain validation (status %s)", o.id, st)
	}
	var due []*domainDCV
	for _, n := range req.Domains {
		var d *domainDCV
		for _, x := range o.dcv {
			if x.name == n {
				d = x
				break
			}
		}
		if d == nil {
			s.mu.Unlock()
			return 0, nil, fail(400, "domains: %s is not in order %s", n, o.id)
		}
		due = append(due, d)
	}
	for _, d := range due {
		if !d.ok {
			d.next = c.now // checked now
		}
	}
	s.mu.Unlock()
	s.advance(ctx, o)
	s.mu.Lock()
	defer s.mu.Unlock()
	return 200, s.orderView(o), nil
}

func (s *Server) reissue(_ context.Context, c *call) (int, any, *httpError) {
	var req struct {
		Cert *struct {
			CSR           string   `json:"csr"`
			DNSNames      []string `json:"dnsNames"`
			AlgorithmHash string   `json:"algorithmHash"`
			CommonName    string   `json:"commonName"`
			DCVMethod     string   `json:"dcvMethod"`
		} `json:"cert"`
	}
	if e := readJSON(c.r, &req); e != nil {
		return 0, nil, e
	}
	if req.Cert == nil || req.Cert.CSR == "" {
		return 0, nil, fail(400, "cert.csr is required")
	}
	csr, e := parseCSR(req.Cert.CSR)
	if e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[c.r.PathValue("id")]
	if !ok {
		return 0, nil, fail(404, "no order %s", c.r.PathValue("id"))
	}
	s.step(o, c.now)
	if o.status != StatusIssued {
		return 0, nil, fail(409, "only an issued order (DIGI_ISSUED) can be reissued; order %s is %s", o.id, o.status)
	}
	if cn := req.Cert.CommonName; cn != "" && cn != o.cn {
		return 0, nil, fail(400, "cert.commonName: the common name cannot change in a reissue (%s)", o.cn)
	}
	if cn := strings.ToLower(csr.Subject.CommonName); cn != "" && cn != o.cn {
		return 0, nil, fail(400, "cert.csr: the CSR's common name %s is not the order's, %s (it cannot change in a reissue)", cn, o.cn)
	}
	alg := algorithmOf(csr.PublicKey)
	if req.Cert.AlgorithmHash != "" && req.Cert.AlgorithmHash != alg {
		return 0, nil, fail(400, "cert.algorithmHash: %s, but the CSR's key is %s", req.Cert.AlgorithmHash, alg)
	}
	method := o.method
	if req.Cert.DCVMethod != "" {
		if !validMethod(req.Cert.DCVMethod) {
			return 0, nil, fail(400, "cert.dcvMethod: %q is unknown", req.Cert.DCVMethod)
		}
		method = req.Cert.DCVMethod
	}
	names := o.names
	if len(req.Cert.DNSNames) > 0 {
		names = orderNames(o.cn, req.Cert.DNSNames)
	}
	if e := checkNames(names, method); e != nil {
		return 0, nil, e
	}
	// Names validated in this order stay validated; new ones get tokens.
	var dcvs []*domainDCV
	for _, n := range names {
		var d *domainDCV
		for _, x := range o.dcv {
			if x.name == n && method == o.method {
				d = x
			}
		}
		if d == nil {
			d = &domainDCV{name: n, token: randomHex(16)}
		}
		dcvs = append(dcvs, d)
	}
	o.names, o.dcv, o.method, o.alg, o.csrPEM, o.pub = names, dcvs, method, alg, req.Cert.CSR, csr.PublicKey
	o.status, o.reissue, o.moveAt, o.delay, o.failNext = StatusReissueRequestPending, true, c.now.Add(s.opts.StatusDelay), s.issueDelay, false
	s.ledger = append(s.ledger, LedgerEntry{OrderID: o.id, OrganizationID: o.orgID, CertificateType: o.certType, CommonName: o.cn,
		DNSNames: slices.Clone(names), At: c.now, Reissue: true})
	s.step(o, c.now)
	return 200, s.orderView(o), nil
}

func (s *Server) cancel(_ context.Context, c *call) (int, any, *httpError) {
	if e := emptyBody(c.r); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[c.r.PathValue("id")]
	if !ok {
		return 0, nil, fail(404, "no order %s", c.r.PathValue("id"))
	}
	s.step(o, c.now)
	switch o.status {
	case StatusCreated, StatusPending:
		if o.reissue {
			o.status, o.reissue = StatusIssued, false // the pending reissue is cancelled
		} else {
			o.status = StatusCanceled
		}
	case StatusReissuePending, StatusReissueRequestPending:
		o.status, o.reissue = StatusIssued, false
	default:
		return 0, nil, fail(409, "order %s cannot be cancelled in status %s (an issued certificate is revoked)", o.id, o.status)
	}
	return 200, s.orderView(o), nil
}

func (s *Server) revoke(_ context.Context, c *call) (int, any, *httpError) {
	var req struct {
		Reason string `json:"reason"`
	}
	if c.r.ContentLength != 0 {
		if e := readJSON(c.r, &req); e != nil {
			return 0, nil, e
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[c.r.PathValue("id")]
	if !ok {
		return 0, nil, fail(404, "no order %s", c.r.PathValue("id"))
	}
	s.step(o, c.now)
	if o.status != StatusIssued {
		return 0, nil, fail(409, "only an issued certificate can be revoked; order %s is %s", o.id, o.status)
	}
	o.status = StatusRevoked // the reason is for the CA's records only
	return 200, s.orderView(o), nil
}

// --- the state machine

// pendingStatus is the DigiCert status of an order awaiting validation.
func (o *order) pendingStatus() string {
	if o.reissue {
		return StatusReissuePending
	}
	return StatusPending
}

// step moves o along by time and what is already known (no network);
// s.mu held.
func (s *Server) step(o *order, now time.Time) {
	if (o.status == StatusCreated || o.status == StatusReissueRequestPending) && !now.Before(o.moveAt) {
		o.status = o.pendingStatus()
		for _, d := range o.dcv {
			if !d.ok {
				d.next = now // DigiCert checks at once
			}
		}
	}
	if o.status == StatusPending || o.status == StatusReissuePending {
		for _, d := range o.dcv {
			if !d.ok {
				return
			}
		}
		lvl := level(o.certType)
		if lvl != "DV" && !s.orgValidated(s.orgs[o.orgID], now) {
			return // issuance waits for the organisation's validation
		}
		if lvl == "EV" && !o.approved && !o.reissue {
			o.status = StatusNeedsApproval
			return
		}
		o.status, o.readyAt = StatusProcessing, now.Add(o.delay)
	}
	if o.status == StatusNeedsApproval && o.approved {
		o.status, o.readyAt = StatusProcessing, now.Add(o.delay)
	}
	if o.status == StatusProcessing && !now.Before(o.readyAt) {
		serial, err := simpki.NewSerial()
		var leaf []byte
		if err == nil {
			leaf, err = s.ica.IssueLeaf(serial, o.pub, o.cn, o.names, now.Add(-time.Minute), now.Add(199*24*time.Hour))
		}
		if err != nil {
			o.status = StatusRejected
			if o.reissue {
				o.status = StatusReissueFailed
			}
			return
		}
		o.leaves = append(o.leaves, leaf)
		o.status, o.reissue = StatusIssued, false
	}
}

// advance runs the checks of o that are due (over the network, without
// the lock) and moves it along.
func (s *Server) advance(ctx context.Context, o *order) {
	type job struct {
		d                   *domainDCV
		method, name, token string
	}
	s.mu.Lock()
	now := s.opts.Now()
	s.step(o, now)
	var jobs []job
	if o.status == StatusPending || o.status == StatusReissuePending {
		for _, d := range o.dcv {
			if !d.ok && o.method != "EMAIL" && !d.next.After(now) {
				jobs = append(jobs, job{d, o.method, d.name, d.token})
				d.next = now.Add(s.opts.RecheckEvery) // a check is under way
			}
		}
	}
	s.mu.Unlock()
	if len(jobs) == 0 {
		return
	}
	errs := make([]error, len(jobs))
	for i, j := range jobs {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		errs[i] = s.check(cctx, j.name, j.method, j.token)
		cancel()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now = s.opts.Now()
	o.checks++
	if o.failNext {
		o.failNext = false
		for i := range errs {
			errs[i] = fmt.Errorf("the check failed (injected)")
		}
	}
	for i, j := range jobs {
		if j.method != o.method || j.d.token != j.token {
			continue // changed meanwhile
		}
		if errs[i] == nil {
			j.d.ok, j.d.last = true, ""
		} else {
			j.d.last, j.d.next = errs[i].Error(), now.Add(s.opts.RecheckEvery)
		}
	}
	s.step(o, now)
}

// --- the CA's people

// ValidateOrganization completes DigiCert's validation of an
// organisation, as its staff would after calling its contacts.
func (s *Server) ValidateOrganization(orgID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orgs[orgID]
	if !ok {
		return fmt.Errorf("no organization %s", orgID)
	}
	o.validated = true
	return nil
}

// Organizations returns the resourceIds of the organisations named name
// (every one, when name is empty), oldest first.
func (s *Server) Organizations(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range s.orgSeq {
		if name == "" || s.orgs[id].name == name {
			out = append(out, id)
		}
	}
	return out
}

// OrganizationValidated reports whether DigiCert has validated the
// organisation.
func (s *Server) OrganizationValidated(orgID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orgs[orgID]
	return ok && s.orgValidated(o, s.opts.Now())
}

// Approve approves an EV order, as its EV approver would by the emailed
// link.
func (s *Server) Approve(orderID string) error {
	return s.with(orderID, func(o *order) error {
		o.approved = true
		s.step(o, s.opts.Now())
		return nil
	})
}

// Reject makes DigiCert reject an order (DIGI_REJECTED; a pending reissue
// fails, DIGI_REISSUE_FAILED).
func (s *Server) Reject(orderID string) error {
	return s.with(orderID, func(o *order) error {
		if o.reissue {
			o.status = StatusReissueFailed
		} else {
			o.status = StatusRejected
		}
		return nil
	})
}

// FailNextCheck makes DigiCert's next check of the order's tokens fail,
// whatever is published.
func (s *Server) FailNextCheck(orderID string) error {
	return s.with(orderID, func(o *order) error {
		o.failNext = true
		return nil
	})
}

// ClickEmailLink completes the EMAIL validation of domain in an order, as
// the approver would.
func (s *Server) ClickEmailLink(orderID, domain string) error {
	return s.with(orderID, func(o *order) error {
		if o.method != "EMAIL" {
			return fmt.Errorf("order %s is not validated by email", orderID)
		}
		for _, d := range o.dcv {
			if d.name == domain {
				d.ok = true
				s.step(o, s.opts.Now())
				return nil
			}
		}
		return fmt.Errorf("%s is not in order %s", domain, orderID)
	})
}

// Status is an order's status and per-name DCV state.
type Status struct {
	Status string
	Names  []string
	Method string
	// Validated and LastCheck are per name: passed, and the last
	// failure ("" when none).
	Validated []bool
	LastCheck []string
	// Checks counts the check rounds run.
	Checks int
}

// OrderStatus reports an order as the simulator sees it.
func (s *Server) OrderStatus(orderID string) (Status, error) {
	var st Status
	err := s.with(orderID, func(o *order) error {
		s.step(o, s.opts.Now())
		st = Status{Status: o.status, Names: slices.Clone(o.names), Method: o.method, Checks: o.checks}
		for _, d := range o.dcv {
			st.Validated = append(st.Validated, d.ok)
			st.LastCheck = append(st.LastCheck, d.last)
		}
		return nil
	})
	return st, err
}

func (s *Server) with(orderID string, fn func(o *order) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[orderID]
	if !ok {
		return fmt.Errorf("no order %s", orderID)
	}
	return fn(o)
}
