package atlassim

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"path"
	"slices"
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
	// APIKey and APISecret are the login credentials it accepts.
	APIKey, APISecret string
	// Now is the clock (default time.Now); tests move it to expire tokens,
	// claims and certificates.
	Now func() time.Time
	// TokenLifetime is the bearer token's life (default 10 minutes).
	TokenLifetime time.Duration
	// AssertWindow is how long a claim token may be asserted (default 30
	// days); ClaimValidity how long a verified claim lasts (default 365
	// days).
	AssertWindow, ClaimValidity time.Duration
	// VerifyWindow is how long an assertion job that did not succeed at
	// once keeps re-checking (default 10 minutes).
	VerifyWindow time.Duration
	// IssueDelay is how long GET /certificates/{serial} answers 202 after
	// the request (default 0).
	IssueDelay time.Duration
	// StatsListPending restores the old, convenient reporting: a
	// certificate is listed by /stats/issued (with the request time as its
	// issuance time) and counted by /counters/certificates/issued as soon as
	// POST /certificates accepted it. By default (false) the reports lag as
	// the real CA's do: a certificate appears only once it is issued, that
	// is once IssueDelay has passed, with the time it became ready as its
	// issuance time (what from/to filter on). A rejected certificate (see
	// Reject) is never listed or counted as issued, in either mode; nor is a
	// pending one listed by /stats/expiring unless StatsListPending is set.
	StatsListPending bool
	// StaticPolicyList serves and enforces Policy's san.dns_names.list and
	// subject_dn.common_name format exactly as configured. By default
	// (false) the simulator does what real Atlas does for a DV account
	// (as reported by checks against the real CA; the no-claim case is
	// inferred, no written source covers it):
	// san.dns_names.list has one regular expression per VERIFIED, unexpired
	// domain claim, matching the domain, any subdomain and a wildcard of
	// them (`^(\*\.)?([a-z0-9-]+\.)*example\.com$`), and the common_name
	// format is the same expression (an alternation when there are several
	// claims). With no such claim the list is empty ("list": []) and
	// maxcount stays as configured: an empty list admits no name at all (as
	// the SDK's sample policy pairs an empty ip_addresses list with "no IP
	// addresses"), so every request is refused with 422; the common_name
	// format then stays the configured one. A client must not read an empty
	// list as "anything". In both modes POST /certificates also refuses a
	// name no verified, unexpired claim covers.
	StaticPolicyList bool
	// RotateEvery rotates the issuing CA after that many issuances
	// (default 0: never).
	RotateEvery int
	// Quota is the number of issuances left (default: unlimited).
	Quota int
	// RateLimit is requests per second accepted (with a burst of twice
	// that); beyond it, 429 with Retry-After. Zero: no limit.
	RateLimit float64
	// Latency is added to every response (real time, not Now).
	Latency time.Duration
	// RouteLatency is added, on top of Latency, to every response of one
	// route, keyed by pattern as for InjectFault ("POST /certificates").
	RouteLatency map[string]time.Duration
	// DNSServer is the host:port the DNS DCV check queries.
	DNSServer string
	// HTTPAddr, when set, is where every gsdv.txt fetch is sent (with the
	// claimed domain as Host): tests point it at a local nginx.
	HTTPAddr string
	// Policy is the validation policy served and enforced (default
	// DefaultPolicy).
	Policy *Policy
	// BasePath is where the API is mounted (default "/v2").
	BasePath string
	// AIABaseURL, when set, is put in every leaf's Authority Information
	// Access as AIABaseURL/<issuing CA key id, hex>.crt, as real Atlas
	// leaves name their issuer; AIAHandler serves those URLs (plain HTTP,
	// no authentication, DER), for every issuing CA the simulator ever
	// used.
	AIABaseURL string
}

