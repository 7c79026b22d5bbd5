package sectigo

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/config"
	"github.com/certd/certd/internal/ratelimit"
)

// The endpoints, as paths under the API's host (reference §2).
const (
	pathApply    = "/products/!AutoApplySSL"
	pathCollect  = "/products/download/CollectSSL"
	pathUpdate   = "/products/!AutoUpdateDCV"
	pathResend   = "/products/!ResendDCVEmail"
	pathReplace  = "/products/!AutoReplaceSSL"
	pathRevoke   = "/products/!AutoRevokeSSL"
	pathEmails   = "/products/!GetDCVEmailAddressList"
	maxBodyBytes = 4 << 20
)

// DefaultCallLimitRetry is how long certd leaves the account alone after
// error -42 (call limit) when the configuration does not say: Sectigo
// publishes neither the limit nor a wait.
const DefaultCallLimitRetry = 60 * time.Second

// ClientOptions configure a Client.
type ClientOptions struct {
	// URL is the API's scheme and host (default DefaultURL); the endpoint
	// paths are appended.
	URL string
	// LoginName and LoginPassword are sent, case-sensitively, on every
	// call. The password is kept redacted and is never logged or put in
	// an error.
	LoginName     string
	LoginPassword config.SecretValue
	// RootCAs verifies the API's TLS certificate (nil: the system roots).
	RootCAs *x509.CertPool
	// Timeout bounds one exchange (default 60s).
	Timeout time.Duration
	// CallLimitRetry is the Retry-After given to error -42 (default
	// DefaultCallLimitRetry).
	CallLimitRetry time.Duration
	Logger         *zap.Logger
	// RateLimit, when set, paces every request (the account's bucket).
	RateLimit *ratelimit.Bucket
	// Observe, when set, is told of every exchange: the API's name as the
	// route ("AutoApplySSL"), the HTTP status (0: no answer) and how long
	// it took.
	Observe func(route string, status int, d time.Duration)
	// Transport replaces the HTTP transport (tests); RootCAs is then
	// ignored.
	Transport http.RoundTripper
}

// Client speaks the reseller Auto* API of one account: HTTPS POSTs of
// application/x-www-form-urlencoded forms with case-sensitive parameter
// names, answers read as URL-encoded parameters (responseFormat=1). It is
// safe for concurrent use. It retries nothing itself: every failure goes
// back to the caller as an error, so the account's call limit is spent
// only by the scheduler's decisions.
type Client struct {
	base *url.URL
	http *http.Client
	opts ClientOptions
	log  *zap.Logger
	// collect serialises CollectSSL: Sectigo asks for no concurrent calls
	// to it.
	collect sync.Mutex
}

// NewClient validates opts and returns a Client. Nothing is sent.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.URL == "" {
		opts.URL = DefaultURL
	}
	base, err := url.Parse(strings.TrimSuffix(opts.URL, "/"))
	if err != nil || base.Host == "" || (base.Scheme != "https" && base.Scheme != "http") {
		return nil, fmt.Errorf("sectigo: invalid URL %q", opts.URL)
	}
	if opts.LoginName == "" || opts.LoginPassword.Reveal() == "" {
		return nil, errors.New("sectigo: login name and password are required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.CallLimitRetry <= 0 {
		opts.CallLimitRetry = DefaultCallLimitRetry
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	tr := opts.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12}
		t.MaxIdleConnsPerHost = 8
		tr = t
	}
	return &Client{
		base: base,
		// The API never redirects; a redirect is an answer to report, not a hop.
		http: &http.Client{Transport: tr, Timeout: opts.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		opts: opts,
		log:  opts.Logger,
	}, nil
}

