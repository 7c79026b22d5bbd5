package reseller

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/internal/ctxtime"
	"github.com/certd/certd/internal/ratelimit"
)

// caName is the CA field of every *ca.Error this package returns.
const caName = "reseller"

// ClientOptions configure a Client.
type ClientOptions struct {
	// URL is the API base ({{api_base_url}}); paths such as
	// /ssl-certificate are appended to it.
	URL string
	// Username and APIKey authenticate every request (HTTP Basic).
	Username, APIKey string
	// RootCAs verifies the API's TLS certificate (nil: the system roots).
	RootCAs *x509.CertPool
	// Transport, when set, replaces the HTTP transport (tests).
	Transport http.RoundTripper
	// Timeout bounds one HTTP exchange (default 60s).
	Timeout time.Duration
	// Retries bounds the automatic retries of one call (default 3). Only
	// what is safe is retried: a request that certainly did not arrive, a
	// 429, and a GET's 502/503/504.
	Retries int
	// MaxInlineWait is the longest Retry-After a call waits out itself
	// (default 5s); a longer one ends the call with the *ca.Error, so the
	// scheduler stores when to come back instead of holding a worker.
	MaxInlineWait time.Duration
	// Sleep waits between retries (default: a timer honouring ctx).
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *zap.Logger
	// RateLimit, when set, paces every request (the account's bucket).
	RateLimit *ratelimit.Bucket
	// Observe, when set, is told of every exchange: its route without ids
	// ("POST /ssl-certificate", "GET /ssl-certificate/{id}"), the HTTP
	// status (0: no answer) and how long it took.
	Observe func(route string, status int, d time.Duration)
}

// Client speaks the /ssl-certificate API of one reseller account. It is
// safe for concurrent use and holds no state between calls.
type Client struct {
	base *url.URL
	http *http.Client
	opts ClientOptions
	log  *zap.Logger
	// secrets are redacted from every text an answer puts in an error.
	secrets []string
}

// NewClient validates opts and returns a Client. Nothing is sent yet.
func NewClient(opts ClientOptions) (*Client, error) {
	base, err := url.Parse(strings.TrimSuffix(opts.URL, "/"))
	if err != nil || base.Host == "" || (base.Scheme != "https" && base.Scheme != "http") {
		return nil, errors.New("reseller: invalid API URL")
	}
	if base.User != nil {
		return nil, errors.New("reseller: the API URL must not carry credentials")
	}
	if opts.Username == "" || opts.APIKey == "" {
		return nil, errors.New("reseller: username and API key are required")
	}
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.Retries == 0 {
		opts.Retries = 3
	}
	if opts.MaxInlineWait == 0 {
		opts.MaxInlineWait = 5 * time.Second
	}
	if opts.Sleep == nil {
		opts.Sleep = ctxtime.Sleep
	}
	if opts.Now == nil {
		opts.Now = time.Now
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
	basic := base64.StdEncoding.EncodeToString([]byte(opts.Username + ":" + opts.APIKey))
	return &Client{
		base: base,
		// The API is not documented to redirect; following one would
		// resend the credentials elsewhere.
		http: &http.Client{Transport: tr, Timeout: opts.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		opts:    opts,
		log:     opts.Logger,
		secrets: []string{opts.APIKey, basic, url.QueryEscape(opts.APIKey)},
	}, nil
}

// pathOf is a request path, as is and escaped (an id is one segment
// whatever it holds).
type pathOf struct{ plain, escaped string }

// answer is a successful exchange, its body read (bounded).
type answer struct {
	status int
	header http.Header
	body   []byte
}

// maxBody bounds what is read of an answer (downloads included).
const maxBody = 8 << 20

// call does one API call with the retries that are safe. route is the
// endpoint's pattern ("POST /ssl-certificate/{id}/validate"); id fills
// {id}; query, when not nil, is the query string; in, when not nil, is
// sent as JSON. A 2xx comes back as an answer; everything else as a
// *ca.Error whose Op is op and the route.
//
// A GET is repeated freely. Anything else that may have reached the API
// (the request was written and then no answer, or a 5xx) is never
// repeated and comes back Ambiguous: the caller looks it up.
func (c *Client) call(ctx context.Context, op, route, id string, query url.Values, in any, accept string) (*answer, error) {
	method, pattern, _ := strings.Cut(route, " ")
	p := pathOf{plain: strings.Replace(pattern, "{id}", id, 1), escaped: strings.Replace(pattern, "{id}", url.PathEscape(id), 1)}
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return nil, &ca.Error{CA: caName, Op: opName(op, route), Detail: "encoding the request: " + err.Error(), Err: err}
		}
	}
	idempotent := method == http.MethodGet
	for attempt := 0; ; attempt++ {
		ans, wrote, err := c.send(ctx, method, route, p, query, body, accept)
		if err != nil {
			e := &ca.Error{CA: caName, Op: opName(op, route), Detail: c.redact(err.Error()), Err: redacted{c, err}}
			if wrote && !idempotent {
				// The request may have been acted on: look it up, never
				// send it again blind (even when ctx ended meanwhile).
				e.Ambiguous = true
				e.Detail = "no answer after the request was sent: " + e.Detail
				return nil, e
			}
			if ctx.Err() != nil || attempt >= c.opts.Retries {
				return nil, e
			}
			// Said as loudly as a retried 503: a CA that hangs for the
			// whole request timeout, or cuts its answers, is news.
			c.log.Warn("reseller: retrying", zap.String("call", route), zap.String("error", e.Detail), zap.Duration("retry_in", backoff(attempt)))
			if werr := c.opts.Sleep(ctx, backoff(attempt)); werr != nil {
				return nil, e
			}
			continue
		}
		if ans.status >= 200 && ans.status < 300 {
			return ans, nil
		}
		e := c.apiError(op, route, method, ans)
		retryable := ans.status == http.StatusTooManyRequests ||
			idempotent && (ans.status == http.StatusBadGateway || ans.status == http.StatusServiceUnavailable || ans.status == http.StatusGatewayTimeout)
		if !retryable || attempt >= c.opts.Retries {
			return nil, e
		}
		wait := backoff(attempt)
		if e.Retry > c.opts.MaxInlineWait {
			return nil, e // the caller stores when to come back
		}
		wait = max(wait, e.Retry)
		c.log.Warn("reseller: retrying", zap.String("call", route), zap.Int("status", ans.status), zap.Duration("retry_in", wait))
		if werr := c.opts.Sleep(ctx, wait); werr != nil {
			return nil, e
		}
	}
}

