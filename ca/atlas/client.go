package atlas

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/internal/ratelimit"

	"github.com/certd/certd/internal/ctxtime"
)

// tokenRefresh is when a token is replaced before its 10-minute life ends,
// as GlobalSign's own SDK does.
const tokenRefresh = 9 * time.Minute

// ClientOptions configure a Client.
type ClientOptions struct {
	// URL is the API base, ending in the version ("https://…:8443/v2").
	URL string
	// APIKey and APISecret log in.
	APIKey, APISecret string
	// Certificate is the mTLS client certificate with its key.
	Certificate tls.Certificate
	// RootCAs verifies the API's TLS certificate (nil: the system roots).
	RootCAs *x509.CertPool
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Sleep waits between retries (default: a timer honouring ctx); tests
	// replace it to run without waiting.
	Sleep func(ctx context.Context, d time.Duration) error
	// Retries bounds automatic retries of one call (default 4).
	Retries int
	// MaxInlineWait is the longest Retry-After a call waits out itself
	// (default 5s); a longer one ends the call with the *Error, so the
	// scheduler stores the next attempt instead of holding a worker.
	MaxInlineWait time.Duration
	// Timeout bounds one HTTP exchange (default 60s).
	Timeout time.Duration
	Logger  *zap.Logger
	// RateLimit, when set, paces every request (the account's token
	// bucket).
	RateLimit *ratelimit.Bucket
	// Observe, when set, is told of every exchange: its endpoint as a
	// route ("POST /certificates", "GET /claims/domains/{id}"), the HTTP
	// status (0 when there was no answer) and how long it took.
	Observe func(endpoint string, status int, d time.Duration)
}

// Client speaks the HVCA v2 API of one Atlas account. It is safe for
// concurrent use: logins are serialised and the token shared.
type Client struct {
	base  *url.URL
	http  *http.Client
	opts  ClientOptions
	log   *zap.Logger
	login sync.Mutex // serialises logins

	mu       sync.Mutex // guards token, tokenAt, policy, policyAt
	token    string
	tokenAt  time.Time
	policy   *Policy
	policyAt time.Time
}