// call posts params to the endpoint at path (named api) with the
// credentials, and returns the answer's parameters when errorCode >= 0.
//
// commits says the call may commit something at Sectigo (an order, a
// replacement, a revocation): a failure after the request was written
// (a lost connection, a 5xx, a body that is not an answer) is then
// ambiguous. A failure before it was written (dial, TLS) is not.
func (c *Client) call(ctx context.Context, api, path string, params url.Values, commits bool) (url.Values, error) {
	form := url.Values{}
	form.Set("loginName", c.opts.LoginName)
	form.Set("loginPassword", c.opts.LoginPassword.Reveal())
	for k, v := range params {
		form[k] = v
	}
	body := form.Encode()
	u := *c.base
	u.Path = strings.TrimSuffix(c.base.Path, "/") + path
	u.RawPath = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader([]byte(body)))
	if err != nil {
		return nil, fmt.Errorf("sectigo: %s: %w", api, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/x-www-form-urlencoded, text/plain")
	if c.opts.RateLimit != nil {
		if err := c.opts.RateLimit.Wait(ctx); err != nil {
			return nil, fmt.Errorf("sectigo: %s: waiting for the rate limit: %w", api, err)
		}
	}
	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		// From here on the request may have arrived.
		WroteHeaders: func() { wrote.Store(true) },
	}))
	start := time.Now()
	resp, err := c.http.Do(req)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	if c.opts.Observe != nil {
		c.opts.Observe(api, status, time.Since(start))
	}
	if err != nil {
		// url.Error carries the URL, never the form: no secret here.
		if wrote.Load() && commits {
			return nil, &httpError{API: api, Msg: "the answer was lost", Ambiguous: true, Err: err}
		}
		return nil, fmt.Errorf("sectigo: %s: %w", api, err)
	}
	defer resp.Body.Close()
	raw, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if resp.StatusCode != http.StatusOK {
		return nil, &httpError{API: api, Status: resp.StatusCode, Msg: snippet(raw), Ambiguous: commits}
	}
	if rerr != nil {
		return nil, &httpError{API: api, Status: resp.StatusCode, Msg: "reading the answer", Ambiguous: commits, Err: rerr}
	}
	vals, err := parseAnswer(raw)
	if err != nil {
		return nil, &httpError{API: api, Status: resp.StatusCode, Ambiguous: commits, Err: err}
	}
	code, _ := strconv.Atoi(vals.Get("errorCode"))
	if code < 0 {
		return nil, &APIError{API: api, Code: code, Message: vals.Get("errorMessage"), Param: namedParam(vals.Get("errorMessage"), form)}
	}
	return vals, nil
}

// parseAnswer reads an answer: URL-encoded parameters with an errorCode
// (responseFormat=1), or, for endpoints that ignore responseFormat, the
// newline-delimited form (status code, then the message on error).
func parseAnswer(raw []byte) (url.Values, error) {
	text := strings.TrimSpace(string(raw))
	if strings.HasPrefix(text, "errorCode=") || strings.Contains(text, "&errorCode=") {
		vals, err := url.ParseQuery(text)
		if err != nil {
			return nil, fmt.Errorf("the answer is not URL-encoded parameters: %w", err)
		}
		if _, err := strconv.Atoi(vals.Get("errorCode")); err != nil {
			return nil, fmt.Errorf("the answer's errorCode %q is not a number", vals.Get("errorCode"))
		}
		return vals, nil
	}
	first, rest, _ := strings.Cut(text, "\n")
	code, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return nil, fmt.Errorf("the answer is neither URL-encoded nor a status line: %s", snippet(raw))
	}
	vals := url.Values{"errorCode": {strconv.Itoa(code)}}
	if code < 0 {
		msg, _, _ := strings.Cut(rest, "\n")
		vals.Set("errorMessage", strings.TrimSpace(msg))
	} else {
		vals["line"] = strings.Split(strings.ReplaceAll(rest, "\r", ""), "\n")
	}
	return vals, nil
}

// namedParam is the parameter of the request that an error message names
// (the API says "The X argument is missing" and the like).
func namedParam(msg string, form url.Values) string {
	best := ""
	for k := range form {
		if k == "loginPassword" {
			continue
		}
		if containsWord(msg, k) && len(k) > len(best) {
			best = k
		}
	}
	if best != "" {
		return best
	}
	// A missing argument is not in the form: look for the API's own names.
	for _, k := range strings.Fields(knownParams) {
		if containsWord(msg, k) && len(k) > len(best) {
			best = k
		}
	}
	return best
}

// knownParams are the parameter names of the endpoints certd calls.
const knownParams = "loginName product days years serverSoftware csr isCustomerValidated domainNames primaryDomainName " +
	"dcvMethod dcvEmailAddress dcvEmailAddresses uniqueValue responseFormat showCertificateID test " +
	"orderNumber certificateID baseOrderNumber queryType responseType responseEncoding showExtStatus " +
	"domainName newMethod newDCVEmailAddress newMethods newDCVEmailAddresses exactOrder revocationReason codeReason serialNumber"

func containsWord(s, w string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		j += i
		before := j == 0 || !isWordByte(s[j-1])
		after := j+len(w) == len(s) || !isWordByte(s[j+len(w)])
		if before && after {
			return true
		}
		i = j + 1
	}
}

func isWordByte(b byte) bool {
	return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

// snippet quotes an answer in an error: one bounded line, and an HTML
// page (from a proxy in front of the API) by its title, never as markup.
func snippet(b []byte) string { return ca.Snippet(b, 200) }