// send does one HTTP exchange. wrote reports whether the request's
// headers reached the connection: before that, a failure means the API
// certainly did not receive it.
func (c *Client) send(ctx context.Context, method, route string, p pathOf, query url.Values, body []byte, accept string) (*answer, bool, error) {
	u := *c.base
	u.Path = strings.TrimSuffix(c.base.Path, "/") + p.plain
	u.RawPath = strings.TrimSuffix(c.base.EscapedPath(), "/") + p.escaped
	if query != nil {
		u.RawQuery = query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, false, err
	}
	req.SetBasicAuth(c.opts.Username, c.opts.APIKey)
	if body != nil {
		// The seed's curl samples omit it (curl would send a form type);
		// a JSON body says so explicitly.
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	if c.opts.RateLimit != nil {
		if err := c.opts.RateLimit.Wait(ctx); err != nil {
			return nil, false, fmt.Errorf("waiting for the rate limit: %w", err)
		}
	}
	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { wrote.Store(true) }}))
	start := time.Now()
	resp, err := c.http.Do(req)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	if err != nil {
		c.observe(route, 0, start)
		return nil, wrote.Load(), err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	c.observe(route, status, start)
	if err != nil {
		return nil, true, fmt.Errorf("reading the answer (HTTP %d): %w", status, err)
	}
	if len(b) > maxBody {
		return nil, true, fmt.Errorf("the answer (HTTP %d) exceeds %d bytes", status, maxBody)
	}
	return &answer{status: status, header: resp.Header, body: b}, true, nil
}

func (c *Client) observe(route string, status int, start time.Time) {
	if c.opts.Observe != nil {
		c.opts.Observe(route, status, time.Since(start))
	}
}

func opName(op, route string) string {
	if op == "" {
		return route
	}
	return op + " (" + route + ")"
}

