// Package sectigosim is a strict simulator of Sectigo's reseller Auto* API
// (AutoApplySSL, CollectSSL, AutoUpdateDCV, ResendDCVEmail,
// AutoReplaceSSL, AutoRevokeSSL, GetDCVEmailAddressList) for tests and
// certd's demo. It rejects what the real API would: GET (-17), plain HTTP
// (-1), unknown or misspelt parameter names (they are case-sensitive,
// -2), missing (-3) or invalid (-4) values, wrong credentials (-16), the
// call limit (-42), product and days without a price (-115). It checks
// the CSR-hash DCV artefacts for real, byte for byte: the CNAME over DNS
// (Options.DNSServer, walking up from the name as Sectigo's ADN search
// does) and the file over HTTP or HTTPS (Options.HTTPAddr, HTTPSAddr),
// with the domain as Host and no redirect followed; HTTP DCV of a
// wildcard is refused. Certificates are real X.509 chains from a test
// root, for the CSR's key and the order's names.
//
// Where the reference certd follows is silent, the simulator speaks a
// dialect of its own, which the client in ca/sectigo reads:
//   - CollectSSL with responseFormat=1 answers URL-encoded parameters:
//     errorCode (the status: 0 processing, 1 available, 2 attached),
//     certificateStatus ("Pending", "Issued", "Rejected", "Revoked") and
//     validationStatus ("Awaiting Validation", "Validated") with
//     showExtStatus=Y, certificate (the leaf, Base64 DER) and one
//     caCertificate per chain certificate (issuer first, root last) with
//     responseType=3 and responseEncoding=0. Other response types are not
//     simulated (-4).
//   - A cancelled order answers CollectSSL with -20.
//   - GetDCVEmailAddressList answers text: the status line, then one
//     address per line.
//   - DCV is checked when an order is looked at (any call naming it), not
//     in the background: at once after the order, then every
//     RecheckEvery after a failed check, and at once again after
//     AutoUpdateDCV or ResendDCVEmail. Once every domain passed, the
//     certificate is issued IssueDelay later.
//   - Resubmitting a CSR with the uniqueValue of an earlier order fails
//     the earlier order, as the reference says Sectigo does.
package sectigosim

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/certd/certd/internal/simfault"
	"github.com/certd/certd/internal/simpki"
)

// Options configure the simulator. The zero value of each field has a
// sensible default.
type Options struct {
	// LoginName and LoginPassword are the account's credentials
	// (case-sensitive).
	LoginName, LoginPassword string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// CallLimit is how many calls the account may make per minute; beyond
	// it every call answers -42. Zero: no limit.
	CallLimit int
	// Latency is added to every answer (real time).
	Latency time.Duration
	// IssueDelay is how long after its DCV passed an order is issued.
	IssueDelay time.Duration
	// RecheckEvery is how long after a failed check Sectigo checks again
	// by itself (default 1 minute).
	RecheckEvery time.Duration
	// DNSServer is the host:port CNAME_CSR_HASH is checked against.
	DNSServer string
	// HTTPAddr and HTTPSAddr, when set, are where every HTTP_CSR_HASH
	// (plain HTTP) and HTTPS_CSR_HASH (TLS, any certificate) fetch is
	// sent, with the domain as Host; otherwise the domain's port 80 or
	// 443.
	HTTPAddr, HTTPSAddr string
	// Products is the price list (default DefaultProducts).
	Products map[int]Product
	// FirstOrderNumber numbers the orders (default 3040824).
	FirstOrderNumber int
}

// Product is one product code of the price list.
type Product struct {
	Name string
	// MultiDomain products take domainNames and primaryDomainName.
	MultiDomain bool
	// MaxDomains bounds domainNames (default 100).
	MaxDomains int
	// Wildcard: names may be wildcards.
	Wildcard bool
	// Prices by days ("9.00"); days without a price answer -115.
	Prices map[int]string
}

