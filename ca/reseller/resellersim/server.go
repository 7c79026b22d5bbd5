// Package resellersim is a strict simulator of the reseller
// /ssl-certificate REST API (seed 002), for certd's tests and demo.
//
// It does what the seed documents: HTTP Basic authentication, JSON bodies
// with exactly the seed's fields (unknown fields, a wrong Content-Type, a
// body where none belongs are refused), CSRs as full PEM with keys of at
// least 2048 bits (RSA; ECDSA P-256/P-384 too), orders created pending
// and turned active once every name is proved (after SetIssueDelay), the
// client_reference and plan filters of the listing, renew (paid, same
// object), reissue (no purchase, active at once), delete (refunded
// inside the plan's grace period), validate (check again, optionally by
// another method), validation-details and every download format
// (zip, pkcs7, crt, csr, ca) with real X.509 chains from a test root.
//
// Proofs are checked for real: DNS against Options.DNSServer (CNAME and
// TXT, following CNAMEs), HTTP against Options.HTTPAddr with the name as
// Host and no redirect followed. Like the CAs behind real plans, it keeps
// checking a pending name whenever the order is looked at, for
// CheckWindow after the order (or the last validate); a check that fails
// after that (or one made to fail by FailNextCheck) ends the automatic
// checks until POST /{id}/validate asks again.
//
// It does not enforce client_reference uniqueness: nothing says the API
// does, so only the client's lookup prevents a second charge.
//
// Inferred, not documented (the simulator's choices, which the client
// must not rely on beyond what its package doc says): the object's keys
// (objectJSON), Django REST Framework conventions (paginated listings
// {"count", "next", "previous", "results"}, errors {"detail": ...} and
// {"field": ["message"]}, 400 for invalid input, 415 for a wrong
// Content-Type, 429 with Retry-After), 402 for an exhausted balance, 409
// for an action the order's status forbids, the DELETE answer
// {"refunded": bool}, and the validation-details shapes of the two
// upstream CAs (see Upstream).
package resellersim

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/certd/certd/internal/simfault"
	"github.com/certd/certd/internal/simpki"
)

// Upstream is the CA behind a plan, which decides what validation-details
// asks the client to publish.
type Upstream string

const (
	// UpstreamSectigo: CSR-hash proofs. DNS is a CNAME
	// _<md5>.<name> -> <sha256[:32]>.<sha256[32:]>.<unique>.sectigo.com;
	// FILE is /.well-known/pki-validation/<MD5>.txt holding the SHA-256,
	// "sectigo.com" and the unique value. The answer is a list of flat
	// domain objects ("dns_record", "dns_type", "dns_value", "file_path",
	// "file_content").
	UpstreamSectigo Upstream = "sectigo"
	// UpstreamDigiCert: a random value per order. DNS is a TXT at
	// _dnsauth.<name>; FILE is /.well-known/pki-validation/fileauth.txt.
	// The answer is an object keyed by name, each with nested records
	// ("txt_record": {"host", "value"}, "fileauth": {"url", "contents"}).
	UpstreamDigiCert Upstream = "digicert"
)

// Plan is an SSL plan the account may buy.
type Plan struct {
	ID       string
	Name     string
	Upstream Upstream
	// Validation is "dv", "ov" or "ev": OV and EV need the organisation
	// fields.
	Validation string
	Price      float64
}

// Plan ids of DefaultPlans. The first is the seed's sample plan.
const (
	SectigoDVPlan  = "3f7830c3-3fa4-404d-908f-35daaa1cd17b"
	DigiCertDVPlan = "7b1d6a52-0c3e-4f0e-9d1a-2b4c6e8f0a11"
	SectigoOVPlan  = "c2a94e17-5b3d-4a8f-b6e2-9d0f1a3c5e77"
)

// DefaultPlans are a Sectigo DV, a DigiCert DV and a Sectigo OV plan.
func DefaultPlans() []Plan {
	return []Plan{
		{ID: SectigoDVPlan, Name: "Sectigo PositiveSSL", Upstream: UpstreamSectigo, Validation: "dv", Price: 9.95},
		{ID: DigiCertDVPlan, Name: "GeoTrust DV (DigiCert)", Upstream: UpstreamDigiCert, Validation: "dv", Price: 19.95},
		{ID: SectigoOVPlan, Name: "Sectigo OV SSL", Upstream: UpstreamSectigo, Validation: "ov", Price: 49.95},
	}
}