// Fault is an injected failure for the next request to one endpoint.
type Fault struct {
	// Status answers with this HTTP status (503, 429, 500, ...) without
	// doing the request.
	Status int
	// RetryAfter is sent with the status.
	RetryAfter time.Duration
	// DropAfterCommit does the request, commits its effect, then closes the
	// connection without answering: the ambiguous outcome a client must
	// reconcile.
	DropAfterCommit bool
	// Delay is waited (real time) before anything else, e.g. to make this
	// one request outlast a client's timeout.
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

// LedgerEntry is one certificate request the simulator committed: what a
// real CA would bill.
type LedgerEntry struct {
	Serial     string
	DNSNames   []string
	PublicKey  []byte // DER SubjectPublicKeyInfo
	At         time.Time
	Rekey      bool   // POST /certificates/{serial}/rekey, not a new order
	RekeyOf    string // the rekeyed certificate's serial when Rekey
	ClientCert string // subject of the mTLS certificate that asked
}

// caOrg is the Organization of the simulator's CA certificates.
const caOrg = "certd Atlas simulator"

// Server is a strict GlobalSign Atlas HVCA v2 simulator.
type Server struct {
	opts Options

	root, clientCA, apiCA *simpki.Authority
	serverTLS             tls.Certificate

	mu        sync.Mutex
	ica       *simpki.Authority
	icas      map[string][]byte // every issuing CA used, DER by hex key id
	issued    int               // since the last rotation
	tokens    map[string]time.Time
	claims    map[string]*claim
	certs     map[string]*certificate
	order     []string // serials in issuance order
	ledger    []LedgerEntry
	faults    map[string][]Fault
	quota     int
	bucket    float64
	bucketAt  time.Time
	emailSent map[string]string // claim id -> address
	requests  map[string]int    // per route pattern
}

type claim struct {
	id, domain, token      string // domain without the trailing dot
	status                 string
	created, expires, asBy time.Time
	log                    []claimLogEntry
	job                    *verifyJob
}

type verifyJob struct {
	method, adn, scheme string
	until               time.Time
}

type certificate struct {
	serial    string
	pem       string
	ready     time.Time
	status    string // ISSUED, REVOKED
	updated   time.Time
	notBefore time.Time
	notAfter  time.Time
	names     []string
	cn        string
	created   time.Time
	revokedAt time.Time
}

// New creates a simulator with a fresh test PKI.
func New(opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	now := s.opts.Now()
	if s.root, err = simpki.NewAuthority(caOrg, "certd Atlas Simulator Root R1", nil, now, 20*365*24*time.Hour, 1); err != nil {
		return nil, err
	}
	ica, err := simpki.NewAuthority(caOrg, "certd Atlas Simulator Issuing CA 1", s.root, now, 5*365*24*time.Hour, 0)
	if err != nil {
		return nil, err
	}
	s.useICA(ica)
	if s.clientCA, err = simpki.NewAuthority(caOrg, "certd Atlas Simulator Client CA", nil, now, 20*365*24*time.Hour, 0); err != nil {
		return nil, err
	}
	if s.apiCA, err = simpki.NewAuthority(caOrg, "certd Atlas Simulator API CA", nil, now, 20*365*24*time.Hour, 0); err != nil {
		return nil, err
	}
	if err := s.newServerCert(); err != nil {
		return nil, err
	}
	return s, nil
}

// newServer applies the defaults and makes an empty simulator, without
// its PKI.
func newServer(opts Options) (*Server, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&opts.TokenLifetime, 10*time.Minute)
	def(&opts.AssertWindow, 30*24*time.Hour)
	def(&opts.ClaimValidity, 365*24*time.Hour)
	def(&opts.VerifyWindow, 10*time.Minute)
	if opts.Policy == nil {
		p := DefaultPolicy()
		opts.Policy = &p
	}
	if opts.BasePath == "" {
		opts.BasePath = "/v2"
	}
	if opts.APIKey == "" || opts.APISecret == "" {
		return nil, errors.New("atlassim: APIKey and APISecret are required")
	}
	s := &Server{opts: opts, tokens: map[string]time.Time{}, claims: map[string]*claim{}, certs: map[string]*certificate{},
		faults: map[string][]Fault{}, quota: opts.Quota, emailSent: map[string]string{}, requests: map[string]int{}}
	if opts.Quota == 0 {
		s.quota = math.MaxInt
	}
	return s, nil
}

// newServerCert issues the API's own TLS certificate from apiCA.
func (s *Server) newServerCert() error {
	var err error
	s.serverTLS, err = s.apiCA.ServerTLS(s.opts.Now())
	return err
}

