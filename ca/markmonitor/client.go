package markmonitor

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/config"
	"github.com/certd/certd/internal/ratelimit"
)

const maxBodyBytes = 4 << 20

// ClientOptions configure a Client.
type ClientOptions struct {
	// URL is the cert service base (default DefaultURL) and AuthURL the
	// authentication service base (default DefaultAuthURL).
	URL, AuthURL string
	// APIKey is sent as x-api-key on every call; Username and Password
	// log in. Secrets are never logged nor put in an error.
	APIKey   config.SecretValue
	Username string
	Password config.SecretValue
	// RootCAs verifies the API's TLS certificate (nil: the system roots).
	RootCAs *x509.CertPool
	// Timeout bounds one exchange (default 60s).
	Timeout time.Duration
	// TokenLifetime is the JWT's lifetime when the token does not say
	// (its exp claim): default DefaultTokenLifetime (90 minutes).
	TokenLifetime time.Duration
	// RefreshBefore: a JWT with less than this left is refreshed before
	// it is used (default DefaultRefreshBefore).
	RefreshBefore time.Duration
	// RequestsPerMinute is the account's limit (default 100): at most
	// this many requests are sent in any RateWindow+RateMargin.
	RequestsPerMinute int
	// RateWindow is the limit's period (default one minute; tests
	// shorten it) and RateMargin what is added to it for the spread of
	// network delays (default 2s).
	RateWindow, RateMargin time.Duration
	// RateLimitRetry is the Retry-After of a 429 that carries none
	// (default DefaultRateLimitRetry).
	RateLimitRetry time.Duration
	// RateLimit, when set, also paces every request (the account's
	// rate_limit setting).
	RateLimit *ratelimit.Bucket
	// JSONNames renames JSON keys on the wire (certd's name -> the API's),
	// both ways, for bodies sent and answers read.
	JSONNames map[string]string
	// QueryNames renames query parameters (certd's name -> the API's).
	QueryNames map[string]string
	// PageSize is the size of listing pages (default 50); FirstPage the
	// number of the first page (0, default, or 1); MaxPages bounds a
	// listing (default 40).
	PageSize, FirstPage, MaxPages int
	Logger                        *zap.Logger
	// Observe, when set, is told of every exchange: a route without ids
	// ("POST /order", "GET /order/{id}"), the HTTP status (0: no answer)
	// and how long it took.
	Observe func(route string, status int, d time.Duration)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Transport replaces the HTTP transport (tests); RootCAs is then
	// ignored.
	Transport http.RoundTripper
}

// Client speaks the Markmonitor SSL Certs API for one account: JSON over
// HTTPS with x-api-key and a bearer JWT on every call. It is safe for
// concurrent use. Logins are serialised; the JWT is refreshed before it
// runs out and a new one is obtained after a 401 (the refused request is
// then sent once more: a 401 commits nothing). Every request, logins
// included, waits for the account's request limit first. Nothing else is
// retried: every failure goes back to the caller as a *ca.Error.
type Client struct {
	base, auth *url.URL
	http       *http.Client
	opts       ClientOptions
	log        *zap.Logger
	limit      *window
	unnames    map[string]string // the API's JSON names -> certd's

	// login is held by the one caller logging in or refreshing.
	login chan struct{}
	mu    sync.Mutex
	jwt   string
	exp   time.Time
	// gen counts login and refresh attempts; lastErr is the last one's
	// failure, shared with callers that waited for it.
	gen     uint64
	lastErr error
	// holdOff: no refresh is tried before then (one just failed).
	holdOff time.Time
}

// NewClient validates opts and returns a Client. Nothing is sent.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.URL == "" {
		opts.URL = DefaultURL
	}
	if opts.AuthURL == "" {
		opts.AuthURL = DefaultAuthURL
	}
	base, err := parseBase(opts.URL)
	if err != nil {
		return nil, err
	}
	auth, err := parseBase(opts.AuthURL)
	if err != nil {
		return nil, err
	}
	if opts.APIKey.Reveal() == "" || opts.Username == "" || opts.Password.Reveal() == "" {
		return nil, errors.New("markmonitor: the API key, username and password are required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = DefaultTokenLifetime
	}
	if opts.RefreshBefore <= 0 {
		opts.RefreshBefore = DefaultRefreshBefore
	}
	if opts.RefreshBefore >= opts.TokenLifetime {
		return nil, fmt.Errorf("markmonitor: refresh_before %s must be shorter than the token lifetime %s", opts.RefreshBefore, opts.TokenLifetime)
	}
	if opts.RequestsPerMinute <= 0 {
		opts.RequestsPerMinute = DefaultRequestsPerMinute
	}
	if opts.RateWindow <= 0 {
		opts.RateWindow = time.Minute
	}
	if opts.RateMargin < 0 {
		opts.RateMargin = 0
	} else if opts.RateMargin == 0 {
		opts.RateMargin = 2 * time.Second
	}
	if opts.RateLimitRetry <= 0 {
		opts.RateLimitRetry = DefaultRateLimitRetry
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 50
	}
	if opts.FirstPage != 0 && opts.FirstPage != 1 {
		return nil, fmt.Errorf("markmonitor: the first page is 0 or 1, not %d", opts.FirstPage)
	}
	if opts.MaxPages <= 0 {
		opts.MaxPages = 40
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	unnames := map[string]string{}
	for k, v := range opts.JSONNames {
		if k == "" || v == "" {
			return nil, fmt.Errorf("markmonitor: json_names: empty name in %q: %q", k, v)
		}
		if prev, dup := unnames[v]; dup {
			return nil, fmt.Errorf("markmonitor: json_names: %s and %s are both sent as %s", prev, k, v)
		}
		unnames[v] = k
	}
	tr := opts.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12}
		t.MaxIdleConnsPerHost = 8
		tr = t
	}
	return &Client{
		base: base, auth: auth,
		// The API never redirects; a redirect is an answer to report, not a hop.
		http: &http.Client{Transport: tr, Timeout: opts.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		opts:    opts,
		log:     opts.Logger,
		limit:   newWindow(opts.RequestsPerMinute, opts.RateWindow+opts.RateMargin, opts.Now),
		unnames: unnames,
		login:   make(chan struct{}, 1),
	}, nil
}