// DefaultProducts are 488 SectigoSSL DV, 489 SectigoSSL Wildcard DV, 492
// SectigoSSL UCC DV (multi-domain) and 287 PositiveSSL DV, each priced
// for 90, 180, 365 and 395 days.
func DefaultProducts() map[int]Product {
	prices := func(base float64) map[int]string {
		return map[int]string{90: fmt.Sprintf("%.2f", base/3), 180: fmt.Sprintf("%.2f", base/2), 365: fmt.Sprintf("%.2f", base), 395: fmt.Sprintf("%.2f", base)}
	}
	return map[int]Product{
		488: {Name: "SectigoSSL DV", Prices: prices(9)},
		489: {Name: "SectigoSSL Wildcard DV", Wildcard: true, Prices: prices(60)},
		492: {Name: "SectigoSSL UCC DV", MultiDomain: true, Wildcard: true, MaxDomains: 100, Prices: prices(30)},
		287: {Name: "PositiveSSL DV", Prices: prices(7)},
	}
}

// Fault is an injected failure for the next call to one API (by name:
// "AutoApplySSL", "CollectSSL", ...). Faults queue: several for one API
// are used in order.
type Fault struct {
	// Status answers with this HTTP status (500, 503, ...) and no API
	// answer, without doing the call.
	Status int
	// RetryAfter, with Status (429 or 503), is sent as Retry-After (whole
	// seconds), as the HTTP layer in front of the API does.
	RetryAfter time.Duration
	// CallLimit answers -42 without doing the call.
	CallLimit bool
	// Code, when negative, answers that errorCode with Message.
	Code    int
	Message string
	// Delay is waited (real time) before anything else.
	Delay time.Duration
	// DropAfterCommit does the call, commits its effect, then closes the
	// connection without answering.
	DropAfterCommit bool
	// Hang does the request, commits its effect, then holds the
	// connection without answering until the client gives up: the CA
	// accepted it and never answered (Delay, by contrast, waits before
	// doing anything).
	Hang bool
	// Truncate does the request, commits its effect, then sends the
	// answer's status and headers with only half its body (Content-Length
	// names all of it) and drops the connection: a 2xx cut mid-JSON.
	Truncate bool
	// HTML answers with an HTML error page, with Status (200 when Status
	// is 0), as a load balancer or proxy in front of the API would,
	// without doing the request.
	HTML bool
}

// LedgerEntry is one order (or replacement) the simulator committed: what
// the real CA would bill.
type LedgerEntry struct {
	OrderNumber   string    `json:"order_number"`
	CertificateID string    `json:"certificate_id"`
	Product       int       `json:"product"`
	Days          int       `json:"days"`
	DNSNames      []string  `json:"dns_names"`
	CSRMD5        string    `json:"csr_md5"`
	UniqueValue   string    `json:"unique_value"`
	Cost          string    `json:"cost"`
	At            time.Time `json:"at"`
	// Replace: an AutoReplaceSSL of OrderNumber, not a new purchase.
	Replace bool `json:"replace,omitempty"`
}

// Email is a DCV email the simulator "sent".
type Email struct {
	OrderNumber, Domain, Address string
	At                           time.Time
}

// caOrg is the Organization of the simulator's CA certificates.
const caOrg = "certd Sectigo simulator"

// Server is a strict Sectigo reseller API simulator.
type Server struct {
	opts Options

	root, ica, apiCA *simpki.Authority
	serverTLS        tls.Certificate

	mu         sync.Mutex
	orders     map[string]*order // by order number
	certs      map[string]*cert  // by certificate ID
	orderSeq   []string          // order numbers in creation order
	nextOrder  int
	nextCert   int
	ledger     []LedgerEntry
	faults     map[string][]Fault
	calls      []time.Time // accepted calls, for the call limit
	requests   map[string]int
	listed     map[string]time.Time // approver address -> when it was listed
	emails     []Email
	issueDelay time.Duration
	failFor    map[string]int // domain -> checks still to fail, whatever is published
}