// Options configure the simulator. The zero value of each field but the
// credentials has a sensible default.
type Options struct {
	// Username and APIKey are the Basic credentials accepted.
	Username, APIKey string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Plans are the plans on sale (default DefaultPlans).
	Plans []Plan
	// IssueDelay is how long after every name is proved an order turns
	// active (default 0); SetIssueDelay changes it for later orders.
	IssueDelay time.Duration
	// CheckWindow is how long the CA keeps checking a pending name by
	// itself after the order or the last validate (default 24h).
	CheckWindow time.Duration
	// RefundWindow is the plans' grace period: a deletion inside it after
	// the last charge is refunded (default 30 days).
	RefundWindow time.Duration
	// Quota is how many charges the balance pays for (default 0:
	// unlimited); beyond it, 402.
	Quota int
	// Validity is the lifetime of issued certificates (default 90 days).
	Validity time.Duration
	// Latency is added to every response (real time); RouteLatency on
	// top, per route ("POST /ssl-certificate").
	Latency      time.Duration
	RouteLatency map[string]time.Duration
	// DNSServer is the host:port the DNS checks query.
	DNSServer string
	// HTTPAddr, when set, is where every HTTP check connects (the name
	// proved is sent as Host); by default the name itself, port 80.
	HTTPAddr string
	// BasePath is where the API is mounted (default "": the root).
	BasePath string
	// BareList answers the listing as a bare JSON array instead of the
	// paginated object; PageSize is the page size (default 100).
	BareList bool
	PageSize int
	// OnCreate, when set, is called (in its own goroutine) with every
	// order committed by POST /ssl-certificate, before the answer is
	// written or dropped.
	OnCreate func(id string, names []string)
}

// Fault is an injected failure of the next request to one route.
type Fault struct {
	// Status answers with this HTTP status without doing the request.
	Status int
	// RetryAfter is sent with the status.
	RetryAfter time.Duration
	// DropAfterCommit does the request, commits its effect, then closes
	// the connection without answering.
	DropAfterCommit bool
	// Delay is waited (real time) before anything else.
	Delay time.Duration
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

// LedgerEntry is one charge the simulator committed.
type LedgerEntry struct {
	ID              string    `json:"id"`   // the SSL certificate object
	Kind            string    `json:"kind"` // "create" or "renew"
	Plan            string    `json:"plan"`
	Amount          float64   `json:"amount"`
	DNSNames        []string  `json:"dns_names"`
	ClientReference string    `json:"client_reference"`
	At              time.Time `json:"at"`
	Refunded        bool      `json:"refunded,omitempty"`
}

// Email is a validation email the simulator "sent".
type Email struct {
	ID, Domain, Address string
	At                  time.Time
}

// Server is a strict reseller API simulator.
type Server struct {
	opts  Options
	plans map[string]Plan

	root, ica, apiCA *simpki.Authority
	serverTLS        tls.Certificate

	mu         sync.Mutex
	orders     map[string]*order
	seq        []string // ids in creation order
	ledger     []LedgerEntry
	faults     map[string][]Fault
	requests   map[string]int
	issueDelay time.Duration
	emails     []Email
}

// New creates a simulator with a fresh test PKI.
func New(opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	now := s.opts.Now()
	if s.root, s.ica, s.apiCA, err = simpki.NewCAs(caOrg, "certd Reseller Simulator", "", "DV CA", now); err != nil {
		return nil, err
	}
	if err := s.newServerCert(); err != nil {
		return nil, err
	}
	return s, nil
}

// newServer checks opts, fills in their defaults and makes a simulator
// without its PKI.
func newServer(opts Options) (*Server, error) {
	if opts.Username == "" || opts.APIKey == "" {
		return nil, errors.New("resellersim: Username and APIKey are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Plans == nil {
		opts.Plans = DefaultPlans()
	}
	if opts.CheckWindow == 0 {
		opts.CheckWindow = 24 * time.Hour
	}
	if opts.RefundWindow == 0 {
		opts.RefundWindow = 30 * 24 * time.Hour
	}
	if opts.Validity == 0 {
		opts.Validity = 90 * 24 * time.Hour
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 100
	}
	opts.BasePath = strings.TrimSuffix(opts.BasePath, "/")
	s := &Server{opts: opts, plans: map[string]Plan{}, orders: map[string]*order{}, faults: map[string][]Fault{},
		requests: map[string]int{}, issueDelay: opts.IssueDelay}
	for _, p := range opts.Plans {
		switch {
		case p.Upstream != UpstreamSectigo && p.Upstream != UpstreamDigiCert:
			return nil, fmt.Errorf("resellersim: plan %s: unknown upstream %q", p.ID, p.Upstream)
		case p.Validation != "dv" && p.Validation != "ov" && p.Validation != "ev":
			return nil, fmt.Errorf("resellersim: plan %s: validation must be dv, ov or ev", p.ID)
		}
		s.plans[strings.ToLower(p.ID)] = p
	}
	return s, nil
}

// newServerCert issues the API's own TLS certificate from the API CA.
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

// Serve serves the API over TLS on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return simpki.ServeTLS(ctx, ln, s.Handler(), &tls.Config{Certificates: []tls.Certificate{s.serverTLS}, MinVersion: tls.VersionTLS12})
}

// InjectFault makes the next request to route (a pattern such as
// "POST /ssl-certificate" or "GET /ssl-certificate/{id}") fail as f says.
// Faults queue: several for one route are used in order.
func (s *Server) InjectFault(route string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[route] = append(s.faults[route], f)
}

// SetIssueDelay changes how long orders placed from now on take to turn
// active once proved.
func (s *Server) SetIssueDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issueDelay = d
}

