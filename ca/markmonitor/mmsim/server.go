// Package mmsim is a strict simulator of the Markmonitor SSL Certs API
// (DigiCert behind it) for tests and certd's demo. It refuses what the
// real API would: a call without the x-api-key (403) or without a valid,
// unexpired bearer JWT (401; the JWT's lifetime runs on the simulator's
// clock, Options.TokenLifetime), more than Options.RateLimit requests in
// a Options.RateWindow (429 with Retry-After), a body that is not strict
// JSON (unknown fields, trailing data, wrong Content-Type: 400), unknown
// query parameters, missing or invalid values, HTTP_TOKEN for a wildcard,
// a download without the Accept header the guide requires (406), an
// action the order's status does not allow (409). It checks DigiCert's
// DCV for real: the TXT and the CNAME over DNS (Options.DNSServer, with
// miekg/dns) and fileauth.txt over HTTP (Options.HTTPAddr, the domain as
// Host, no redirect followed). Organisations are validated by DigiCert
// (Options.OrgValidation after their creation, or ValidateOrganization):
// OV and EV orders wait for it; EV orders then wait for their approver
// (Approve). Certificates are real X.509 chains from a test root, for the
// CSR's key and the order's names. Orders are paid when placed: the
// ledger counts them (and reissues apart).
//
// Where certd's reference is silent, the simulator speaks the same
// reading as ca/markmonitor (see its package doc): the JSON names of
// ca/markmonitor's wire types, Spring-style pages ({"content": [...],
// "totalPages", "last", ...}, first page 0), the actions cancel, revoke,
// reissue and validateDomains, and the error body {"status", "error",
// "message"}. The DCV token of each name appears in the order
// (cert.domains[].dcvToken) once the order has reached DigiCert
// (DIGI_PENDING, Options.StatusDelay after it was placed). DigiCert
// checks a name when the order is read and a check is due: at once when
// the token appears, then every RecheckEvery after a failed check, and at
// once when asked to (validateDomains). A DigiCert check finds a TXT at
// the name, at _dnsauth.<name> or at a parent; a CNAME
// <token>.<name> -> dcv.digicert.com or _dnsauth.<name> ->
// <token>.dcv.digicert.com (or at a parent); the file with the token
// alone (surrounding white space ignored).
package mmsim

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
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

// Routes name the API's endpoints without ids, as faults and Requests
// take them.
const (
	RouteAuthenticate   = "POST /auth/authenticate"
	RouteRefresh        = "GET /auth/refresh"
	RouteCreateOrg      = "POST /organization"
	RouteListOrgs       = "GET /organization"
	RouteGetOrg         = "GET /organization/{id}"
	RouteCreateContact  = "POST /contact"
	RouteListContacts   = "GET /contact"
	RouteGetContact     = "GET /contact/{id}"
	RouteCreateOrder    = "POST /order"
	RouteSearchOrders   = "GET /order"
	RouteGetOrder       = "GET /order/{id}"
	RouteDownload       = "GET /order/{id}/downloadCert"
	RouteValidate       = "PATCH /order/{id}/validateDomains"
	RouteReissue        = "PATCH /order/{id}/reissue"
	RouteCancel         = "PATCH /order/{id}/cancel"
	RouteRevoke         = "PATCH /order/{id}/revoke"
	DefaultProvider     = "DIGICERT"
	DefaultTokenLife    = 90 * time.Minute
	DefaultRateLimit    = 100
	DefaultRecheckEvery = time.Minute
)