// New creates a simulator with a fresh test PKI.
func New(opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	now := s.opts.Now()
	if s.root, s.ica, s.apiCA, err = simpki.NewCAs(caOrg, "certd Sectigo Simulator", " R46", "DV CA", now); err != nil {
		return nil, err
	}
	if err := s.newServerCert(); err != nil {
		return nil, err
	}
	return s, nil
}

func newServer(opts Options) (*Server, error) {
	if opts.LoginName == "" || opts.LoginPassword == "" {
		return nil, errors.New("sectigosim: LoginName and LoginPassword are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RecheckEvery <= 0 {
		opts.RecheckEvery = time.Minute
	}
	if opts.Products == nil {
		opts.Products = DefaultProducts()
	}
	if opts.FirstOrderNumber <= 0 {
		opts.FirstOrderNumber = 3040824
	}
	return &Server{opts: opts, orders: map[string]*order{}, certs: map[string]*cert{}, nextOrder: opts.FirstOrderNumber, nextCert: 1,
		faults: map[string][]Fault{}, requests: map[string]int{}, listed: map[string]time.Time{}, issueDelay: opts.IssueDelay}, nil
}

func (s *Server) newServerCert() error {
	var err error
	s.serverTLS, err = s.apiCA.ServerTLS(s.opts.Now())
	return err
}

// RootPEM is the root every issued certificate chains to.
func (s *Server) RootPEM() []byte { return []byte(s.root.PEM) }

// APICAPEM is the CA of the API's own TLS certificate, for the client's
// trust store.
func (s *Server) APICAPEM() []byte { return []byte(s.apiCA.PEM) }

// TLSConfig is the server side of the API's TLS.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{s.serverTLS}, MinVersion: tls.VersionTLS12}
}

// Serve serves the API over TLS on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return simpki.ServeTLS(ctx, ln, s.Handler(), s.TLSConfig())
}

// SetIssueDelay sets IssueDelay for orders placed from now on.
func (s *Server) SetIssueDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issueDelay = d
}

// InjectFault makes the next call to api fail as f says.
func (s *Server) InjectFault(api string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[api] = append(s.faults[api], f)
}

// Ledger returns the committed orders and replacements.
func (s *Server) Ledger() []LedgerEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]LedgerEntry, len(s.ledger))
	for i, e := range s.ledger {
		e.DNSNames = slices.Clone(e.DNSNames)
		out[i] = e
	}
	return out
}

// OrdersFor counts the committed new orders (replacements excluded) whose
// names are exactly the set names: how many times a client bought a
// certificate for it.
func (s *Server) OrdersFor(names []string) int {
	want := nameSet(names)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.ledger {
		if !e.Replace && slices.Equal(nameSet(e.DNSNames), want) {
			n++
		}
	}
	return n
}

func nameSet(names []string) []string {
	set := slices.Clone(names)
	slices.Sort(set)
	return slices.Compact(set)
}

// Requests returns how many calls api has received.
func (s *Server) Requests(api string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[api]
}

// Emails returns the DCV emails sent.
func (s *Server) Emails() []Email {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.emails)
}

// OrderStatus is an order's latest certificate as the simulator sees it.
type OrderStatus struct {
	CertificateID string
	// State is pending, validated (waiting for IssueDelay), issued,
	// rejected, revoked or cancelled.
	State string
	// Methods and Validated are per domain, in the order's order.
	Domains   []string
	Methods   []string
	Validated []bool
	// LastCheck is the last check's error per domain ("" when it passed
	// or none ran).
	LastCheck []string
	// Checks counts the checks run.
	Checks int
}

