package acme

import (
	"bytes"
	"context"
	"errors"
	"go.uber.org/zap"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/certd/certd/ca"
)

// exchange is what one call into acmez records about the HTTP requests it
// makes, carried in the request context to the transport below. acmez
// hides its responses' headers and retries requests on its own; the
// exchange gives certd the Retry-After and Link headers, the raw body
// when asked, and a guard that a request which must not be repeated (a
// newOrder) goes out at most once.
type exchange struct {
	route string

	mu sync.Mutex
	// once is a URL that may be POSTed at most once in this exchange.
	once     string
	onceSent bool
	// lost: a once-only request went out and its answer was not learnt
	// (a reset, a timeout, a 5xx): the outcome is ambiguous.
	lost bool
	// capture keeps the body of the last 2xx response.
	capture bool
	body    []byte
	header  http.Header
	status  int
}

type exchangeKey struct{}

func withExchange(ctx context.Context, x *exchange) context.Context {
	return context.WithValue(ctx, exchangeKey{}, x)
}

func (x *exchange) retryAfter(now time.Time) time.Duration {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.header == nil {
		return 0
	}
	return parseRetryAfter(x.header.Get("Retry-After"), now)
}

func (x *exchange) wasLost() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.lost
}

// errResendRefused is what acmez sees when it retries a once-only request.
var errResendRefused = errors.New("certd refuses to resend a request whose outcome is unknown")

// transport wraps the HTTP transport acmez uses.
type transport struct {
	base    http.RoundTripper
	observe func(route string, status int, d time.Duration)
	// log is told of every server error the ACME server answers: acmez
	// retries some of them on its own, and a pass that succeeds after
	// them must still leave a trace.
	log *zap.Logger
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	x, _ := req.Context().Value(exchangeKey{}).(*exchange)
	route := "other"
	once := false
	if x != nil {
		route = x.route
		x.mu.Lock()
		once = x.once != "" && req.Method == http.MethodPost && req.URL.String() == x.once
		if once && x.onceSent {
			x.mu.Unlock()
			return nil, errResendRefused
		}
		if once {
			x.onceSent = true
		}
		x.mu.Unlock()
	}
	if req.Method == http.MethodHead {
		route = "newNonce"
	}
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	if err == nil && req.Method == http.MethodHead && resp.Header.Get("Replay-Nonce") != "" {
		t.spareNonce(req, resp)
	}
	if t.observe != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		t.observe(route, code, time.Since(start))
	}
	if t.log != nil && resp != nil && (resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests) {
		t.log.Warn("the ACME server answered a server error or a rate limit (the ACME client may retry it)", zap.String("route", route), zap.Int("status", resp.StatusCode),
			zap.Duration("took", time.Since(start)))
	}
	if x == nil {
		return resp, err
	}
	if err != nil {
		if once {
			x.mu.Lock()
			if notSent(err) {
				x.onceSent = false // never left this host: may go again
			} else {
				x.lost = true
			}
			x.mu.Unlock()
		}
		return resp, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.header, x.status = resp.Header.Clone(), resp.StatusCode
	switch {
	case once && resp.StatusCode >= 500:
		x.lost = true // a server error after the request arrived: it may have committed
	case once && resp.StatusCode >= 400:
		// A definite refusal (badNonce, rateLimited, malformed): nothing was
		// created, so acmez may send it again (with a fresh nonce).
		x.onceSent = false
	}
	if x.capture && resp.StatusCode/100 == 2 && req.Method != http.MethodHead {
		body, rerr := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		if rerr != nil {
			return nil, rerr
		}
		x.body = body
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	return resp, nil
}

// spareNonce works around acmez v3.1.4 handing out one nonce twice
// (mholt/acmez#58, open): it pushes the Replay-Nonce of a HEAD newNonce
// response onto its pool and also returns it to the caller, so the value
// is used twice and the second use costs a badNonce and a fixed 250 ms
// retry sleep, under concurrency every time the pool runs dry. acmez reads
// the header for its pool before draining the body and for the caller
// after; so a second fresh nonce is fetched and swapped into the header
// once the body is drained. The pool gets one nonce, the caller another.
// Whatever order a later acmez reads in, no nonce is handed out twice by
// this (at worst one is wasted).
func (t *transport) spareNonce(req *http.Request, resp *http.Response) {
	r2, err := t.base.RoundTrip(req.Clone(req.Context()))
	if err != nil {
		return
	}
	r2.Body.Close()
	n2 := r2.Header.Get("Replay-Nonce")
	if n2 == "" {
		return
	}
	resp.Body = &swapOnDrain{ReadCloser: resp.Body, h: resp.Header, nonce: n2}
}

type swapOnDrain struct {
	io.ReadCloser
	h     http.Header
	nonce string
	once  sync.Once
}

func (s *swapOnDrain) swap() { s.once.Do(func() { s.h.Set("Replay-Nonce", s.nonce) }) }

func (s *swapOnDrain) Read(p []byte) (int, error) {
	n, err := s.ReadCloser.Read(p)
	if err == io.EOF {
		s.swap()
	}
	return n, err
}

func (s *swapOnDrain) Close() error {
	s.swap()
	return s.ReadCloser.Close()
}

// notSent reports whether err happened before the request was written:
// a failure to dial.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// parseRetryAfter reads a Retry-After value: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	return ca.ParseRetryAfter(v, now)
}
