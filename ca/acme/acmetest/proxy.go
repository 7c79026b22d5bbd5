// Package acmetest puts a small server in front of an ACME server
// (Pebble) for tests: it adds RFC 9773 renewal information, which Pebble
// 2.4 lacks, and can lose a newOrder answer after the order was created.
package acmetest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Window is one renewalInfo answer.
type Window struct {
	// Status is the HTTP status (default 200).
	Status int
	// Start and End are the suggested window; Raw, when set, replaces the
	// whole JSON body (malformed answers).
	Start, End  time.Time
	Explanation string
	Raw         string
	// RetryAfter, when set, is sent as Retry-After in seconds.
	RetryAfter int
}

// Proxy fronts an ACME server. Create it with New.
type Proxy struct {
	// Directory is the directory URL to give the client.
	Directory string
	// CAFile is a PEM file with the proxy's TLS certificate.
	CAFile string

	srv      *httptest.Server
	upstream *url.URL
	rp       *httputil.ReverseProxy

	mu        sync.Mutex
	windows   map[string]Window // by ARI certificate id; "" is the default
	ariCalls  map[string]int
	replaces  []string
	newOrders int
	dropNext  bool
	noARI     bool
	refuseRep bool
	forget    bool
	rateLimit time.Duration
	newAccts  int
}

// New starts a proxy in front of the ACME server whose directory is at
// directory (reached with client's TLS settings). dir receives CAFile.
func New(directory string, upstreamTLS *tls.Config, dir string) (*Proxy, error) {
	u, err := url.Parse(directory)
	if err != nil {
		return nil, err
	}
	p := &Proxy{upstream: &url.URL{Scheme: u.Scheme, Host: u.Host}, windows: map[string]Window{}, ariCalls: map[string]int{}}
	p.rp = httputil.NewSingleHostReverseProxy(p.upstream)
	p.rp.Transport = &http.Transport{TLSClientConfig: upstreamTLS}
	// The Host header stays the proxy's: the upstream builds every URL
	// (and checks every JWS "url") against it, so all traffic comes back
	// through here.
	p.srv = httptest.NewTLSServer(http.HandlerFunc(p.serve))
	p.Directory = p.srv.URL + u.Path
	p.CAFile = filepath.Join(dir, "acmetest-ca.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	if err := os.WriteFile(p.CAFile, certPEM, 0o644); err != nil {
		p.srv.Close()
		return nil, err
	}
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() { p.srv.Close() }

// Pool trusts the proxy's certificate.
func (p *Proxy) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.srv.Certificate())
	return pool
}

// SetWindow sets the answer for certificate id ("" for every certificate
// without its own).
func (p *Proxy) SetWindow(id string, w Window) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.windows[id] = w
}

// DisableARI takes renewalInfo out of the directory.
func (p *Proxy) DisableARI() { p.mu.Lock(); p.noARI = true; p.mu.Unlock() }

// ARICalls is how many renewalInfo requests came for id ("" for all).
func (p *Proxy) ARICalls(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if id != "" {
		return p.ariCalls[id]
	}
	n := 0
	for _, c := range p.ariCalls {
		n += c
	}
	return n
}

// Replaces lists the "replaces" values of the orders created and of those
// refused by RefuseReplaces ("" for none), in order.
func (p *Proxy) Replaces() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.replaces...)
}

// NewOrders is how many orders the upstream created.
func (p *Proxy) NewOrders() int { p.mu.Lock(); defer p.mu.Unlock(); return p.newOrders }

// DropNextNewOrder makes the next newOrder reach the upstream (the order
// is created) and then loses its answer: the connection is closed.
func (p *Proxy) DropNextNewOrder() { p.mu.Lock(); p.dropNext = true; p.mu.Unlock() }

// RefuseReplaces makes newOrder requests that carry "replaces" fail with
// alreadyReplaced, as a CA does when the certificate was replaced already.
func (p *Proxy) RefuseReplaces() { p.mu.Lock(); p.refuseRep = true; p.mu.Unlock() }

// ForgetAccountOnce answers the next newOrder with accountDoesNotExist,
// as a CA that lost or reset its accounts does.
func (p *Proxy) ForgetAccountOnce() { p.mu.Lock(); p.forget = true; p.mu.Unlock() }

// RateLimitNextNewOrder answers the next newOrder with a rateLimited
// problem and a Retry-After of d, without reaching the upstream.
func (p *Proxy) RateLimitNextNewOrder(d time.Duration) {
	p.mu.Lock()
	p.rateLimit = d
	p.mu.Unlock()
}