// backoff is 1s, 2s, 4s, ... with ±20% jitter, capped at 30s.
func backoff(attempt int) time.Duration {
	d := min(time.Second<<attempt, 30*time.Second)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// redact removes the account's credentials from s.
func (c *Client) redact(s string) string {
	for _, sec := range c.secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	return s
}

// redacted is an underlying error whose text is redacted, so that no
// printer of the chain shows a credential.
type redacted struct {
	c   *Client
	err error
}

func (r redacted) Error() string { return r.c.redact(r.err.Error()) }
func (r redacted) Unwrap() error { return r.err }

// apiError maps a non-2xx answer onto the typed ca.Error:
//
//   - 401, 403: the credentials were refused (Permanent);
//   - 402, or a message about funds or balance: the account cannot pay
//     (Permanent, Code "quota");
//   - 400, 422: the request was refused as invalid (Permanent), naming the
//     fields the answer names;
//   - 404: no such object (Permanent: a person must look);
//   - 429, 503: Retry-After in Retry;
//   - 5xx to anything but a GET: Ambiguous (it may have been committed).
func (c *Client) apiError(op, route, method string, ans *answer) *ca.Error {
	e := &ca.Error{CA: caName, Op: opName(op, route), Status: ans.status}
	msg, code, fields := parseErrorBody(ans.body)
	e.Code = c.redact(truncate(code, 80))
	parts := []string{}
	if msg != "" {
		parts = append(parts, msg)
	}
	for _, f := range fields {
		parts = append(parts, f.field+": "+f.msg)
	}
	if len(parts) == 0 {
		parts = append(parts, http.StatusText(ans.status))
	}
	e.Detail = c.redact(truncate(strings.Join(parts, "; "), 600))
	e.Retry = ca.ParseRetryAfter(ans.header.Get("Retry-After"), c.opts.Now())
	switch {
	case ans.status == http.StatusUnauthorized || ans.status == http.StatusForbidden:
		e.Permanent = true
		e.Detail += " (the account's username or API key was refused)"
	case ans.status == http.StatusPaymentRequired || ans.status < 500 && mentionsFunds(e.Detail+" "+code):
		e.Permanent, e.Code = true, "quota"
		e.Detail += " (the account's balance cannot pay for the order)"
	case ans.status == http.StatusBadRequest || ans.status == http.StatusUnprocessableEntity:
		e.Permanent = true
		if e.Code == "" && len(fields) > 0 {
			e.Code = "invalid:" + fields[0].field
		}
	case ans.status == http.StatusNotFound:
		e.Permanent = true
	case ans.status >= 500 && method != http.MethodGet:
		e.Ambiguous = true
		e.Detail = "the API failed after receiving the request (it may have acted on it): " + e.Detail
	}
	return e
}

func mentionsFunds(s string) bool {
	s = strings.ToLower(s)
	for _, w := range []string{"insufficient", "balance", "funds", "credit"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

type fieldError struct{ field, msg string }

// messageKeys hold an error's text; codeKeys its code. Any other key whose
// value is text is a field's error (Django REST Framework's shape).
var (
	messageKeys = []string{"detail", "message", "error", "error_message", "error_description", "description", "title", "non_field_errors", "reason"}
	codeKeys    = []string{"code", "error_code", "errorCode", "type"}
)

// parseErrorBody reads an error answer whatever its shape: DRF's
// {"detail": "..."} or {"field": ["..."]}, {"message", "code", "errors":
// {field: msg}} or [{field, message}], a bare string or list, or text.
func parseErrorBody(b []byte) (msg, code string, fields []fieldError) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "", "", nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return ca.Snippet(b, 200), "", nil // an HTML page by its title, never as markup
	}
	var msgs []string
	switch t := v.(type) {
	case map[string]any:
		for _, k := range messageKeys {
			if s := texts(t[k]); s != "" {
				msgs = append(msgs, s)
			}
			if m, ok := t[k].(map[string]any); ok { // {"error": {"message", "code"}}
				im, ic, ifs := parseErrorMap(m)
				if im != "" {
					msgs = append(msgs, im)
				}
				if code == "" {
					code = ic
				}
				fields = append(fields, ifs...)
			}
		}
		for _, k := range codeKeys {
			if s := scalar(t[k]); s != "" && code == "" {
				code = s
			}
		}
		fields = append(fields, errorFields(t)...)
	default:
		if s := texts(v); s != "" {
			msgs = append(msgs, s)
		}
	}
	return oneLine(strings.Join(msgs, "; ")), code, fields
}

func parseErrorMap(m map[string]any) (string, string, []fieldError) {
	b, _ := json.Marshal(m)
	return parseErrorBody(b)
}

// errorFields are the per-field errors of t: under "errors"/"fields", or
// as DRF puts them, at the top level.
func errorFields(t map[string]any) []fieldError {
	var out []fieldError
	add := func(field string, v any) {
		if s := texts(v); s != "" {
			out = append(out, fieldError{field, oneLine(s)})
		}
	}
	for _, k := range []string{"errors", "fields", "field_errors", "validation_errors"} {
		switch e := t[k].(type) {
		case map[string]any:
			for _, f := range sortedKeys(e) {
				add(f, e[f])
			}
		case []any:
			for _, item := range e {
				if m, ok := item.(map[string]any); ok {
					f := scalar(m["field"])
					if f == "" {
						f = scalar(m["name"])
					}
					msg := texts(m["message"])
					if msg == "" {
						msg = texts(m["detail"])
					}
					if f != "" {
						out = append(out, fieldError{f, oneLine(msg)})
					}
				}
			}
		}
	}
	skip := map[string]bool{"errors": true, "fields": true, "field_errors": true, "validation_errors": true, "status": true, "status_code": true}
	for _, k := range append(append([]string{}, messageKeys...), codeKeys...) {
		skip[k] = true
	}
	for _, k := range sortedKeys(t) {
		if !skip[k] {
			switch t[k].(type) {
			case string, []any:
				add(k, t[k])
			}
		}
	}
	return out
}

// texts is v as text: a string, or a list of strings joined.
func texts(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case []any:
		var parts []string
		for _, x := range t {
			if s, ok := x.(string); ok && s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, " ")
	}
	return ""
}

// scalar is a string or number as text.
func scalar(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case json.Number:
		return t.String()
	}
	return ""
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
