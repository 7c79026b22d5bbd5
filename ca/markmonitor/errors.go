package markmonitor

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/certd/certd/ca"
)

// caName is the CA of every *ca.Error this package returns.
const caName = "markmonitor"

// statusCode is the guide's name (§8.6) of an HTTP status, used as
// ca.Error.Code when the answer carries no code of its own.
func statusCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "BAD_REQUEST"
	case http.StatusUnauthorized:
		return "UNAUTHORIZED"
	case http.StatusForbidden:
		return "FORBIDDEN"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusConflict:
		return "CONFLICT"
	case http.StatusTooManyRequests:
		return "TOO_MANY_REQUESTS"
	case http.StatusInternalServerError:
		return "INTERNAL_SERVER_ERROR"
	case http.StatusBadGateway:
		return "BAD_GATEWAY"
	case http.StatusServiceUnavailable:
		return "SERVICE_UNAVAILABLE"
	case http.StatusGatewayTimeout:
		return "GATEWAY_TIMEOUT"
	}
	return ""
}

// statusError maps an answer that is not a success to the one typed CA
// error:
//
//	400                      Permanent: the request must change
//	401 (after a new login)  Permanent: the credentials are refused
//	403                      Permanent: the API key is refused, or the account may not do this
//	404                      Permanent: no such entity (a wrong reference)
//	409                      the entity's state does not allow it now; retried later
//	429                      Retry = Retry-After (RateLimitRetry when absent)
//	5xx                      retried later; Ambiguous for a call that commits
//	other                    retried later; Ambiguous for a call that commits
func (c *Client) statusError(r request, resp *response) error {
	code, msg := errorBody(resp.body)
	if code == "" {
		code = statusCode(resp.status)
	}
	e := &ca.Error{CA: caName, Op: r.route, Status: resp.status, Code: c.redact(code), Detail: c.redact(msg)}
	if e.Detail == "" {
		e.Detail = http.StatusText(resp.status)
	}
	e.Retry = retryAfter(resp.header.Get("Retry-After"), c.opts.Now())
	switch s := resp.status; {
	case s == http.StatusBadRequest:
		e.Permanent = true
	case s == http.StatusUnauthorized:
		e.Permanent = true
		if r.auth {
			e.Detail += " (the username, password or token was refused)"
		} else {
			e.Detail += " (refused again after a new login)"
		}
	case s == http.StatusForbidden:
		e.Permanent = true
		e.Detail += " (the API key was refused, or the account may not do this)"
	case s == http.StatusNotFound:
		e.Permanent = true
	case s == http.StatusConflict:
	case s == http.StatusTooManyRequests:
		if e.Retry <= 0 {
			e.Retry = c.opts.RateLimitRetry
		}
	default:
		e.Ambiguous = r.commits
		if e.Ambiguous {
			e.Detail += " (the request was sent: Markmonitor may have acted on it)"
		}
	}
	return e
}

// failure is a *ca.Error for an exchange without a usable answer.
func (c *Client) failure(r request, status int, what string, ambiguous bool, err error) error {
	detail := what
	if err != nil {
		detail += ": " + err.Error()
	}
	var wrapped error
	if err != nil {
		wrapped = redacted{err, c}
	}
	return &ca.Error{CA: caName, Op: r.route, Status: status, Detail: c.redact(detail), Ambiguous: ambiguous, Err: wrapped}
}

// redacted wraps a transport's error so that its text (which the
// scheduler stores and logs) is redacted too, while errors.Is and As
// still see it.
type redacted struct {
	err error
	c   *Client
}

func (r redacted) Error() string { return r.c.redact(r.err.Error()) }
func (r redacted) Unwrap() error { return r.err }

// jwtPattern matches a JWT (three base64url parts, the first a JSON
// header).
var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)

// redact removes the API key, the password and any JWT from text a CA or
// a transport produced.
func (c *Client) redact(s string) string {
	for _, secret := range []string{c.opts.APIKey.Reveal(), c.opts.Password.Reveal()} {
		if len(secret) >= 4 {
			s = strings.ReplaceAll(s, secret, "[REDACTED]")
		}
	}
	return jwtPattern.ReplaceAllString(s, "[REDACTED JWT]")
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	return ca.ParseRetryAfter(v, now)
}

// within names the step a client error happened in: "submit (POST
// /order)".
func within(op string, err error) error {
	if ce, ok := ca.AsError(err); ok && !strings.HasPrefix(ce.Op, op+" (") {
		ce.Op = op + " (" + ce.Op + ")"
	}
	return err
}

// planError is a request the account cannot place as configured: a
// person must change the configuration or the request.
func planError(op string, err error) error {
	return &ca.Error{CA: caName, Op: op, Detail: err.Error(), Permanent: true, Err: err}
}

// pendingError is "not yet": ca.ErrPending with detail and a Retry-After.
func pendingError(op, detail string, retry time.Duration) error {
	return &ca.Error{CA: caName, Op: op, Detail: detail, Retry: retry, Err: ca.ErrPending}
}

// rejectedError is "never": ca.ErrRejected, Permanent.
func rejectedError(ref, detail string) error {
	return &ca.Error{CA: caName, Op: "fetch", Detail: fmt.Sprintf("order %s: %s", ref, detail), Permanent: true, Err: ca.ErrRejected}
}