// Status reports an order's latest certificate (or the certificate with
// that ID).
func (s *Server) Status(orderOrCertID string) (OrderStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.lookup(orderOrCertID)
	if c == nil {
		return OrderStatus{}, fmt.Errorf("no order or certificate %s", orderOrCertID)
	}
	st := OrderStatus{CertificateID: c.id, State: c.state, Checks: c.checks}
	for _, d := range c.dcv {
		st.Domains = append(st.Domains, d.name)
		st.Methods = append(st.Methods, d.method)
		st.Validated = append(st.Validated, d.ok)
		st.LastCheck = append(st.LastCheck, d.last)
	}
	return st, nil
}

// lookup finds a certificate by ID, or an order's latest; s.mu held.
func (s *Server) lookup(id string) *cert {
	if c, ok := s.certs[id]; ok {
		return c
	}
	if o, ok := s.orders[id]; ok {
		return o.latest()
	}
	return nil
}

// Reject makes an order's latest certificate rejected, as Sectigo's
// validation staff would.
func (s *Server) Reject(orderOrCertID string) error {
	return s.setState(orderOrCertID, stateRejected)
}

// Cancel cancels an order (refunded): CollectSSL answers -20 from now on.
func (s *Server) Cancel(orderOrCertID string) error {
	return s.setState(orderOrCertID, stateCancelled)
}

func (s *Server) setState(id, state string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.lookup(id)
	if c == nil {
		return fmt.Errorf("no order or certificate %s", id)
	}
	c.state = state
	return nil
}

// FailNextCheck makes the next check of the order's proofs fail, whatever
// is published.
func (s *Server) FailNextCheck(orderOrCertID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.lookup(orderOrCertID)
	if c == nil {
		return fmt.Errorf("no order or certificate %s", orderOrCertID)
	}
	c.failNext = true
	return nil
}

// FailChecksOf makes the next n checks of domain fail in any order,
// whatever is published: an artefact found wrong or late, before the
// order even exists.
func (s *Server) FailChecksOf(domain string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failFor == nil {
		s.failFor = map[string]int{}
	}
	s.failFor[domain] = n
}