// Options configure the simulator. The zero value of each field has a
// sensible default.
type Options struct {
	// APIKey, Username and Password are the account's credentials.
	APIKey, Username, Password string
	// Provider is the provider organisations, contacts and orders must
	// name (default DIGICERT).
	Provider string
	// Now is the clock (default time.Now): JWT expiry, the request limit,
	// and every delay below run on it.
	Now func() time.Time
	// TokenLifetime is the JWT's lifetime (default 90 minutes).
	TokenLifetime time.Duration
	// RateLimit is how many requests the cert API takes per RateWindow
	// (default 100 per minute); beyond it, 429 with Retry-After. Negative:
	// no limit.
	RateLimit  int
	RateWindow time.Duration
	// Latency is added to every answer (real time).
	Latency time.Duration
	// StatusDelay is how long an order (or a reissue) stays with
	// Markmonitor (CREATED, REISSUE_REQUEST_PENDING) before it reaches
	// DigiCert and shows its DCV tokens.
	StatusDelay time.Duration
	// IssueDelay is how long DigiCert takes to issue once everything is
	// validated (DIGI_PROCESSING); SetIssueDelay changes it for orders
	// placed later.
	IssueDelay time.Duration
	// RecheckEvery is how long after a failed check DigiCert checks again
	// by itself (default 1 minute).
	RecheckEvery time.Duration
	// OrgValidation is how long DigiCert takes to validate a new
	// organisation (0: at once); ValidateOrganization ends it sooner.
	OrgValidation time.Duration
	// SearchLag is how long a new order takes to show in the order search.
	SearchLag time.Duration
	// DNSServer is the host:port the DNS tokens are checked against.
	DNSServer string
	// HTTPAddr, when set, is where every HTTP_TOKEN fetch is sent (the
	// domain as Host); otherwise the domain's port 80.
	HTTPAddr string
	// MaxPageSize bounds the size parameter (default 100).
	MaxPageSize int
	// OnCreate, when set, is told of every order committed (its
	// resourceId and names), before the answer is written.
	OnCreate func(orderID string, names []string)
}

// Fault is an injected failure of the next call to one route (by name,
// such as RouteCreateOrder). Faults queue: several for one route are used
// in order.
type Fault struct {
	// Status answers with this HTTP status and an error body, without
	// doing the call (429 with RetryAfter is a rate limit).
	Status int
	// RetryAfter, with Status, is sent as Retry-After (whole seconds).
	RetryAfter time.Duration
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

// LedgerEntry is one order (or reissue) the simulator committed: what
// Markmonitor would bill (a reissue is not a purchase).
type LedgerEntry struct {
	OrderID         string    `json:"order_id"`
	OrganizationID  string    `json:"organization_id"`
	CertificateType string    `json:"certificate_type"`
	CommonName      string    `json:"common_name"`
	DNSNames        []string  `json:"dns_names"`
	At              time.Time `json:"at"`
	Reissue         bool      `json:"reissue,omitempty"`
}

// Server is a strict Markmonitor SSL Certs API simulator. It is safe for
// concurrent use.
type Server struct {
	opts Options

	root, ica, apiCA *simpki.Authority
	serverTLS        tls.Certificate
	jwtKey           []byte

	mu         sync.Mutex
	orgs       map[string]*org
	orgSeq     []string
	contacts   map[string]*contact
	orders     map[string]*order
	orderSeq   []string
	ledger     []LedgerEntry
	faults     map[string][]Fault
	requests   map[string]int
	tokens     map[string]time.Time // jti -> expiry of the JWTs issued
	accepted   []time.Time          // cert API requests in the current window
	arrivals   []time.Time          // every cert API request, for Peak
	limited    int
	issueDelay time.Duration
}

// New creates a simulator with a fresh test PKI.
func New(opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	now := s.opts.Now()
	if s.root, s.ica, s.apiCA, err = simpki.NewCAs(caOrg, "certd Markmonitor Simulator", " G2", "TLS CA", now); err != nil {
		return nil, err
	}
	if err := s.newServerCert(); err != nil {
		return nil, err
	}
	return s, nil
}

// newServer checks opts, fills in their defaults and makes a simulator
// (with a fresh JWT key) without its PKI.
func newServer(opts Options) (*Server, error) {
	if opts.APIKey == "" || opts.Username == "" || opts.Password == "" {
		return nil, errors.New("mmsim: APIKey, Username and Password are required")
	}
	if opts.Provider == "" {
		opts.Provider = DefaultProvider
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = DefaultTokenLife
	}
	if opts.RateLimit == 0 {
		opts.RateLimit = DefaultRateLimit
	}
	if opts.RateWindow <= 0 {
		opts.RateWindow = time.Minute
	}
	if opts.RecheckEvery <= 0 {
		opts.RecheckEvery = DefaultRecheckEvery
	}
	if opts.MaxPageSize <= 0 {
		opts.MaxPageSize = 100
	}
	s := &Server{opts: opts, orgs: map[string]*org{}, contacts: map[string]*contact{}, orders: map[string]*order{}, faults: map[string][]Fault{},
		requests: map[string]int{}, tokens: map[string]time.Time{}, issueDelay: opts.IssueDelay, jwtKey: make([]byte, 32)}
	if _, err := rand.Read(s.jwtKey); err != nil {
		return nil, err
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

// TLSConfig is the server side of the API's TLS.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{s.serverTLS}, MinVersion: tls.VersionTLS12}
}

// Serve serves the API over TLS on ln until ctx is done: the cert service
// under /cert/v1 and the authentication service under /auth/v1.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return simpki.ServeTLS(ctx, ln, s.Handler(), s.TLSConfig())
}

// SetIssueDelay sets IssueDelay for orders placed (or reissued) from now
// on.
func (s *Server) SetIssueDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issueDelay = d
}