// RootPEM is the root every issued certificate chains to.
func (s *Server) RootPEM() []byte { return []byte(s.root.PEM) }

// useICA makes ica the issuing CA, remembered for AIAHandler and named
// in its leaves' AIA when Options.AIABaseURL is set. s.mu must be held
// (or s not yet shared).
func (s *Server) useICA(ica *simpki.Authority) {
	id := hex.EncodeToString(ica.Cert.SubjectKeyId)
	if s.opts.AIABaseURL != "" {
		ica.IssuerURL = strings.TrimSuffix(s.opts.AIABaseURL, "/") + "/" + id + ".crt"
	}
	if s.icas == nil {
		s.icas = map[string][]byte{}
	}
	s.icas[id] = ica.Cert.Raw
	s.ica = ica
}

// RotateIssuingCA replaces the issuing CA now, as Atlas does on its own
// schedule: later certificates and /trustchain use the new one.
func (s *Server) RotateIssuingCA() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rotate()
}

// rotate makes a new issuing CA under the root the current one. s.mu
// must be held.
func (s *Server) rotate() error {
	ica, err := simpki.NewAuthority(caOrg, "certd Atlas Simulator Issuing CA "+strconv.Itoa(len(s.icas)+1), s.root, s.opts.Now(), 5*365*24*time.Hour, 0)
	if err != nil {
		return err
	}
	s.useICA(ica)
	s.issued = 0
	return nil
}

// AIAHandler serves GET /<key id>.crt: the DER certificate of every
// issuing CA the simulator used, as a CA's AIA repository does (plain
// HTTP, no authentication).
func (s *Server) AIAHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		id := strings.TrimSuffix(path.Base(r.URL.Path), ".crt")
		s.mu.Lock()
		der, ok := s.icas[id]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-cert")
		_, _ = w.Write(der)
	})
}

// APICAPEM is the CA of the API's own TLS certificate, for the client's
// trust store.
func (s *Server) APICAPEM() []byte { return []byte(s.apiCA.PEM) }

// ClientCredentials issues an mTLS client certificate and key (PEM) the
// simulator accepts, as GlobalSign does at onboarding.
func (s *Server) ClientCredentials(cn string) (certPEM, keyPEM []byte, err error) {
	return s.clientCA.IssueClient(cn, s.opts.Now())
}

// TLSConfig is the server side of the API's TLS: a client certificate
// from the simulator's client CA is required on every connection.
func (s *Server) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(s.clientCA.Cert)
	return &tls.Config{
		Certificates: []tls.Certificate{s.serverTLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	}
}

// Serve serves the API over TLS on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return simpki.ServeTLS(ctx, ln, s.Handler(), s.TLSConfig())
}

// InjectFault makes the next request to route (a pattern such as
// "POST /certificates" or "GET /claims/domains/{id}") fail as f says.
// Faults queue: several for one route are used in order.
func (s *Server) InjectFault(route string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[route] = append(s.faults[route], f)
}

// SetIssueDelay changes how long certificates requested from now on take
// to issue.
func (s *Server) SetIssueDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.IssueDelay = d
}

// Ledger returns the committed certificate requests, new orders and
// rekeys (LedgerEntry.Rekey) alike.
func (s *Server) Ledger() []LedgerEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]LedgerEntry, len(s.ledger))
	for i, e := range s.ledger {
		e.DNSNames, e.PublicKey = slices.Clone(e.DNSNames), slices.Clone(e.PublicKey)
		out[i] = e
	}
	return out
}