// Ledger returns the committed charges, creates and renewals.
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

// OrdersFor counts the committed new orders (renewals excluded, refunded
// or not) whose names are exactly the set names: how many times a client
// bought a certificate for it.
func (s *Server) OrdersFor(names []string) int {
	want := nameSet(names)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.ledger {
		if e.Kind == "create" && slices.Equal(nameSet(e.DNSNames), want) {
			n++
		}
	}
	return n
}

func nameSet(names []string) []string {
	set := make([]string, len(names))
	for i, n := range names {
		set[i] = strings.ToLower(strings.TrimSuffix(n, "."))
	}
	slices.Sort(set)
	return slices.Compact(set)
}

// Requests returns how many requests route has served.
func (s *Server) Requests(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[route]
}

// Emails returns the validation emails sent.
func (s *Server) Emails() []Email {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.emails)
}

// Reject makes the CA refuse order id: its status becomes "rejected".
func (s *Server) Reject(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[id]
	if !ok {
		return fmt.Errorf("resellersim: no order %s", id)
	}
	o.status, o.updated = "rejected", s.opts.Now()
	return nil
}

// FailNextCheck makes the CA's next check of order id's proofs fail, and
// end its automatic checks until the client asks again (validate).
func (s *Server) FailNextCheck(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[id]
	if !ok {
		return fmt.Errorf("resellersim: no order %s", id)
	}
	o.failNext = true
	return nil
}

// ApproveEmail completes the EMAIL validation of domain in order id, as
// the approver clicking the link would.
func (s *Server) ApproveEmail(id, domain string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[id]
	if !ok {
		return fmt.Errorf("resellersim: no order %s", id)
	}
	d := o.domain(domain)
	if d == nil || d.method != dcvEmail || d.email == "" {
		return fmt.Errorf("resellersim: no validation email pending for %s in order %s", domain, id)
	}
	d.status, d.detail = domValidated, "approved by "+d.email
	s.maybeIssue(o)
	return nil
}

// Order returns the status and names of order id.
func (s *Server) Order(id string) (status string, names []string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[id]
	if !ok {
		return "", nil, false
	}
	return o.status, slices.Clone(o.names), true
}

// --- plumbing

type route struct {
	route string // the pattern InjectFault, RouteLatency and Requests use
	body  bool   // a JSON body is required (else none is allowed)
	h     func(w http.ResponseWriter, r *http.Request)
}

func (s *Server) routes() []route {
	rs := []route{
		{"GET /ssl-certificate", false, s.list},
		{"POST /ssl-certificate", true, s.create},
		{"GET /ssl-certificate/{id}", false, s.get},
		{"DELETE /ssl-certificate/{id}", false, s.delete},
		{"POST /ssl-certificate/{id}/renew", true, s.renew},
		{"POST /ssl-certificate/{id}/validate", true, s.validate},
		{"POST /ssl-certificate/{id}/reissue", true, s.reissue},
		{"GET /ssl-certificate/{id}/validation-details", false, s.validationDetails},
	}
	for _, f := range []string{"zip", "pkcs7", "crt", "csr", "ca"} {
		rs = append(rs, route{"GET /ssl-certificate/{id}/download-" + f, false, s.download(f)})
	}
	return rs
}