// NewClient validates opts and returns a Client. Nothing is sent yet.
func NewClient(opts ClientOptions) (*Client, error) {
	base, err := url.Parse(strings.TrimSuffix(opts.URL, "/"))
	if err != nil || base.Host == "" {
		return nil, fmt.Errorf("atlas: invalid URL %q", opts.URL)
	}
	if opts.APIKey == "" || opts.APISecret == "" {
		return nil, errors.New("atlas: API key and secret are required")
	}
	if len(opts.Certificate.Certificate) == 0 {
		return nil, errors.New("atlas: an mTLS client certificate is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleepCtx
	}
	if opts.Retries == 0 {
		opts.Retries = 4
	}
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.MaxInlineWait == 0 {
		opts.MaxInlineWait = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			Certificates: []tls.Certificate{opts.Certificate},
			RootCAs:      opts.RootCAs,
			MinVersion:   tls.VersionTLS12,
		},
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{
		base: base,
		// HVCA never redirects; a redirect is an error, not a hop.
		http: &http.Client{Transport: tr, Timeout: opts.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		opts: opts,
		log:  opts.Logger,
	}, nil
}

// NewFromConfig builds a Client from an account block, resolving its
// secrets and reading its certificate files. caFile, when not empty, is a
// PEM bundle of roots for the API's TLS certificate (the simulator's).
func NewFromConfig(c *Config, log *zap.Logger, mods ...func(*ClientOptions)) (*Client, error) {
	key, err := c.APIKey.Resolve()
	if err != nil {
		return nil, fmt.Errorf("atlas: %w", err)
	}
	secret, err := c.APISecret.Resolve()
	if err != nil {
		return nil, fmt.Errorf("atlas: %w", err)
	}
	certPEM, err := os.ReadFile(c.ClientCert)
	if err != nil {
		return nil, fmt.Errorf("atlas: client certificate: %w", err)
	}
	keyPEM, err := c.ClientKey.Resolve()
	if err != nil {
		return nil, fmt.Errorf("atlas: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, []byte(keyPEM.Reveal()))
	if err != nil {
		return nil, fmt.Errorf("atlas: client certificate and key: %w", err)
	}
	var roots *x509.CertPool
	if c.CA != "" {
		pemData, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("atlas: ca: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("atlas: ca %s holds no PEM certificate", c.CA)
		}
	}
	opts := ClientOptions{URL: c.URL, APIKey: key.Reveal(), APISecret: secret.Reveal(), Certificate: pair, RootCAs: roots, Logger: log}
	for _, m := range mods {
		m(&opts)
	}
	return NewClient(opts)
}

func sleepCtx(ctx context.Context, d time.Duration) error { return ctxtime.Sleep(ctx, d) }

// Login gets a new bearer token. Concurrent callers share one login.
func (c *Client) Login(ctx context.Context) error {
	c.mu.Lock()
	before := c.tokenAt
	c.mu.Unlock()
	return c.relogin(ctx, before)
}

// relogin logs in unless another caller already did since stale.
func (c *Client) relogin(ctx context.Context, stale time.Time) error {
	c.login.Lock()
	defer c.login.Unlock()
	c.mu.Lock()
	fresh := c.token != "" && c.tokenAt.After(stale)
	c.mu.Unlock()
	if fresh {
		return nil
	}
	body, _ := json.Marshal(map[string]string{"api_key": c.opts.APIKey, "api_secret": c.opts.APISecret})
	at := c.opts.Now()
	resp, err := c.send(ctx, http.MethodPost, "/login", body, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c.apiError(resp, http.MethodPost, "/login")
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil || out.AccessToken == "" {
		return fmt.Errorf("atlas: POST /login: no access_token in the answer")
	}
	c.mu.Lock()
	c.token, c.tokenAt = out.AccessToken, at
	c.mu.Unlock()
	c.log.Debug("atlas: logged in")
	return nil
}

// currentToken returns a token younger than tokenRefresh, logging in when
// needed.
func (c *Client) currentToken(ctx context.Context) (string, time.Time, error) {
	c.mu.Lock()
	tok, at := c.token, c.tokenAt
	c.mu.Unlock()
	if tok != "" && c.opts.Now().Sub(at) < tokenRefresh {
		return tok, at, nil
	}
	if err := c.relogin(ctx, at); err != nil {
		return "", time.Time{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token, c.tokenAt, nil
}

// send does one HTTP exchange. A failure before the request could be
// written (dial, TLS) is returned as is; any later one wraps ErrAmbiguous.
func (c *Client) send(ctx context.Context, method, p string, body []byte, token string) (*http.Response, error) {
	u := *c.base
	rel, err := url.Parse(p)
	if err != nil {
		return nil, fmt.Errorf("atlas: bad path %q: %w", p, err)
	}
	u.Path = path.Join(c.base.Path, rel.Path)
	u.RawPath = ""
	if rel.RawPath != "" {
		u.RawPath = strings.TrimSuffix(c.base.EscapedPath(), "/") + rel.RawPath
	}
	u.RawQuery = rel.RawQuery
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body) // a bytes.Reader gives Content-Length, which HVCA requires
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("atlas: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json;charset=utf-8")
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if c.opts.RateLimit != nil {
		if err := c.opts.RateLimit.Wait(ctx); err != nil {
			return nil, fmt.Errorf("atlas: %s %s: waiting for the rate limit: %w", method, rel.Path, err)
		}
	}
	var wrote atomic.Bool
	req = req.WithContext(withWroteTrace(ctx, &wrote))
	start := time.Now()
	resp, err := c.http.Do(req)
	if c.opts.Observe != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		c.opts.Observe(method+" "+route(method, rel.Path), code, time.Since(start))
	}
	if err != nil {
		if wrote.Load() && ctx.Err() == nil {
			return nil, fmt.Errorf("%w: %s %s: %v", ErrAmbiguous, method, rel.Path, err)
		}
		return nil, fmt.Errorf("atlas: %s %s: %w", method, rel.Path, err)
	}
	return resp, nil
}

// call is one API call with authentication and the retries that are safe:
// a 401 logs in again once; a 429 waits for its Retry-After; a 503 (or a
// connection failure before the request was written) is retried only for
// idempotent calls. It returns the response for the caller to read.
func (c *Client) call(ctx context.Context, method, p string, in any, idempotent bool) (*http.Response, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return nil, fmt.Errorf("atlas: encoding %s %s: %w", method, p, err)
		}
	}
	reloggedIn := false
	for attempt := 0; ; attempt++ {
		tok, at, err := c.currentToken(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := c.send(ctx, method, p, body, tok)
		if err != nil {
			if errors.Is(err, ErrAmbiguous) || !idempotent || attempt >= c.opts.Retries || ctx.Err() != nil {
				return nil, err
			}
			if werr := c.opts.Sleep(ctx, backoff(attempt)); werr != nil {
				return nil, err
			}
			continue
		}
		switch {
		case resp.StatusCode == http.StatusUnauthorized && !reloggedIn:
			drain(resp)
			reloggedIn = true
			c.mu.Lock()
			if c.tokenAt.Equal(at) {
				c.token = "" // stale: make the next currentToken log in
			}
			c.mu.Unlock()
			if err := c.relogin(ctx, at); err != nil {
				return nil, err
			}
			continue
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable && idempotent:
			apiErr := c.apiError(resp, method, p)
			if attempt >= c.opts.Retries {
				return nil, apiErr
			}
			wait := backoff(attempt)
			var e *Error
			if errors.As(apiErr, &e) && e.Retry > wait {
				if e.Retry > c.opts.MaxInlineWait {
					return nil, apiErr // the caller stores when to come back
				}
				wait = e.Retry
			}
			c.log.Warn("atlas: retrying", zap.String("call", method+" "+p), zap.Int("status", resp.StatusCode), zap.Duration("retry_in", wait))
			if err := c.opts.Sleep(ctx, wait); err != nil {
				return nil, apiErr
			}
			continue
		}
		return resp, nil
	}
}

// backoff is 1s, 2s, 4s, ... with ±20% jitter, capped at 30s.
func backoff(attempt int) time.Duration {
	d := min(time.Second<<attempt, 30*time.Second)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
}

// apiError reads an error answer into an *Error and closes the body.
func (c *Client) apiError(resp *http.Response, method, p string) error {
	defer drain(resp)
	e := &Error{Method: method, Path: stripQuery(p), Status: resp.StatusCode}
	var body struct {
		Description string            `json:"description"`
		ID          string            `json:"id"`
		Errors      map[string]string `json:"errors"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err == nil {
		e.Description, e.ID, e.Errors = body.Description, body.ID, body.Errors
	}
	e.Retry = ca.ParseRetryAfter(resp.Header.Get("Retry-After"), c.opts.Now())
	if e.Status == http.StatusPaymentRequired {
		return fmt.Errorf("%w: %w", ErrQuota, e)
	}
	return e
}

func stripQuery(p string) string {
	q, _, _ := strings.Cut(p, "?")
	return q
}

// getJSON is a GET that expects 200 and decodes its body into out.
func (c *Client) getJSON(ctx context.Context, p string, out any) (*http.Response, error) {
	resp, err := c.call(ctx, http.MethodGet, p, nil, true)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, c.apiError(resp, http.MethodGet, p)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
		return nil, fmt.Errorf("atlas: GET %s: decoding the answer: %w", stripQuery(p), err)
	}
	return resp, nil
}

// getAll walks every page of a listing (Total-Count, Links) into out.
func getAll[T any](ctx context.Context, c *Client, p string, q url.Values) ([]T, error) {
	var all []T
	for page := 1; ; page++ {
		q.Set("page", strconv.Itoa(page))
		q.Set("per_page", "100")
		var items []T
		resp, err := c.getJSON(ctx, p+"?"+q.Encode(), &items)
		if err != nil {
			return nil, err
		}
		total, err := strconv.Atoi(resp.Header.Get("Total-Count"))
		if err != nil {
			return nil, fmt.Errorf("atlas: GET %s: missing or bad Total-Count header", p)
		}
		all = append(all, items...)
		// Links separators vary; "next" anywhere means there is more.
		if len(items) == 0 || len(all) >= total || !strings.Contains(resp.Header.Get("Links"), `"next"`) && !strings.Contains(resp.Header.Get("Links"), "rel=next") {
			return all, nil
		}
		if page > 10000 {
			return nil, fmt.Errorf("atlas: GET %s: more than 10000 pages", p)
		}
	}
}

// route names an API path without its ids, for metrics.
func route(method, p string) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "certificates":
		parts[1] = "{serial}"
	case len(parts) >= 3 && parts[0] == "claims" && parts[1] == "domains":
		if len(parts) == 3 && method == http.MethodPost {
			parts[2] = "{domain}"
		} else {
			parts[2] = "{id}"
		}
	}
	return "/" + strings.Join(parts, "/")
}