// InjectFault makes the next call to route fail as f says.
func (s *Server) InjectFault(route string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[route] = append(s.faults[route], f)
}

// ExpireTokens makes every JWT issued so far invalid, as if they had run
// out: the next call with one is answered 401.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// Ledger returns the committed orders and reissues.
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

// OrdersFor counts the committed orders (purchases; reissues excluded)
// whose names are exactly the set names.
func (s *Server) OrdersFor(names []string) int {
	want := nameSet(names)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.ledger {
		if !e.Reissue && slices.Equal(nameSet(e.DNSNames), want) {
			n++
		}
	}
	return n
}

// Certificates counts the certificates issued in an order (the first and
// each reissue's).
func (s *Server) Certificates(orderID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.orders[orderID]; ok {
		return len(o.leaves)
	}
	return 0
}

// Requests returns how many calls route has received.
func (s *Server) Requests(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[route]
}

// Peak is the largest number of cert API requests received in any
// RateWindow so far; Limited how many were answered 429 by the limit
// (injected faults aside).
func (s *Server) Peak() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	peak := 0
	for i := range s.arrivals {
		j := i
		for j < len(s.arrivals) && s.arrivals[j].Sub(s.arrivals[i]) < s.opts.RateWindow {
			j++
		}
		peak = max(peak, j-i)
	}
	return peak
}

// Limited is how many requests the request limit refused.
func (s *Server) Limited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limited
}

// --- plumbing

// apiError is the error body (inferred shape).
type apiError struct {
	Status  int    `json:"status"`
	Error   string `json:"error"`
	Message string `json:"message"`
}

// errorName is the error word of a status in the error body.
func errorName(status int) string {
	return strings.ToUpper(strings.ReplaceAll(http.StatusText(status), " ", "_"))
}

// httpError is a handler's refusal.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func fail(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = 500, []byte(`{"status":500,"error":"INTERNAL_SERVER_ERROR","message":"encoding"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, e *httpError) {
	writeJSON(w, e.status, apiError{Status: e.status, Error: errorName(e.status), Message: e.msg})
}