// Handler returns the API's routes with their checks.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.routes() {
		method, path, _ := strings.Cut(r.route, " ")
		mux.Handle(method+" "+s.opts.BasePath+path, s.wrap(r))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeDetail(w, http.StatusNotFound, "Not found.")
	})
	return mux
}

// wrap applies, in order: latency, the injected fault, authentication,
// the content rules; then runs the handler (committing and dropping the
// answer for DropAfterCommit).
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !sleep(r.Context(), s.opts.Latency+s.opts.RouteLatency[rt.route]) {
			return
		}
		s.mu.Lock()
		s.requests[rt.route]++
		var fault *Fault
		if q := s.faults[rt.route]; len(q) > 0 {
			fault, s.faults[rt.route] = &q[0], q[1:]
		}
		s.mu.Unlock()
		if fault != nil && !sleep(r.Context(), fault.Delay) {
			return
		}
		if fault != nil && fault.HTML {
			simfault.HTML(w, fault.Status)
			return
		}
		if fault != nil && fault.Status != 0 {
			if fault.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(fault.RetryAfter.Seconds()))))
			}
			msg := http.StatusText(fault.Status)
			if fault.Status == http.StatusTooManyRequests {
				msg = fmt.Sprintf("Request was throttled. Expected available in %d seconds.", int(math.Ceil(fault.RetryAfter.Seconds())))
			}
			writeDetail(w, fault.Status, msg)
			return
		}
		user, pass, ok := r.BasicAuth()
		switch {
		case !ok:
			w.Header().Set("WWW-Authenticate", `Basic realm="api"`)
			writeDetail(w, http.StatusUnauthorized, "Authentication credentials were not provided.")
			return
		case subtle.ConstantTimeCompare([]byte(user), []byte(s.opts.Username)) != 1 ||
			subtle.ConstantTimeCompare([]byte(pass), []byte(s.opts.APIKey)) != 1:
			w.Header().Set("WWW-Authenticate", `Basic realm="api"`)
			writeDetail(w, http.StatusUnauthorized, "Invalid username/password.")
			return
		}
		hasBody := r.ContentLength != 0
		switch {
		case !rt.body && hasBody:
			writeDetail(w, http.StatusBadRequest, "This endpoint takes no request body.")
			return
		case rt.body && !hasBody:
			writeDetail(w, http.StatusBadRequest, "A JSON request body is required.")
			return
		case rt.body && !isJSON(r.Header.Get("Content-Type")):
			writeDetail(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Unsupported media type %q in request.", r.Header.Get("Content-Type")))
			return
		}
		if fault != nil && (fault.Hang || fault.Truncate) {
			rec := simfault.NewRecorder()
			rt.h(rec, r)
			if fault.Hang {
				simfault.Hang(r)
			}
			simfault.Truncated(w, rec)
		}
		if fault != nil && fault.DropAfterCommit {
			rt.h(discard{header: http.Header{}}, r)
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler) // HTTP/2: abort the stream
		}
		rt.h(w, r)
	})
}

// isJSON accepts application/json with an optional charset parameter.
func isJSON(ct string) bool {
	mt, params, _ := strings.Cut(ct, ";")
	if strings.TrimSpace(strings.ToLower(mt)) != "application/json" {
		return false
	}
	params = strings.TrimSpace(strings.ToLower(params))
	return params == "" || params == "charset=utf-8"
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

// discard is the ResponseWriter of a request whose answer is dropped.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeDetail is DRF's error for the request as a whole.
func writeDetail(w http.ResponseWriter, status int, detail string) {
	writeJSON(w, status, map[string]string{"detail": detail})
}

// writeFields is DRF's validation error: messages by field.
func writeFields(w http.ResponseWriter, fields map[string]string) {
	out := map[string][]string{}
	for k, v := range fields {
		out[k] = []string{v}
	}
	writeJSON(w, http.StatusBadRequest, out)
}

// decode reads a JSON body strictly: an unknown field, a wrong type or
// trailing data is a 400 naming the field.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err == nil {
		return true
	}
	var typeErr *json.UnmarshalTypeError
	switch {
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		writeFields(w, map[string]string{name: "Unknown field."})
	case errors.As(err, &typeErr) && typeErr.Field != "":
		writeFields(w, map[string]string{typeErr.Field: "Not a valid " + typeErr.Type.String() + "."})
	default:
		writeDetail(w, http.StatusBadRequest, "JSON parse error - "+err.Error())
	}
	return false
}

// newID is a random UUID (version 4): the object ids are inferred to be
// UUIDs like the plans'.
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// randomToken is n random characters of [a-z0-9].
func randomToken(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