func parseBase(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" {
		return nil, fmt.Errorf("markmonitor: invalid base URL %q", s)
	}
	return u, nil
}

// request is one exchange.
type request struct {
	// route names the endpoint without ids, for metrics and errors.
	route  string
	method string
	// auth: the path is under the authentication service.
	auth  bool
	path  string
	query url.Values
	body  any
	// accept is the Accept header (default application/json).
	accept string
	// bearer: send the JWT (every cert call; the refresh call sends its
	// own token).
	bearer bool
	token  string
	// commits: the call may commit something (an order, an action), so a
	// lost answer is ambiguous.
	commits bool
}

// response is an answer with a 2xx status.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends r with a valid JWT; a 401 makes the client log in again and
// send r once more.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	for attempt := 0; ; attempt++ {
		if r.bearer {
			tok, err := c.token(ctx)
			if err != nil {
				return nil, err
			}
			r.token = tok
		}
		resp, err := c.send(ctx, r)
		if err != nil {
			return nil, err
		}
		if resp.status >= 200 && resp.status < 300 {
			return resp, nil
		}
		if resp.status == http.StatusUnauthorized && r.bearer && attempt == 0 {
			// The token was refused (expired early, revoked): a 401 commits
			// nothing, so the request is sent again with a new one.
			c.log.Info("markmonitor: the JWT was refused; logging in again", zap.String("route", r.route))
			c.drop(r.token)
			continue
		}
		return nil, c.statusError(r, resp)
	}
}

// send makes one exchange. A failure to get an answer is a *ca.Error,
// ambiguous when the request was written and r commits.
func (c *Client) send(ctx context.Context, r request) (*response, error) {
	base := c.base
	if r.auth {
		base = c.auth
	}
	u := *base
	u.Path = strings.TrimSuffix(base.Path, "/") + r.path
	u.RawPath = ""
	if len(r.query) > 0 {
		q := url.Values{}
		for k, v := range r.query {
			if n, ok := c.opts.QueryNames[k]; ok {
				k = n
			}
			q[k] = v
		}
		u.RawQuery = q.Encode()
	}
	var body io.Reader
	if r.body != nil {
		raw, err := json.Marshal(r.body)
		if err == nil {
			raw, err = recode(raw, c.opts.JSONNames)
		}
		if err != nil {
			return nil, c.failure(r, 0, "encoding the request", false, err)
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, c.failure(r, 0, "building the request", false, err)
	}
	req.Header.Set("x-api-key", c.opts.APIKey.Reveal())
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	accept := r.accept
	if accept == "" {
		accept = "application/json"
	}
	req.Header.Set("Accept", accept)
	if err := c.wait(ctx); err != nil {
		return nil, c.failure(r, 0, "waiting for the account's request limit", false, err)
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
		c.opts.Observe(r.route, status, time.Since(start))
	}
	if err != nil {
		// url.Error carries the URL (ids and names, no secret).
		if wrote.Load() && r.commits {
			return nil, c.failure(r, 0, "the answer was lost after the request was sent: Markmonitor may have acted on it", true, err)
		}
		return nil, c.failure(r, 0, "no answer", false, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if err != nil {
		return nil, c.failure(r, resp.StatusCode, "reading the answer", r.commits, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 && len(c.unnames) > 0 && isJSON(resp.Header) {
		if raw, err = recode(raw, c.unnames); err != nil {
			return nil, c.failure(r, resp.StatusCode, "the answer is not JSON", r.commits, err)
		}
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: raw}, nil
}

func isJSON(h http.Header) bool {
	ct := strings.ToLower(h.Get("Content-Type"))
	return ct == "" || strings.Contains(ct, "json")
}

// wait takes a slot of the account's limit (and of the configured rate
// limit, if any).
func (c *Client) wait(ctx context.Context) error {
	if c.opts.RateLimit != nil {
		if err := c.opts.RateLimit.Wait(ctx); err != nil {
			return err
		}
	}
	return c.limit.Wait(ctx)
}

// decode reads a JSON answer into v.
func (c *Client) decode(r request, resp *response, v any) error {
	if err := json.Unmarshal(resp.body, v); err != nil {
		return c.failure(r, resp.status, "the answer is not what certd expects: "+snippet(resp.body), r.commits, err)
	}
	return nil
}
