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
	"strconv"
	"strings"
	"sync"
	"time"
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
	// RotateEvery rotates the issuing CA after that many issuances
	// (default 0: never).
	RotateEvery int
	// Quota is the number of issuances left (default: unlimited).
	Quota int
	// RateLimit is requests per second accepted (with a burst of twice
	// that); beyond it, 429 with Retry-After. Zero: no limit.
	RateLimit float64
	// Latency is added to every response.
	Latency time.Duration
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
}

// LedgerEntry is one certificate request the simulator committed: what a
// real CA would bill.
type LedgerEntry struct {
	Serial     string
	DNSNames   []string
	PublicKey  []byte // DER SubjectPublicKeyInfo
	At         time.Time
	Rekey      bool
	ClientCert string // subject of the mTLS certificate that asked
}

// Server is a strict GlobalSign Atlas HVCA v2 simulator.
type Server struct {
	opts Options

	root, clientCA, apiCA *authority
	serverTLS             tls.Certificate

	mu        sync.Mutex
	ica       *authority
	issued    int // since the last rotation
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
	created   time.Time
	revokedAt time.Time
}

// New creates a simulator with a fresh test PKI.
func New(opts Options) (*Server, error) {
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
	now := opts.Now()
	s := &Server{opts: opts, tokens: map[string]time.Time{}, claims: map[string]*claim{}, certs: map[string]*certificate{},
		faults: map[string][]Fault{}, quota: opts.Quota, emailSent: map[string]string{}, requests: map[string]int{}}
	if opts.Quota == 0 {
		s.quota = math.MaxInt
	}
	var err error
	if s.root, err = newAuthority("certd Atlas Simulator Root R1", nil, now, 20*365*24*time.Hour, 1); err != nil {
		return nil, err
	}
	if s.ica, err = newAuthority("certd Atlas Simulator Issuing CA 1", s.root, now, 5*365*24*time.Hour, 0); err != nil {
		return nil, err
	}
	if s.clientCA, err = newAuthority("certd Atlas Simulator Client CA", nil, now, 20*365*24*time.Hour, 0); err != nil {
		return nil, err
	}
	if s.apiCA, err = newAuthority("certd Atlas Simulator API CA", nil, now, 20*365*24*time.Hour, 0); err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := s.apiCA.issueServer(now)
	if err != nil {
		return nil, err
	}
	if s.serverTLS, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, err
	}
	return s, nil
}

// RootPEM is the root every issued certificate chains to.
func (s *Server) RootPEM() []byte { return []byte(s.root.pem) }

// APICAPEM is the CA of the API's own TLS certificate, for the client's
// trust store.
func (s *Server) APICAPEM() []byte { return []byte(s.apiCA.pem) }

// ClientCredentials issues an mTLS client certificate and key (PEM) the
// simulator accepts, as GlobalSign does at onboarding.
func (s *Server) ClientCredentials(cn string) (certPEM, keyPEM []byte, err error) {
	return s.clientCA.issueClient(cn, s.opts.Now())
}

// TLSConfig is the server side of the API's TLS: a client certificate
// from the simulator's client CA is required on every connection.
func (s *Server) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(s.clientCA.cert)
	return &tls.Config{
		Certificates: []tls.Certificate{s.serverTLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	}
}

// Serve serves the API over TLS on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), TLSConfig: s.TLSConfig(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	err := srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// InjectFault makes the next request to route (a pattern such as
// "POST /certificates" or "GET /claims/domains/{id}") fail as f says.
// Faults queue: several for one route are used in order.
func (s *Server) InjectFault(route string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[route] = append(s.faults[route], f)
}

// Ledger returns the committed certificate requests.
func (s *Server) Ledger() []LedgerEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]LedgerEntry(nil), s.ledger...)
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

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

// --- plumbing

// Handler returns the API's routes with their checks.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	routes := []struct {
		route string
		auth  bool
		body  bodyRule
		h     http.HandlerFunc
	}{
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
	for _, r := range routes {
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
		if s.opts.Latency > 0 {
			time.Sleep(s.opts.Latency)
		}
		s.mu.Lock()
		s.requests[route]++
		var fault *Fault
		if q := s.faults[route]; len(q) > 0 {
			fault, s.faults[route] = &q[0], q[1:]
		}
		limited, wait := s.rateLimited()
		s.mu.Unlock()
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