// ClickEmailLink completes the EMAIL validation of domain in an order, as
// the approver would.
func (s *Server) ClickEmailLink(orderOrCertID, domain string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.lookup(orderOrCertID)
	if c == nil {
		return fmt.Errorf("no order or certificate %s", orderOrCertID)
	}
	for _, d := range c.dcv {
		if d.name == domain && d.method == "EMAIL" {
			if d.mailed.IsZero() {
				return fmt.Errorf("no validation email was sent for %s", domain)
			}
			d.ok, d.last = true, ""
			s.promote(c)
			return nil
		}
	}
	return fmt.Errorf("%s is not validated by email in %s", domain, orderOrCertID)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// --- plumbing

// endpoint is one API: its paths, parameters and handler.
type endpoint struct {
	api   string
	paths []string
	// allowed are the parameter names it takes (case-sensitive).
	allowed []string
	// format is how it answers: fmtParam (responseFormat picks 0 or 1),
	// fmtEncoded (URL-encoded always), fmtText (newline-delimited).
	format int
	h      func(ctx context.Context, c *call) answer
}

const (
	fmtParam = iota
	fmtEncoded
	fmtText
)

// call is one request being served.
type call struct {
	form url.Values
	now  time.Time
}

func (c *call) get(k string) string { return c.form.Get(k) }
func (c *call) has(k string) bool   { _, ok := c.form[k]; return ok }

// answer is what a handler returns: an errorCode with a message, or
// parameters (in order) for the URL-encoded form and lines for the
// newline-delimited one.
type answer struct {
	code   int
	msg    string
	params [][2]string
	lines  []string
}

func fail(code int, format string, args ...any) answer {
	return answer{code: code, msg: fmt.Sprintf(format, args...)}
}

func missing(param string) answer { return fail(-3, "The %s argument is missing", param) }
func invalid(param, format string, args ...any) answer {
	return fail(-4, "The value of the %s argument is invalid: %s", param, fmt.Sprintf(format, args...))
}

func (s *Server) endpoints() []endpoint {
	login := []string{"loginName", "loginPassword"}
	with := func(names ...string) []string { return append(slices.Clone(login), names...) }
	return []endpoint{
		{"AutoApplySSL", []string{"/products/!AutoApplySSL", "/products/!AutoApplyOrder"}, with("product", "days", "years", "serverSoftware", "csr",
			"isCustomerValidated", "domainNames", "primaryDomainName", "dcvMethod", "dcvEmailAddress", "dcvEmailAddresses", "uniqueValue",
			"responseFormat", "showCertificateID", "test", "caCertificateID"), fmtParam, s.apply},
		{"CollectSSL", []string{"/products/download/CollectSSL"}, with("orderNumber", "certificateID", "baseOrderNumber", "queryType",
			"responseType", "responseEncoding", "showValidityPeriod", "showExtStatus", "responseFormat"), fmtParam, s.collect},
		{"AutoUpdateDCV", []string{"/products/!AutoUpdateDCV", "/products/download/!AutoUpdateDCV"}, with("orderNumber", "baseOrderNumber",
			"domainName", "newMethod", "newDCVEmailAddress", "dcvTemplateID", "domainNames", "newMethods", "newDCVEmailAddresses"), fmtEncoded, s.updateDCV},
		{"ResendDCVEmail", []string{"/products/!ResendDCVEmail", "/products/download/!ResendDCVEmail"}, with("orderNumber", "baseOrderNumber",
			"dcvEmailAddress", "dcvTemplateID"), fmtEncoded, s.resend},
		{"AutoReplaceSSL", []string{"/products/!AutoReplaceSSL"}, with("orderNumber", "exactOrder", "serverSoftware", "domainNames",
			"primaryDomainName", "csr", "dcvMethod", "dcvEmailAddress", "dcvEmailAddresses", "uniqueValue", "responseFormat"), fmtParam, s.replace},
		{"AutoRevokeSSL", []string{"/products/!AutoRevokeSSL"}, with("orderNumber", "certificateID", "serialNumber", "revocationReason",
			"codeReason", "test"), fmtEncoded, s.revoke},
		{"GetDCVEmailAddressList", []string{"/products/!GetDCVEmailAddressList", "/products/download/!GetDCVEmailAddressList"},
			with("domainName", "product", "responseFormat"), fmtText, s.emailList},
	}
}

// Handler returns the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, ep := range s.endpoints() {
		for _, p := range ep.paths {
			mux.Handle(p, s.wrap(ep))
		}
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Not Found", http.StatusNotFound)
	})
	return mux
}

