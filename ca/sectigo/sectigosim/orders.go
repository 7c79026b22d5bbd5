package sectigosim

import (
	"context"
	"crypto"
	"crypto/md5" //nolint:gosec // Sectigo's CSR-hash DCV names artefacts by the CSR's MD5
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certd/certd/internal/simpki"
)

// Certificate states.
const (
	statePending   = "pending"   // awaiting DCV
	stateValidated = "validated" // DCV passed; issued at readyAt
	stateIssued    = "issued"
	stateRejected  = "rejected"
	stateRevoked   = "revoked"
	stateCancelled = "cancelled"
)

type order struct {
	number  string
	product int
	days    int
	certs   []*cert // the order's certificates, the latest (replacement) last
}

func (o *order) latest() *cert { return o.certs[len(o.certs)-1] }

type cert struct {
	id       string
	order    *order
	csrDER   []byte
	md5, sha string // uppercase hex of the CSR's DER
	uv       string
	pub      crypto.PublicKey
	names    []string
	dcv      []*domainDCV
	state    string
	created  time.Time
	delay    time.Duration // IssueDelay when ordered
	readyAt  time.Time
	leafDER  []byte
	failNext bool
	checks   int
}

type domainDCV struct {
	name, method, email string
	ok                  bool
	next                time.Time // next check due (non-email methods)
	last                string    // the last check's failure
	mailed              time.Time
}

// validMethod: one of the API's DCV methods, exactly.
func validMethod(m string) bool {
	switch m {
	case "EMAIL", "HTTP_CSR_HASH", "HTTPS_CSR_HASH", "CNAME_CSR_HASH":
		return true
	}
	return false
}

// validUniqueValue: 1 to 20 alphanumerics.
func validUniqueValue(v string) bool {
	return len(v) >= 1 && len(v) <= 20 && strings.IndexFunc(v, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) < 0
}

// validLabel: a lower-case LDH label.
func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	return strings.IndexFunc(l, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') }) < 0
}

// validName: a lower-case host name with at least two labels, optionally
// a wildcard.
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

func isHTTP(m string) bool { return m == "HTTP_CSR_HASH" || m == "HTTPS_CSR_HASH" }

// parseCSR reads the csr parameter: PEM, or bare Base64 DER.
func parseCSR(v string) (*x509.CertificateRequest, []byte, error) {
	var der []byte
	if b, _ := pem.Decode([]byte(v)); b != nil {
		if b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST" {
			return nil, nil, fmt.Errorf("a PEM %s, not a CERTIFICATE REQUEST", b.Type)
		}
		der = b.Bytes
	} else {
		var err error
		if der, err = base64.StdEncoding.DecodeString(strings.Join(strings.Fields(v), "")); err != nil {
			return nil, nil, fmt.Errorf("neither PEM nor Base64")
		}
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, fmt.Errorf("signature: %v", err)
	}
	return csr, der, nil
}

func hashes(der []byte) (string, string) {
	m := md5.Sum(der) //nolint:gosec // see the import
	s := sha256.Sum256(der)
	return strings.ToUpper(hex.EncodeToString(m[:])), strings.ToUpper(hex.EncodeToString(s[:]))
}

// splitList splits a comma- or whitespace-separated list.
func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
}

// listedNow reports whether address was listed by GetDCVEmailAddressList
// in the last 24 hours; s.mu held.
func (s *Server) listedNow(address string, now time.Time) bool {
	at, ok := s.listed[strings.ToLower(address)]
	return ok && now.Sub(at) < 24*time.Hour
}

// approverFor reports whether address is an approver Sectigo accepts for
// domain.
func approverFor(address, domain string) bool {
	for _, a := range approvers(domain) {
		if strings.EqualFold(a, address) {
			return true
		}
	}
	return false
}

// approvers are admin@, administrator@, hostmaster@, postmaster@ and
// webmaster@ of the domain and each parent with two labels or more.
func approvers(domain string) []string {
	d := strings.TrimPrefix(strings.ToLower(domain), "*.")
	var out []string
	for strings.Count(d, ".") >= 1 {
		for _, local := range []string{"admin", "administrator", "hostmaster", "postmaster", "webmaster"} {
			out = append(out, local+"@"+d)
		}
		_, d, _ = strings.Cut(d, ".")
	}
	return out
}