// readJSON decodes a strict JSON body into v: Content-Type
// application/json, known fields only, one value, nothing after it.
func readJSON(r *http.Request, v any) *httpError {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return fail(415, "Content-Type must be application/json, got %q", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fail(400, "malformed JSON body: %v", err)
	}
	if dec.More() {
		return fail(400, "malformed JSON body: data after the JSON value")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err == nil {
		return fail(400, "malformed JSON body: a second JSON value")
	}
	return nil
}

// emptyBody refuses a body other than nothing or {}.
func emptyBody(r *http.Request) *httpError {
	if r.ContentLength == 0 && r.Header.Get("Content-Type") == "" {
		return nil
	}
	var v struct{}
	return readJSON(r, &v)
}

// handler is one endpoint: its route name, whether it is under the
// authentication service, and its work.
type handler func(ctx context.Context, c *call) (int, any, *httpError)

// call is one request being served.
type call struct {
	r   *http.Request
	w   http.ResponseWriter
	now time.Time
	// raw, when set, is written as is instead of JSON.
	raw         []byte
	contentType string
}

// Handler returns the API: the cert service under /cert/v1 and the
// authentication service under /auth/v1.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	routes := []struct {
		pattern, route string
		auth           bool
		h              handler
	}{
		{"POST /auth/v1/auth/authenticate", RouteAuthenticate, true, s.authenticate},
		{"GET /auth/v1/auth/refresh", RouteRefresh, true, s.refresh},
		{"POST /cert/v1/organization", RouteCreateOrg, false, s.createOrg},
		{"GET /cert/v1/organization", RouteListOrgs, false, s.listOrgs},
		{"GET /cert/v1/organization/{id}", RouteGetOrg, false, s.getOrg},
		{"POST /cert/v1/contact", RouteCreateContact, false, s.createContact},
		{"GET /cert/v1/contact", RouteListContacts, false, s.listContacts},
		{"GET /cert/v1/contact/{id}", RouteGetContact, false, s.getContact},
		{"POST /cert/v1/order", RouteCreateOrder, false, s.createOrder},
		{"GET /cert/v1/order", RouteSearchOrders, false, s.searchOrders},
		{"GET /cert/v1/order/{id}", RouteGetOrder, false, s.getOrder},
		{"GET /cert/v1/order/{id}/downloadCert", RouteDownload, false, s.download},
		{"PATCH /cert/v1/order/{id}/validateDomains", RouteValidate, false, s.validateDomains},
		{"PATCH /cert/v1/order/{id}/reissue", RouteReissue, false, s.reissue},
		{"PATCH /cert/v1/order/{id}/cancel", RouteCancel, false, s.cancel},
		{"PATCH /cert/v1/order/{id}/revoke", RouteRevoke, false, s.revoke},
	}
	for _, rt := range routes {
		mux.Handle(rt.pattern, s.wrap(rt.route, rt.auth, rt.h))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fail(404, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// wrap applies, in order: latency, the injected fault, HTTPS, the
// request limit (cert service), the API key, the JWT (cert service);
// then runs the handler.
func (s *Server) wrap(route string, authService bool, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !sleep(r.Context(), s.opts.Latency) {
			return
		}
		now := s.opts.Now()
		s.mu.Lock()
		s.requests[route]++
		if !authService {
			s.arrivals = append(s.arrivals, now)
		}
		var fault *Fault
		if q := s.faults[route]; len(q) > 0 {
			fault, s.faults[route] = &q[0], q[1:]
		}
		s.mu.Unlock()
		if fault != nil {
			if !sleep(r.Context(), fault.Delay) {
				return
			}
			if fault.HTML {
				simfault.HTML(w, fault.Status)
				return
			}
			if fault.Status != 0 {
				if fault.RetryAfter > 0 {
					w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(fault.RetryAfter.Seconds()))))
				}
				writeError(w, fail(fault.Status, "%s (injected)", http.StatusText(fault.Status)))
				return
			}
		}
		if r.TLS == nil {
			writeError(w, fail(403, "HTTPS is required"))
			return
		}
		if !authService {
			if wait, ok := s.admit(now); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
				writeError(w, fail(429, "rate limit of %d requests per %s exceeded", s.opts.RateLimit, s.opts.RateWindow))
				return
			}
		}
		if !hmac.Equal([]byte(r.Header.Get("x-api-key")), []byte(s.opts.APIKey)) {
			writeError(w, fail(403, "missing or invalid x-api-key"))
			return
		}
		if !authService {
			if e := s.checkJWT(r, now); e != nil {
				writeError(w, e)
				return
			}
		}
		var rec *simfault.Recorder // the answer, kept to send damaged
		out := w
		if fault != nil && (fault.Hang || fault.Truncate) {
			rec = simfault.NewRecorder()
			w = rec
		}
		c := &call{r: r, w: w, now: now}
		status, body, e := h(r.Context(), c)
		if fault != nil && fault.DropAfterCommit {
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler) // HTTP/2: abort the stream
		}
		switch {
		case e != nil:
			writeError(w, e)
		case c.raw != nil:
			w.Header().Set("Content-Type", c.contentType)
			w.Header().Set("Content-Length", strconv.Itoa(len(c.raw)))
			w.WriteHeader(status)
			_, _ = w.Write(c.raw)
		default:
			writeJSON(w, status, body)
		}
		if rec != nil {
			if fault.Hang {
				simfault.Hang(r)
			}
			simfault.Truncated(out, rec)
		}
	})
}