// OrdersFor counts the committed new orders (rekeys excluded) whose DNS
// names are exactly the set names, in any order: how many times a client
// bought a certificate for it.
func (s *Server) OrdersFor(names []string) int {
	want := nameSet(names)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.ledger {
		if !e.Rekey && slices.Equal(nameSet(e.DNSNames), want) {
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

// Requests returns how many requests each route has served.
func (s *Server) Requests(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[route]
}

// Reject makes the certificate with serial fail issuance: GET answers 422
// "CA validation error" from now on, as when Atlas's backend refuses a
// request it had accepted.
func (s *Server) Reject(serial string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.certs[serial]
	if !ok {
		return fmt.Errorf("no certificate %s", serial)
	}
	c.status = "REJECTED"
	return nil
}

// ClickEmailLink completes an email validation, as the approver would.
func (s *Server) ClickEmailLink(claimID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.claims[claimID]
	if !ok || s.emailSent[claimID] == "" {
		return fmt.Errorf("no validation email was sent for claim %s", claimID)
	}
	s.verified(c, "EMAIL", "approved by "+s.emailSent[claimID])
	return nil
}

// DropClaim deletes every claim for domain, as a deletion in the portal
// would: the claim disappears from the list, GET by id answers 404, and it
// no longer covers issuance nor appears in the validation policy.
func (s *Server) DropClaim(domain string) error {
	return s.eachClaim(domain, func(c *claim, _ time.Time) {
		delete(s.claims, c.id)
		delete(s.emailSent, c.id)
	})
}

// InvalidateClaim sends every claim for domain back to PENDING, as a failed
// CA-side revalidation does: expires_at is cleared, any assertion job
// dropped, and the log gains an ERROR "revalidation failed". The claim must
// be asserted again (or reasserted once assert_by has passed) before it
// covers issuance.
func (s *Server) InvalidateClaim(domain string) error {
	return s.eachClaim(domain, func(c *claim, now time.Time) {
		c.status, c.expires, c.job = "PENDING", time.Time{}, nil
		delete(s.emailSent, c.id)
		c.log = append(c.log, claimLogEntry{Status: "ERROR", Description: "revalidation failed", Timestamp: now.Unix()})
	})
}

// ExpireClaim sets expires_at of every claim for domain to now: the claim
// stays VERIFIED in the listing but no longer covers issuance.
func (s *Server) ExpireClaim(domain string) error {
	return s.eachClaim(domain, func(c *claim, now time.Time) {
		if c.status == "VERIFIED" {
			c.expires = now
		}
	})
}

// eachClaim applies f, under s.mu, to every claim for domain (with or
// without the trailing dot); an error when there is none.
func (s *Server) eachClaim(domain string, f func(*claim, time.Time)) error {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	found := false
	for _, c := range s.claims {
		if c.domain == domain {
			f(c, now)
			found = true
		}
	}
	if !found {
		return fmt.Errorf("no claim for %s", domain)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

// --- plumbing

type route struct {
	route string // the pattern InjectFault, RouteLatency and Requests use
	auth  bool
	body  bodyRule
	h     http.HandlerFunc
}

// routes are the API's endpoints.
func (s *Server) routes() []route {
	return []route{
		{"POST /login", false, bodyRequired, s.login},
		{"GET /validationpolicy", true, bodyNone, s.validationPolicy},
		{"POST /certificates", true, bodyRequired, s.createCertificate},
		{"GET /certificates/{serial}", true, bodyNone, s.getCertificate},
		{"PATCH /certificates/{serial}", true, bodyRequired, s.revokeCertificate},
		{"POST /certificates/{serial}/rekey", true, bodyRequired, s.rekeyCertificate},
		{"GET /trustchain", true, bodyNone, s.trustChain},
		{"GET /stats/{kind}", true, bodyNone, s.stats},
		{"GET /counters/certificates/{kind}", true, bodyNone, s.counters},
		{"GET /quotas/issuance", true, bodyNone, s.quotas},
		{"GET /claims/domains", true, bodyNone, s.listClaims},
		{"POST /claims/domains/{domain}", true, bodyNone, s.createClaim},
		{"GET /claims/domains/{id}", true, bodyNone, s.getClaim},
		{"DELETE /claims/domains/{id}", true, bodyNone, s.deleteClaim},
		{"POST /claims/domains/{id}/dns", true, bodyOptional, s.verifyDNS},
		{"POST /claims/domains/{id}/http", true, bodyRequired, s.verifyHTTP},
		{"GET /claims/domains/{id}/email", true, bodyNone, s.emailAddresses},
		{"POST /claims/domains/{id}/email", true, bodyRequired, s.sendEmail},
		{"POST /claims/domains/{id}/reassert", true, bodyNone, s.reassert},
	}
}

// Handler returns the API's routes with their checks.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.routes() {
		method, path, _ := strings.Cut(r.route, " ")
		mux.Handle(method+" "+s.opts.BasePath+path, s.wrap(r.route, r.auth, r.body, r.h))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "Not found")
	})
	return mux
}

type bodyRule int

const (
	bodyNone bodyRule = iota
	bodyOptional
	bodyRequired
)

// wrap applies, in order: latency, the injected fault, the rate limit,
// the content rules, authentication; then runs h.
func (s *Server) wrap(route string, auth bool, body bodyRule, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !sleep(r.Context(), s.opts.Latency+s.opts.RouteLatency[route]) {
			return
		}
		s.mu.Lock()
		s.requests[route]++
		var fault *Fault
		if q := s.faults[route]; len(q) > 0 {
			fault, s.faults[route] = &q[0], q[1:]
		}
		s.mu.Unlock()
		if fault != nil && !sleep(r.Context(), fault.Delay) {
			return
		}
		s.mu.Lock()
		limited, wait := s.rateLimited()
		s.mu.Unlock()
		if fault != nil && fault.HTML {
			simfault.HTML(w, fault.Status)
			return
		}
		if fault != nil && fault.Status != 0 {
			if fault.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(fault.RetryAfter.Seconds()))))
			}
			writeProblem(w, fault.Status, http.StatusText(fault.Status))
			return
		}
		if limited {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			writeProblem(w, http.StatusTooManyRequests, "Rate Limit Reached")
			return
		}
		hasBody := r.ContentLength != 0
		switch {
		case body == bodyNone && hasBody:
			writeProblem(w, http.StatusBadRequest, "This endpoint takes no request body")
			return
		case body == bodyRequired && !hasBody:
			if r.ContentLength < 0 {
				writeProblem(w, http.StatusLengthRequired, "Content-Length required")
			} else {
				writeProblem(w, http.StatusBadRequest, "Request body required")
			}
			return
		case hasBody && r.ContentLength < 0:
			writeProblem(w, http.StatusLengthRequired, "Content-Length required")
			return
		case hasBody && r.Header.Get("Content-Type") != "application/json;charset=utf-8":
			writeProblem(w, http.StatusUnsupportedMediaType, "Bad Content-Type")
			return
		}
		if auth {
			tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			s.mu.Lock()
			exp, known := s.tokens[tok]
			valid := ok && known && s.opts.Now().Before(exp)
			s.mu.Unlock()
			if !valid {
				writeProblem(w, http.StatusUnauthorized, "Unauthorized")
				return
			}
		}
		if fault != nil && (fault.Hang || fault.Truncate) {
			rec := simfault.NewRecorder()
			h(rec, r)
			if fault.Hang {
				simfault.Hang(r)
			}
			simfault.Truncated(w, rec)
		}
		if fault != nil && fault.DropAfterCommit {
			h(discard{header: http.Header{}}, r)
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler) // HTTP/2 or no hijacker: abort the stream
		}
		h(w, r)
	})
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

