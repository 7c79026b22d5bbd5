package testenv

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certd/certd/internal/simfault"
)

// Routes of an ACME server as ACMEFaultProxy names them (RFC 8555 §7.1),
// recognised by Pebble's paths.
const (
	ACMERouteNewOrder = "newOrder" // POST /order-plz: the order is created
	ACMERouteOrder    = "order"    // POST-as-GET /my-order/{id}: its status
	ACMERouteFinalize = "finalize" // POST /finalize-order/{id}: the certificate is issued
	ACMERouteOther    = "other"
)

// ACMEFault is an injected failure for the next request to one route,
// with the meaning each CA simulator's Fault gives the same names.
type ACMEFault struct {
	// Status answers with this HTTP status (and an RFC 7807 problem)
	// without passing the request on.
	Status int
	// RetryAfter is sent with Status.
	RetryAfter time.Duration
	// Hang passes the request on (Pebble commits it), then holds the
	// connection without answering until the client gives up.
	Hang bool
	// Truncate passes the request on, then sends Pebble's status and
	// headers with half its body and drops the connection.
	Truncate bool
	// HTML answers an HTML error page with Status (200 when 0), as a
	// proxy in front of the CA would, without passing the request on.
	HTML bool
}

// ACMEFaultProxy is a TLS reverse proxy in front of Pebble that fails
// chosen requests as InjectFault says, and keeps the ledger Pebble does
// not: the certificates it issued (successful finalizes), by name set.
// It serves with Pebble's own API certificate (Pebble.TLSCA) and passes
// the Host header through, so Pebble's URLs, and the URL each JWS signs,
// name the proxy.
type ACMEFaultProxy struct {
	// Directory is the ACME directory URL through the proxy.
	Directory string

	proxy     *httputil.ReverseProxy
	mu        sync.Mutex
	faults    map[string][]ACMEFault
	requests  map[string]int
	finalized map[string]int // sorted names joined by "," -> finalizes answered 200
}

// StartACMEFaultProxy starts a proxy in front of p, stopped when the test
// ends.
func StartACMEFaultProxy(t testing.TB, p *Pebble) *ACMEFaultProxy {
	t.Helper()
	target, err := url.Parse(p.Directory)
	if err != nil {
		t.Fatal(err)
	}
	target.Path = ""
	cert, err := tls.LoadX509KeyPair(p.TLSCA, filepath.Join(p.Dir, "api-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mustRead(t, p.TLSCA))
	x := &ACMEFaultProxy{faults: map[string][]ACMEFault{}, requests: map[string]int{}, finalized: map[string]int{}}
	x.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // Pebble names its URLs after the Host it was asked
		},
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: x, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { _ = srv.ServeTLS(ln, "", ""); close(done) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	x.Directory = fmt.Sprintf("https://%s/dir", ln.Addr())
	return x
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// InjectFault makes the next request to route (ACMERoute*) fail as f
// says. Faults queue: several for one route are used in order.
func (x *ACMEFaultProxy) InjectFault(route string, f ACMEFault) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.faults[route] = append(x.faults[route], f)
}

// Requests is how many requests route has had.
func (x *ACMEFaultProxy) Requests(route string) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.requests[route]
}

// OrdersFor is how many certificates Pebble issued for exactly names
// (finalizes it answered 200): an ACME order costs nothing until it is
// finalized, so this is the ledger N1 counts.
func (x *ACMEFaultProxy) OrdersFor(names []string) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.finalized[nameSet(names)]
}

func nameSet(names []string) string {
	s := slices.Clone(names)
	slices.Sort(s)
	return strings.Join(s, ",")
}

func acmeRoute(path string) string {
	switch {
	case path == "/order-plz":
		return ACMERouteNewOrder
	case strings.HasPrefix(path, "/my-order/"):
		return ACMERouteOrder
	case strings.HasPrefix(path, "/finalize-order/"):
		return ACMERouteFinalize
	}
	return ACMERouteOther
}

// ServeHTTP implements http.Handler.
func (x *ACMEFaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route := acmeRoute(r.URL.Path)
	x.mu.Lock()
	x.requests[route]++
	var fault *ACMEFault
	if q := x.faults[route]; len(q) > 0 {
		fault, x.faults[route] = &q[0], q[1:]
	}
	x.mu.Unlock()
	var names string
	if route == ACMERouteFinalize {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		names = csrNames(body)
	}
	switch {
	case fault != nil && fault.HTML:
		simfault.HTML(w, fault.Status)
		return
	case fault != nil && fault.Status != 0:
		if fault.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(fault.RetryAfter.Seconds()))))
		}
		typ := "urn:ietf:params:acme:error:serverInternal"
		if fault.Status == http.StatusTooManyRequests {
			typ = "urn:ietf:params:acme:error:rateLimited"
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(fault.Status)
		_ = json.NewEncoder(w).Encode(map[string]any{"type": typ, "detail": "injected fault", "status": fault.Status})
		return
	}
	rec := simfault.NewRecorder()
	x.proxy.ServeHTTP(rec, r)
	if route == ACMERouteFinalize && rec.Status == http.StatusOK && names != "" {
		x.mu.Lock()
		x.finalized[names]++
		x.mu.Unlock()
	}
	switch {
	case fault != nil && fault.Hang:
		simfault.Hang(r)
	case fault != nil && fault.Truncate:
		simfault.Truncated(w, rec)
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	status := rec.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(rec.Body.Bytes())
}

// csrNames are the DNS names of the CSR in a finalize request's JWS, as
// nameSet writes them ("" if it cannot be read).
func csrNames(jws []byte) string {
	var env struct {
		Payload string `json:"payload"`
	}
	if json.Unmarshal(jws, &env) != nil {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(env.Payload)
	if err != nil {
		return ""
	}
	var fin struct {
		CSR string `json:"csr"`
	}
	if json.Unmarshal(payload, &fin) != nil {
		return ""
	}
	der, err := base64.RawURLEncoding.DecodeString(fin.CSR)
	if err != nil {
		return ""
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return ""
	}
	return nameSet(csr.DNSNames)
}