// wrap applies, in order: latency, the injected fault, POST and HTTPS,
// the form's rules (only known names, each once, in the body), the
// credentials, the call limit; then runs the handler.
func (s *Server) wrap(ep endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !sleep(r.Context(), s.opts.Latency) {
			return
		}
		s.mu.Lock()
		s.requests[ep.api]++
		var fault *Fault
		if q := s.faults[ep.api]; len(q) > 0 {
			fault, s.faults[ep.api] = &q[0], q[1:]
		}
		s.mu.Unlock()
		format := fmtText
		if ep.format == fmtEncoded {
			format = fmtEncoded
		}
		if fault != nil {
			if !sleep(r.Context(), fault.Delay) {
				return
			}
			switch {
			case fault.HTML:
				simfault.HTML(w, fault.Status)
				return
			case fault.Status != 0:
				if fault.RetryAfter > 0 {
					w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(fault.RetryAfter.Seconds()))))
				}
				http.Error(w, http.StatusText(fault.Status), fault.Status)
				return
			case fault.CallLimit:
				s.reply(w, ep, format, fail(-42, "Call limit reached, please try again later"))
				return
			case fault.Code < 0:
				s.reply(w, ep, format, fail(fault.Code, "%s", fault.Message))
				return
			}
		}
		if r.Method != http.MethodPost {
			s.reply(w, ep, format, fail(-17, "A GET request was made instead of POST"))
			return
		}
		if r.TLS == nil {
			s.reply(w, ep, format, fail(-1, "The request was made over HTTP instead of HTTPS"))
			return
		}
		if r.URL.RawQuery != "" {
			s.reply(w, ep, format, fail(-2, "%s is an unrecognised argument (parameters go in the POST body)", strings.SplitN(r.URL.RawQuery, "=", 2)[0]))
			return
		}
		form := url.Values{}
		if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			if err := r.ParseForm(); err != nil {
				s.reply(w, ep, format, fail(-4, "The request body is not a valid form: %v", err))
				return
			}
			form = r.PostForm
		}
		if ep.format == fmtParam {
			switch form.Get("responseFormat") {
			case "1":
				format = fmtEncoded
			case "", "0":
			default:
				s.reply(w, ep, format, invalid("responseFormat", "must be 0 or 1"))
				return
			}
		}
		if a, ok := checkNames(form, ep.allowed); !ok {
			s.reply(w, ep, format, a)
			return
		}
		for _, k := range []string{"loginName", "loginPassword"} {
			if form.Get(k) == "" {
				s.reply(w, ep, format, missing(k))
				return
			}
		}
		if form.Get("loginName") != s.opts.LoginName || form.Get("loginPassword") != s.opts.LoginPassword {
			s.reply(w, ep, format, fail(-16, "Permission denied"))
			return
		}
		now := s.opts.Now()
		s.mu.Lock()
		limited := s.callLimited(now)
		s.mu.Unlock()
		if limited {
			s.reply(w, ep, format, fail(-42, "Call limit reached, please try again later"))
			return
		}
		c := &call{form: form, now: now}
		if fault != nil && (fault.Hang || fault.Truncate) {
			rec := simfault.NewRecorder()
			s.reply(rec, ep, format, ep.h(r.Context(), c))
			if fault.Hang {
				simfault.Hang(r)
			}
			simfault.Truncated(w, rec)
		}
		if fault != nil && fault.DropAfterCommit {
			ep.h(r.Context(), c)
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler) // HTTP/2: abort the stream
		}
		s.reply(w, ep, format, ep.h(r.Context(), c))
	})
}

// checkNames refuses unknown names and repeated ones.
func checkNames(form url.Values, allowed []string) (answer, bool) {
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(allowed, k) {
			return fail(-2, "%s is an unrecognised argument", k), false
		}
		if len(form[k]) > 1 {
			return invalid(k, "given %d times", len(form[k])), false
		}
	}
	return answer{}, true
}

// callLimited counts a call against the per-minute limit; s.mu held.
func (s *Server) callLimited(now time.Time) bool {
	if s.opts.CallLimit <= 0 {
		return false
	}
	cut := now.Add(-time.Minute)
	kept := s.calls[:0]
	for _, t := range s.calls {
		if t.After(cut) {
			kept = append(kept, t)
		}
	}
	s.calls = kept
	if len(s.calls) >= s.opts.CallLimit {
		return true
	}
	s.calls = append(s.calls, now)
	return false
}

// reply writes a in the endpoint's format.
func (s *Server) reply(w http.ResponseWriter, ep endpoint, format int, a answer) {
	var b strings.Builder
	if format == fmtEncoded {
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		b.WriteString("errorCode=" + strconv.Itoa(a.code))
		if a.code < 0 {
			b.WriteString("&errorMessage=" + url.QueryEscape(a.msg))
		}
		for _, p := range a.params {
			b.WriteString("&" + url.QueryEscape(p[0]) + "=" + url.QueryEscape(p[1]))
		}
	} else {
		w.Header().Set("Content-Type", "text/plain")
		b.WriteString(strconv.Itoa(a.code) + "\n")
		if a.code < 0 {
			b.WriteString(a.msg + "\n")
		}
		for _, l := range a.lines {
			b.WriteString(l + "\n")
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(b.String()))
}

// sleep waits d, or less if the client goes away; false then.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