// rateLimited is a token bucket; s.mu must be held.
func (s *Server) rateLimited() (bool, time.Duration) {
	if s.opts.RateLimit <= 0 {
		return false, 0
	}
	now := s.opts.Now()
	burst := 2 * s.opts.RateLimit
	if s.bucketAt.IsZero() {
		s.bucket, s.bucketAt = burst, now
	}
	s.bucket = math.Min(burst, s.bucket+now.Sub(s.bucketAt).Seconds()*s.opts.RateLimit)
	s.bucketAt = now
	if s.bucket < 1 {
		return true, time.Duration((1 - s.bucket) / s.opts.RateLimit * float64(time.Second))
	}
	s.bucket--
	return false, 0
}

// discard is the ResponseWriter of a request whose answer is dropped.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

func writeProblem(w http.ResponseWriter, status int, desc string) {
	writeProblemErrors(w, status, desc, nil)
}

func writeProblemErrors(w http.ResponseWriter, status int, desc string, errs map[string]string) {
	w.Header().Set("Content-Type", "application/problem+json;charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{Description: desc, ID: randomHex(13), Errors: errs})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// decode reads a JSON body strictly: unknown fields are a 400.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeProblem(w, http.StatusBadRequest, "Invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func (s *Server) location(r *http.Request, path string) string {
	return "https://" + r.Host + s.opts.BasePath + path
}