// orderSpec is what AutoApplySSL and AutoReplaceSSL share, read and
// checked.
type orderSpec struct {
	csr    *x509.CertificateRequest
	der    []byte
	names  []string
	method string
	emails []string // per name, for EMAIL
	uv     string
}

// readSpec reads the CSR, names, DCV method and uniqueValue of an order
// for product p. prev, when set, is the order being replaced (its names
// are the default).
// csrMethodNotHTTP: the order's dcvMethod is not an HTTP CSR hash.
func (sp orderSpec) csrMethodNotHTTP(c *call) bool { return !isHTTP(c.get("dcvMethod")) }

func (s *Server) readSpec(c *call, p Product, prev *cert) (orderSpec, answer, bool) {
	var sp orderSpec
	if !c.has("serverSoftware") {
		return sp, missing("serverSoftware"), false
	}
	if n, err := strconv.Atoi(c.get("serverSoftware")); err != nil || n < -1 {
		return sp, invalid("serverSoftware", "%q is not a server software code", c.get("serverSoftware")), false
	}
	if c.get("csr") == "" {
		return sp, missing("csr"), false
	}
	if len(c.get("csr")) > 32767 {
		return sp, invalid("csr", "longer than 32767 characters"), false
	}
	var err error
	if sp.csr, sp.der, err = parseCSR(c.get("csr")); err != nil {
		return sp, invalid("csr", "%v", err), false
	}
	if p.MultiDomain {
		list := c.get("domainNames")
		if list == "" && prev != nil {
			sp.names = slices.Clone(prev.names)
		} else {
			if list == "" {
				return sp, missing("domainNames"), false
			}
			sp.names = splitList(list)
			if c.get("primaryDomainName") == "" {
				return sp, missing("primaryDomainName"), false
			}
			if !slices.Contains(sp.names, c.get("primaryDomainName")) {
				return sp, invalid("primaryDomainName", "%s is not one of domainNames", c.get("primaryDomainName")), false
			}
		}
		max := p.MaxDomains
		if max == 0 {
			max = 100
		}
		if len(sp.names) == 0 || len(sp.names) > max {
			return sp, invalid("domainNames", "%d names; the product takes 1 to %d", len(sp.names), max), false
		}
	} else {
		if c.has("domainNames") || c.has("primaryDomainName") {
			return sp, invalid("domainNames", "product %s is not a multi-domain product", p.Name), false
		}
		set := map[string]bool{}
		if cn := sp.csr.Subject.CommonName; cn != "" {
			set[strings.ToLower(cn)] = true
			sp.names = append(sp.names, strings.ToLower(cn))
		}
		names := slices.Clone(sp.csr.DNSNames)
		for _, ip := range sp.csr.IPAddresses {
			names = append(names, ip.String()) // IP SANs: HTTP(S)_CSR_HASH only
		}
		for _, n := range names {
			if !set[strings.ToLower(n)] {
				set[strings.ToLower(n)] = true
				sp.names = append(sp.names, strings.ToLower(n))
			}
		}
		if len(sp.names) != 1 {
			return sp, invalid("csr", "a single-domain product needs exactly one name in the CSR, found %d", len(sp.names)), false
		}
	}
	seen := map[string]bool{}
	for _, n := range sp.names {
		switch {
		case seen[n]:
			return sp, invalid("domainNames", "%s is named twice", n), false
		case net.ParseIP(n) != nil && sp.csrMethodNotHTTP(c):
			return sp, invalid("dcvMethod", "%s is an IP address: only HTTP_CSR_HASH or HTTPS_CSR_HASH can validate it", n), false
		case net.ParseIP(n) == nil && !validName(n):
			return sp, invalid("domainNames", "%q is not a lower-case FQDN", n), false
		case strings.HasPrefix(n, "*.") && !p.Wildcard:
			return sp, invalid("csr", "product %s does not cover the wildcard %s", p.Name, n), false
		}
		seen[n] = true
	}
	sp.method = c.get("dcvMethod")
	if sp.method == "" {
		sp.method = "EMAIL" // the documented default is truncated in the reference; EMAIL is inferred
	}
	if !validMethod(sp.method) {
		return sp, invalid("dcvMethod", "%q is not EMAIL, HTTP_CSR_HASH, HTTPS_CSR_HASH or CNAME_CSR_HASH", sp.method), false
	}
	if isHTTP(sp.method) {
		for _, n := range sp.names {
			if strings.HasPrefix(n, "*.") {
				return sp, invalid("dcvMethod", "%s cannot validate the wildcard %s", sp.method, n), false
			}
		}
	}
	if sp.method == "EMAIL" {
		if p.MultiDomain {
			if c.get("dcvEmailAddresses") == "" {
				return sp, missing("dcvEmailAddresses"), false
			}
			sp.emails = splitList(c.get("dcvEmailAddresses"))
			if len(sp.emails) != len(sp.names) {
				return sp, invalid("dcvEmailAddresses", "%d addresses for %d domainNames", len(sp.emails), len(sp.names)), false
			}
		} else {
			if c.get("dcvEmailAddress") == "" {
				return sp, missing("dcvEmailAddress"), false
			}
			sp.emails = []string{c.get("dcvEmailAddress")}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, e := range sp.emails {
			param := "dcvEmailAddress"
			if p.MultiDomain {
				param = "dcvEmailAddresses"
			}
			if !approverFor(e, sp.names[i]) || !s.listedNow(e, c.now) {
				return sp, invalid(param, "%s was not returned by GetDCVEmailAddressList for %s in the last 24 hours", e, sp.names[i]), false
			}
		}
	}
	sp.uv = c.get("uniqueValue")
	if c.has("uniqueValue") && !validUniqueValue(sp.uv) {
		return sp, invalid("uniqueValue", "at most 20 alphanumeric characters"), false
	}
	if sp.uv == "" {
		sp.uv = strings.ToUpper(randomHex(5)) // the CA generates one
	}
	return sp, answer{}, true
}

// newCert records a certificate for an order being placed or replaced;
// s.mu held.
func (s *Server) newCert(o *order, sp orderSpec, now time.Time) *cert {
	md, sh := hashes(sp.der)
	c := &cert{id: strconv.Itoa(s.nextCert), order: o, csrDER: sp.der, md5: md, sha: sh, uv: sp.uv, pub: sp.csr.PublicKey,
		names: sp.names, state: statePending, created: now, delay: s.issueDelay}
	s.nextCert++
	for i, n := range sp.names {
		d := &domainDCV{name: n, method: sp.method, next: now}
		if sp.method == "EMAIL" {
			d.email = sp.emails[i]
			s.mail(o, d, now)
		}
		c.dcv = append(c.dcv, d)
	}
	// The same CSR with the same token: the original order fails.
	for _, other := range s.certs {
		if other.sha == c.sha && other.uv == c.uv && (other.state == statePending || other.state == stateValidated) {
			other.state = stateRejected
		}
	}
	s.certs[c.id] = c
	o.certs = append(o.certs, c)
	return c
}

// mail "sends" the DCV email of d; s.mu held.
func (s *Server) mail(o *order, d *domainDCV, now time.Time) {
	d.mailed = now
	s.emails = append(s.emails, Email{OrderNumber: o.number, Domain: d.name, Address: d.email, At: now})
}

func yn(c *call, k string) (bool, answer, bool) {
	switch c.get(k) {
	case "Y":
		return true, answer{}, true
	case "", "N":
		return false, answer{}, true
	}
	return false, invalid(k, "must be Y or N"), false
}

// productDays reads product and days (or the deprecated years).
func (s *Server) productDays(c *call) (int, Product, int, string, answer, bool) {
	if c.get("product") == "" {
		return 0, Product{}, 0, "", missing("product"), false
	}
	code, err := strconv.Atoi(c.get("product"))
	if err != nil {
		return 0, Product{}, 0, "", invalid("product", "%q is not a product code", c.get("product")), false
	}
	p, ok := s.opts.Products[code]
	if !ok {
		return 0, Product{}, 0, "", fail(-115, "No price found for product %d", code), false
	}
	var days int
	switch {
	case c.has("days") && c.has("years"):
		return 0, Product{}, 0, "", invalid("years", "give days or years, not both"), false
	case c.has("days"):
		if days, err = strconv.Atoi(c.get("days")); err != nil || days <= 0 {
			return 0, Product{}, 0, "", invalid("days", "%q is not a number of days", c.get("days")), false
		}
	case c.has("years"):
		y, err := strconv.Atoi(c.get("years"))
		if err != nil || y <= 0 {
			return 0, Product{}, 0, "", invalid("years", "%q is not a number of years", c.get("years")), false
		}
		days = 365 * y
	default:
		return 0, Product{}, 0, "", missing("days"), false
	}
	price, ok := p.Prices[days]
	if !ok {
		return 0, Product{}, 0, "", fail(-115, "No price found for product %d for %d days", code, days), false
	}
	return code, p, days, price, answer{}, true
}

func (s *Server) apply(_ context.Context, c *call) answer {
	code, p, days, price, a, ok := s.productDays(c)
	if !ok {
		return a
	}
	if c.get("isCustomerValidated") == "" {
		return missing("isCustomerValidated")
	}
	if v := c.get("isCustomerValidated"); v != "N" && v != "Y" {
		return invalid("isCustomerValidated", "must be Y or N")
	}
	showID, a, ok := yn(c, "showCertificateID")
	if !ok {
		return a
	}
	if _, a, ok := yn(c, "test"); !ok {
		return a
	}
	sp, a, ok := s.readSpec(c, p, nil)
	if !ok {
		return a
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := &order{number: strconv.Itoa(s.nextOrder), product: code, days: days}
	s.nextOrder++
	s.orders[o.number] = o
	s.orderSeq = append(s.orderSeq, o.number)
	ce := s.newCert(o, sp, c.now)
	s.ledger = append(s.ledger, LedgerEntry{OrderNumber: o.number, CertificateID: ce.id, Product: code, Days: days, DNSNames: slices.Clone(sp.names),
		CSRMD5: ce.md5, UniqueValue: ce.uv, Cost: price, At: c.now})
	out := answer{params: [][2]string{{"orderNumber", o.number}}, lines: []string{o.number, price, "1"}}
	if showID {
		out.params = append(out.params, [2]string{"certificateID", ce.id})
		out.lines = append(out.lines, ce.id)
	}
	out.params = append(out.params, [2]string{"totalCost", price}, [2]string{"expectedDeliveryTime", "1"}, [2]string{"uniqueValue", ce.uv})
	out.lines = append(out.lines, ce.uv)
	return out
}

// target finds the certificate a call names (orderNumber, certificateID
// or baseOrderNumber), answering for itself when there is none.
func (s *Server) target(c *call, keys ...string) (*cert, answer, bool) {
	for _, k := range keys {
		v := c.get(k)
		if v == "" {
			continue
		}
		s.mu.Lock()
		var ce *cert
		switch k {
		case "certificateID":
			ce = s.certs[v]
		default:
			if o, ok := s.orders[v]; ok {
				ce = o.latest()
			}
		}
		s.mu.Unlock()
		if ce == nil {
			return nil, invalid(k, "no such order or certificate %s", v), false
		}
		return ce, answer{}, true
	}
	return nil, missing(keys[0]), false
}

func (s *Server) collect(ctx context.Context, c *call) answer {
	ce, a, ok := s.target(c, "orderNumber", "certificateID", "baseOrderNumber")
	if !ok {
		return a
	}
	if c.get("queryType") == "" {
		return missing("queryType")
	}
	qt, err := strconv.Atoi(c.get("queryType"))
	if err != nil || qt < 0 || qt > 3 {
		return invalid("queryType", "must be 0, 1, 2 or 3")
	}
	rt := -1
	if c.has("responseType") {
		if rt, err = strconv.Atoi(c.get("responseType")); err != nil || rt < 0 || rt > 3 {
			return invalid("responseType", "must be 0, 1, 2 or 3")
		}
	}
	enc := 0
	if c.has("responseEncoding") {
		if enc, err = strconv.Atoi(c.get("responseEncoding")); err != nil || enc < 0 || enc > 1 {
			return invalid("responseEncoding", "must be 0 or 1")
		}
	}
	switch {
	case rt >= 0 && rt <= 2 && qt != 1:
		return invalid("responseType", "%d needs queryType 1", rt)
	case enc == 1 && (qt != 1 || (rt != 0 && rt != 2)):
		return invalid("responseEncoding", "binary needs queryType 1 and responseType 0 or 2")
	case qt != 0 && rt != 3:
		return invalid("responseType", "only 3 (individually encoded) is simulated")
	}
	if _, a, ok := yn(c, "showValidityPeriod"); !ok {
		return a
	}
	ext, a, ok := yn(c, "showExtStatus")
	if !ok {
		return a
	}
	if qt != 0 && c.get("responseFormat") != "1" {
		return invalid("responseFormat", "certificates are simulated in responseFormat 1 only")
	}
	s.advance(ctx, ce)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ce.state == stateCancelled {
		return fail(-20, "The order has already been cancelled")
	}
	issued := ce.state == stateIssued || ce.state == stateRevoked
	status := 0
	if issued {
		status = 1
		if qt != 0 {
			status = 2
		}
	}
	out := answer{code: status}
	if ext {
		cs := map[string]string{statePending: "Pending", stateValidated: "Pending", stateIssued: "Issued", stateRejected: "Rejected", stateRevoked: "Revoked"}[ce.state]
		vs := "Awaiting Validation"
		if ce.state != statePending && ce.state != stateRejected {
			vs = "Validated"
		}
		out.params = append(out.params, [2]string{"certificateStatus", cs}, [2]string{"validationStatus", vs})
		out.lines = append(out.lines, cs, vs)
	}
	if issued && (qt == 1 || qt == 2) {
		out.params = append(out.params, [2]string{"certificate", base64.StdEncoding.EncodeToString(ce.leafDER)})
	}
	if issued && (qt == 1 || qt == 3) {
		out.params = append(out.params, [2]string{"caCertificate", base64.StdEncoding.EncodeToString(s.ica.Cert.Raw)},
			[2]string{"caCertificate", base64.StdEncoding.EncodeToString(s.root.Cert.Raw)})
	}
	return out
}

// advance runs the checks that are due and moves the certificate on, as
// Sectigo does in the background.
func (s *Server) advance(ctx context.Context, ce *cert) {
	type job struct {
		d                    *domainDCV
		method, md5, sha, uv string
	}
	s.mu.Lock()
	var jobs []job
	if ce.state == statePending {
		now := s.opts.Now()
		for _, d := range ce.dcv {
			if !d.ok && d.method != "EMAIL" && !d.next.After(now) {
				jobs = append(jobs, job{d, d.method, ce.md5, ce.sha, ce.uv})
			}
		}
	}
	s.mu.Unlock()
	errs := make([]error, len(jobs))
	for i, j := range jobs {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		errs[i] = s.check(cctx, j.d.name, j.method, j.md5, j.sha, j.uv)
		cancel()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	if len(jobs) > 0 {
		ce.checks++
		if ce.failNext {
			ce.failNext = false
			for i := range errs {
				errs[i] = fmt.Errorf("the check failed (injected)")
			}
		}
		for i, j := range jobs {
			if s.failFor[j.d.name] > 0 {
				s.failFor[j.d.name]--
				errs[i] = fmt.Errorf("%s: the artefact was not found (injected)", j.d.name)
			}
		}
	}
	for i, j := range jobs {
		if j.d.method != j.method || ce.state != statePending {
			continue // changed meanwhile
		}
		if errs[i] == nil {
			j.d.ok, j.d.last = true, ""
		} else {
			j.d.last, j.d.next = errs[i].Error(), now.Add(s.opts.RecheckEvery)
		}
	}
	s.promote(ce)
}

// promote moves a certificate whose domains all passed to validated, and
// a validated one whose delay passed to issued; s.mu held.
func (s *Server) promote(ce *cert) {
	now := s.opts.Now()
	if ce.state == statePending {
		for _, d := range ce.dcv {
			if !d.ok {
				return
			}
		}
		ce.state, ce.readyAt = stateValidated, now.Add(ce.delay)
		serial, err := simpki.NewSerial()
		if err == nil {
			ce.leafDER, err = s.ica.IssueLeaf(serial, ce.pub, ce.names[0], ce.names, now.Add(-time.Minute), now.Add(time.Duration(ce.order.days)*24*time.Hour))
		}
		if err != nil {
			ce.state, ce.leafDER = stateRejected, nil
			return
		}
	}
	if ce.state == stateValidated && !now.Before(ce.readyAt) {
		ce.state = stateIssued
	}
}

func (s *Server) updateDCV(_ context.Context, c *call) answer {
	ce, a, ok := s.target(c, "orderNumber", "baseOrderNumber")
	if !ok {
		return a
	}
	if c.has("dcvTemplateID") {
		if _, err := strconv.Atoi(c.get("dcvTemplateID")); err != nil {
			return invalid("dcvTemplateID", "not a number")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ce.state != statePending {
		return invalid("orderNumber", "order %s is not awaiting domain control validation", ce.order.number)
	}
	type change struct {
		d             *domainDCV
		method, email string
	}
	var changes []change
	find := func(name string) *domainDCV {
		for _, d := range ce.dcv {
			if d.name == name {
				return d
			}
		}
		return nil
	}
	multi := s.opts.Products[ce.order.product].MultiDomain
	if c.has("domainNames") {
		if !multi {
			return invalid("domainNames", "order %s is not a multi-domain order", ce.order.number)
		}
		if strings.Contains(c.get("domainNames"), ",") {
			return invalid("domainNames", "domainNames are space-separated")
		}
		names := strings.Fields(c.get("domainNames"))
		if c.get("newMethods") == "" {
			return missing("newMethods")
		}
		if strings.ContainsAny(strings.TrimSpace(c.get("newMethods")), " \t") {
			return invalid("newMethods", "newMethods are comma-separated")
		}
		methods := strings.Split(c.get("newMethods"), ",")
		if len(methods) != len(names) {
			return invalid("newMethods", "%d methods for %d domainNames", len(methods), len(names))
		}
		var emails []string
		if c.has("newDCVEmailAddresses") {
			if strings.Contains(c.get("newDCVEmailAddresses"), ",") {
				return invalid("newDCVEmailAddresses", "newDCVEmailAddresses are space-separated")
			}
			emails = strings.Fields(c.get("newDCVEmailAddresses"))
			if len(emails) != len(names) {
				return invalid("newDCVEmailAddresses", "%d addresses for %d domainNames", len(emails), len(names))
			}
		}
		for i, n := range names {
			ch := change{d: find(n), method: methods[i]}
			if ch.d == nil {
				return invalid("domainNames", "%s is not in order %s", n, ce.order.number)
			}
			if ch.method == "EMAIL" {
				if emails == nil {
					return missing("newDCVEmailAddresses")
				}
				ch.email = emails[i]
			}
			changes = append(changes, ch)
		}
	} else {
		if c.get("newMethod") == "" {
			return missing("newMethod")
		}
		ch := change{method: c.get("newMethod"), email: c.get("newDCVEmailAddress")}
		switch n := c.get("domainName"); {
		case n != "":
			if ch.d = find(n); ch.d == nil {
				return invalid("domainName", "%s is not in order %s", n, ce.order.number)
			}
		case multi:
			return missing("domainName")
		default:
			ch.d = ce.dcv[0]
		}
		if ch.method == "EMAIL" && ch.email == "" {
			return missing("newDCVEmailAddress")
		}
		changes = append(changes, ch)
	}
	for _, ch := range changes {
		param := "newMethod"
		if c.has("newMethods") {
			param = "newMethods"
		}
		if !validMethod(ch.method) {
			return invalid(param, "%q is not EMAIL, HTTP_CSR_HASH, HTTPS_CSR_HASH or CNAME_CSR_HASH", ch.method)
		}
		if isHTTP(ch.method) && strings.HasPrefix(ch.d.name, "*.") {
			return invalid(param, "%s cannot validate the wildcard %s", ch.method, ch.d.name)
		}
		if ch.method == "EMAIL" && (!approverFor(ch.email, ch.d.name) || !s.listedNow(ch.email, c.now)) {
			return invalid("newDCVEmailAddress", "%s was not returned by GetDCVEmailAddressList for %s in the last 24 hours", ch.email, ch.d.name)
		}
	}
	for _, ch := range changes {
		if ch.d.method != ch.method || ch.d.email != ch.email {
			ch.d.ok = false
		}
		ch.d.method, ch.d.email, ch.d.next = ch.method, ch.email, c.now
		if ch.method == "EMAIL" && !ch.d.ok {
			s.mail(ce.order, ch.d, c.now)
		}
	}
	return answer{}
}

func (s *Server) resend(_ context.Context, c *call) answer {
	ce, a, ok := s.target(c, "orderNumber", "baseOrderNumber")
	if !ok {
		return a
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ce.state != statePending {
		return invalid("orderNumber", "order %s is not awaiting domain control validation", ce.order.number)
	}
	addr := c.get("dcvEmailAddress")
	for _, d := range ce.dcv {
		if d.ok {
			continue
		}
		if d.method != "EMAIL" {
			d.next = c.now // resets the re-check schedule
			continue
		}
		if addr != "" {
			if !approverFor(addr, d.name) || !s.listedNow(addr, c.now) {
				return invalid("dcvEmailAddress", "%s was not returned by GetDCVEmailAddressList for %s in the last 24 hours", addr, d.name)
			}
			d.email = addr
		}
		s.mail(ce.order, d, c.now)
	}
	return answer{}
}

func (s *Server) replace(_ context.Context, c *call) answer {
	prev, a, ok := s.target(c, "orderNumber")
	if !ok {
		return a
	}
	if _, a, ok := yn(c, "exactOrder"); !ok {
		return a
	}
	s.mu.Lock()
	p := s.opts.Products[prev.order.product]
	state := prev.state
	s.mu.Unlock()
	if state != stateIssued {
		return invalid("orderNumber", "order %s has no issued certificate to replace", prev.order.number)
	}
	sp, a, ok := s.readSpec(c, p, prev)
	if !ok {
		return a
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ce := s.newCert(prev.order, sp, c.now)
	s.ledger = append(s.ledger, LedgerEntry{OrderNumber: prev.order.number, CertificateID: ce.id, Product: prev.order.product, Days: prev.order.days,
		DNSNames: slices.Clone(sp.names), CSRMD5: ce.md5, UniqueValue: ce.uv, Cost: "0.00", At: c.now, Replace: true})
	return answer{params: [][2]string{{"orderNumber", prev.order.number}, {"certificateID", ce.id}, {"uniqueValue", ce.uv}},
		lines: []string{prev.order.number, "0.00", "1", ce.id, ce.uv}}
}

func (s *Server) revoke(_ context.Context, c *call) answer {
	var ce *cert
	if v := c.get("serialNumber"); v != "" {
		if len(v) > 34 {
			return invalid("serialNumber", "longer than 34 characters")
		}
		want, ok := new(big.Int).SetString(v, 16)
		if !ok {
			return invalid("serialNumber", "not hex")
		}
		s.mu.Lock()
		for _, x := range s.certs {
			if len(x.leafDER) > 0 {
				if leaf, err := x509.ParseCertificate(x.leafDER); err == nil && leaf.SerialNumber.Cmp(want) == 0 {
					ce = x
				}
			}
		}
		s.mu.Unlock()
		if ce == nil {
			return invalid("serialNumber", "no certificate with serial %s", v)
		}
	} else {
		var a answer
		var ok bool
		if ce, a, ok = s.target(c, "certificateID", "orderNumber"); !ok {
			return a
		}
	}
	if c.get("revocationReason") == "" {
		return missing("revocationReason")
	}
	if len(c.get("revocationReason")) > 1024 {
		return invalid("revocationReason", "longer than 1024 characters")
	}
	if c.has("codeReason") {
		switch c.get("codeReason") {
		case "0", "1", "3", "4", "5":
		default:
			return invalid("codeReason", "must be 0, 1, 3, 4 or 5")
		}
	}
	test, a, ok := yn(c, "test")
	if !ok {
		return a
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ce.state {
	case stateRevoked, stateRejected:
		return invalid("orderNumber", "certificate %s is already revoked or rejected", ce.id)
	case stateCancelled:
		return fail(-20, "The order has already been cancelled")
	}
	if test {
		return answer{}
	}
	if ce.state == stateIssued {
		ce.state = stateRevoked
	} else {
		ce.state = stateRejected // not issued yet: the order is rejected
	}
	return answer{}
}

func (s *Server) emailList(_ context.Context, c *call) answer {
	d := c.get("domainName")
	if d == "" {
		return missing("domainName")
	}
	if !validName(d) {
		return invalid("domainName", "%q is not a lower-case FQDN", d)
	}
	if f := c.get("responseFormat"); f != "" && f != "1" {
		return invalid("responseFormat", "only 1 (text) is simulated")
	}
	list := approvers(d)
	s.mu.Lock()
	for _, a := range list {
		s.listed[a] = c.now
	}
	s.mu.Unlock()
	return answer{lines: list}
}