// admit counts a cert API request against the limit; false (with how
// long until a slot frees) when the window is full.
func (s *Server) admit(now time.Time) (time.Duration, bool) {
	if s.opts.RateLimit < 0 {
		return 0, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cut := now.Add(-s.opts.RateWindow)
	kept := s.accepted[:0]
	for _, t := range s.accepted {
		if t.After(cut) {
			kept = append(kept, t)
		}
	}
	s.accepted = kept
	if len(s.accepted) >= s.opts.RateLimit {
		s.limited++
		return s.accepted[0].Add(s.opts.RateWindow).Sub(now), false
	}
	s.accepted = append(s.accepted, now)
	return 0, true
}

// --- JWT (HS256, on the simulator's clock)

type claims struct {
	Sub string `json:"sub"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
	Jti string `json:"jti"`
}

func (s *Server) issueJWT(now time.Time) (string, error) {
	exp := now.Add(s.opts.TokenLifetime)
	c := claims{Sub: s.opts.Username, Iat: now.Unix(), Exp: exp.Unix(), Jti: randomHex(12)}
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signing := header + "." + base64.RawURLEncoding.EncodeToString(payload)
	mac := hmac.New(sha256.New, s.jwtKey)
	mac.Write([]byte(signing))
	s.mu.Lock()
	s.tokens[c.Jti] = exp
	s.mu.Unlock()
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}

// checkJWT verifies the bearer token: signature, expiry (on the
// simulator's clock) and that it was not expired by ExpireTokens.
func (s *Server) checkJWT(r *http.Request, now time.Time) *httpError {
	authz := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok || tok == "" {
		return fail(401, "missing bearer token")
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return fail(401, "malformed token")
	}
	mac := hmac.New(sha256.New, s.jwtKey)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return fail(401, "invalid token signature")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c claims
	if err != nil || json.Unmarshal(payload, &c) != nil {
		return fail(401, "malformed token")
	}
	if !now.Before(time.Unix(c.Exp, 0)) {
		return fail(401, "token expired")
	}
	s.mu.Lock()
	_, known := s.tokens[c.Jti]
	s.mu.Unlock()
	if !known {
		return fail(401, "token expired")
	}
	return nil
}

type tokenAnswer struct {
	Token string `json:"token"`
}

func (s *Server) authenticate(_ context.Context, c *call) (int, any, *httpError) {
	var cr struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if e := readJSON(c.r, &cr); e != nil {
		return 0, nil, e
	}
	if cr.Username == "" || cr.Password == "" {
		return 0, nil, fail(400, "username and password are required")
	}
	if !hmac.Equal([]byte(cr.Username), []byte(s.opts.Username)) || !hmac.Equal([]byte(cr.Password), []byte(s.opts.Password)) {
		return 0, nil, fail(401, "bad credentials")
	}
	tok, err := s.issueJWT(c.now)
	if err != nil {
		return 0, nil, fail(500, "issuing a token")
	}
	return 200, tokenAnswer{Token: tok}, nil
}

func (s *Server) refresh(_ context.Context, c *call) (int, any, *httpError) {
	if c.r.ContentLength > 0 {
		return 0, nil, fail(400, "refresh takes no body")
	}
	if e := s.checkJWT(c.r, c.now); e != nil {
		return 0, nil, e
	}
	tok, err := s.issueJWT(c.now)
	if err != nil {
		return 0, nil, fail(500, "issuing a token")
	}
	return 200, tokenAnswer{Token: tok}, nil
}

// --- helpers

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newUUID is a random (version 4) UUID.
func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func nameSet(names []string) []string {
	set := make([]string, 0, len(names))
	for _, n := range names {
		set = append(set, strings.ToLower(n))
	}
	slices.Sort(set)
	return slices.Compact(set)
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