// NewAccounts is how many registrations (newAccount, not a lookup)
// succeeded.
func (p *Proxy) NewAccounts() int { p.mu.Lock(); defer p.mu.Unlock(); return p.newAccts }

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/sign-me-up" {
		var acct struct {
			OnlyReturnExisting bool `json:"onlyReturnExisting"`
		}
		payload(r, &acct)
		rec := httptest.NewRecorder()
		p.rp.ServeHTTP(rec, r)
		// A lookup is not a registration, nor is a badNonce resent.
		if !acct.OnlyReturnExisting && rec.Code/100 == 2 {
			p.mu.Lock()
			p.newAccts++
			p.mu.Unlock()
		}
		copyResponse(w, rec)
		return
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/renewal-info/"):
		p.renewalInfo(w, r)
		return
	case r.Method == http.MethodGet && r.URL.Path == "/dir":
		p.directory(w, r)
		return
	case r.Method == http.MethodPost && r.URL.Path == "/order-plz":
		p.newOrder(w, r)
		return
	}
	p.rp.ServeHTTP(w, r)
}

func (p *Proxy) directory(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	p.rp.ServeHTTP(rec, r)
	var dir map[string]any
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &dir) != nil {
		copyResponse(w, rec)
		return
	}
	p.mu.Lock()
	if !p.noARI {
		dir["renewalInfo"] = p.srv.URL + "/renewal-info"
	}
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(dir)
}

func (p *Proxy) newOrder(w http.ResponseWriter, r *http.Request) {
	var order struct {
		Replaces string `json:"replaces"`
	}
	payload(r, &order)
	p.mu.Lock()
	refuse := p.refuseRep && order.Replaces != ""
	forget := p.forget
	p.forget = false
	limit := p.rateLimit
	p.rateLimit = 0
	p.mu.Unlock()
	if limit > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(limit.Seconds())))
		p.problem(w, http.StatusTooManyRequests, "rateLimited", "too many new orders")
		return
	}
	if forget {
		p.problem(w, http.StatusBadRequest, "accountDoesNotExist", "no such account")
		return
	}
	if refuse {
		p.mu.Lock()
		p.replaces = append(p.replaces, order.Replaces)
		p.mu.Unlock()
		p.problem(w, http.StatusConflict, "alreadyReplaced", "the certificate was already replaced")
		return
	}
	rec := httptest.NewRecorder()
	p.rp.ServeHTTP(rec, r)
	p.mu.Lock()
	if rec.Code == http.StatusCreated { // not a badNonce the client resends
		p.newOrders++
		p.replaces = append(p.replaces, order.Replaces)
	}
	drop := p.dropNext && rec.Code == http.StatusCreated
	if drop {
		p.dropNext = false
	}
	p.mu.Unlock()
	if drop {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	copyResponse(w, rec)
}

func (p *Proxy) renewalInfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "renewalInfo is fetched with GET", http.StatusMethodNotAllowed)
		return
	}
	id := strings.TrimPrefix(r.URL.Path, "/renewal-info/")
	p.mu.Lock()
	p.ariCalls[id]++
	win, ok := p.windows[id]
	if !ok {
		win, ok = p.windows[""]
	}
	p.mu.Unlock()
	if !ok || !strings.Contains(id, ".") {
		http.Error(w, `{"type":"urn:ietf:params:acme:error:malformed","detail":"unknown certificate"}`, http.StatusNotFound)
		return
	}
	if win.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(win.RetryAfter))
	}
	status := win.Status
	if status == 0 {
		status = http.StatusOK
	}
	if status != http.StatusOK {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		fmt.Fprint(w, `{"type":"urn:ietf:params:acme:error:serverInternal","detail":"renewal information unavailable"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if win.Raw != "" {
		fmt.Fprint(w, win.Raw)
		return
	}
	out := map[string]any{"suggestedWindow": map[string]string{
		"start": win.Start.UTC().Format(time.RFC3339), "end": win.End.UTC().Format(time.RFC3339)}}
	if win.Explanation != "" {
		out["explanationURL"] = win.Explanation
	}
	_ = json.NewEncoder(w).Encode(out)
}

// payload decodes the JWS payload of r into v, leaving r's body intact.
func payload(r *http.Request, v any) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var jws struct {
		Payload string `json:"payload"`
	}
	if json.Unmarshal(body, &jws) == nil {
		if raw, err := base64.RawURLEncoding.DecodeString(jws.Payload); err == nil {
			_ = json.Unmarshal(raw, v)
		}
	}
}

// problem answers with an ACME problem, and a nonce from the upstream
// for the client's next request.
func (p *Proxy) problem(w http.ResponseWriter, status int, typ, detail string) {
	if resp, err := p.rp.Transport.RoundTrip(mustRequest(http.MethodHead, p.upstream.String()+"/nonce-plz")); err == nil {
		resp.Body.Close()
		w.Header().Set("Replay-Nonce", resp.Header.Get("Replay-Nonce"))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":"urn:ietf:params:acme:error:%s","detail":%q,"status":%d}`, typ, detail, status)
}

func mustRequest(method, u string) *http.Request {
	r, err := http.NewRequest(method, u, nil)
	if err != nil {
		panic(err)
	}
	return r
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, vs := range rec.Header() {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}
