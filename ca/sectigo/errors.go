package sectigo

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/certd/certd/ca"
)

// The errorCode values of the Auto* API that certd treats specially
// (reference §1.1; the AutoApplyOrder table is shared by the family).
const (
	CodeOverHTTP        = -1   // the request was made over HTTP
	CodeUnknownArgument = -2   // an unrecognised argument
	CodeMissingArgument = -3   // an argument is missing
	CodeInvalidArgument = -4   // an argument's value is invalid
	CodePermission      = -16  // permission denied: credentials, or the account is not enabled for the API
	CodeGET             = -17  // a GET instead of a POST
	CodeRefunded        = -18  // the order has already been refunded
	CodeCancelled       = -20  // the order has already been cancelled
	CodeCallLimit       = -42  // call limit reached, try again later
	CodeNoPrice         = -115 // no price for the product and days
)

// APIError is an answer of the Auto* API with a negative errorCode.
type APIError struct {
	// API is the endpoint ("AutoApplySSL").
	API string
	// Code is the errorCode; Message the errorMessage.
	Code    int
	Message string
	// Param is the request parameter the message names (-2, -3, -4), when
	// one of those sent (or required) appears in it.
	Param string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("sectigo: %s: error %d", e.API, e.Code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Param != "" {
		s += " (parameter " + e.Param + ")"
	}
	return s
}

// ErrAmbiguous: the request was written and its answer lost (or was not
// an answer of the API): Sectigo may have acted on it.
var ErrAmbiguous = errors.New("sectigo: outcome unknown")

// classify makes the one typed ca.Error of a client error. Op names the
// step ("submit"). The secret, if it was echoed, is redacted.
func (c *Client) classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := ca.AsError(err); ok {
		return err
	}
	ce := &ca.Error{CA: "sectigo", Op: op, Err: err}
	var ae *APIError
	var he *httpError
	switch {
	case errors.As(err, &ae):
		ce.Op = opName(op, ae.API)
		ce.Code, ce.Detail = strconv.Itoa(ae.Code), c.redact(ae.Message)
		if ce.Detail == "" {
			ce.Detail = "error " + ce.Code
		}
		switch ae.Code {
		case CodeCallLimit:
			// Sectigo publishes no number and sends no Retry-After: certd
			// pauses the account for the configured time, as for an HTTP
			// 429.
			ce.Status, ce.Retry = http.StatusTooManyRequests, c.opts.CallLimitRetry
		case CodePermission:
			ce.Permanent = true
			ce.Detail += " (the login name and password were refused, or the account is not enabled for the API)"
		case CodeUnknownArgument, CodeMissingArgument, CodeInvalidArgument:
			ce.Permanent = true
			if ae.Param != "" {
				ce.Detail += " (parameter " + ae.Param + ")"
			}
		case CodeOverHTTP, CodeGET:
			ce.Permanent = true
		case CodeNoPrice:
			ce.Permanent = true
			ce.Detail += " (the product and days configured have no price on the account)"
		case CodeRefunded, CodeCancelled:
			ce.Permanent = true
		}
	case errors.As(err, &he):
		ce.Op = opName(op, he.API)
		ce.Status, ce.Detail, ce.Ambiguous = he.Status, c.redact(he.Error()), he.Ambiguous
	default:
		ce.Detail = c.redact(err.Error())
		ce.Ambiguous = errors.Is(err, ErrAmbiguous)
	}
	return ce
}

// opName is "op (API)", or the API alone when op is it.
func opName(op, api string) string {
	if op == api || op == "" {
		return api
	}
	return op + " (" + api + ")"
}

// within names the step a client error happened in: "submit
// (AutoApplySSL)".
func within(op string, err error) error {
	if ce, ok := ca.AsError(err); ok && !strings.HasPrefix(ce.Op, op+" ") {
		ce.Op = op + " (" + ce.Op + ")"
	}
	return err
}

// redact removes the password from text a CA or a transport produced.
func (c *Client) redact(s string) string {
	if p := c.opts.LoginPassword.Reveal(); len(p) >= 4 {
		s = strings.ReplaceAll(s, p, "[REDACTED]")
	}
	return s
}

// httpError is an answer that is not the API's (a status other than 200,
// or a body that does not parse).
type httpError struct {
	API       string
	Status    int
	Msg       string
	Ambiguous bool
	// Err is the transport's or parser's error, if any.
	Err error
}

func (e *httpError) Error() string {
	s := fmt.Sprintf("sectigo: %s: ", e.API)
	if e.Status != 0 {
		s += fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Msg != "" {
		if e.Status != 0 {
			s += ": "
		}
		s += e.Msg
	}
	if e.Err != nil {
		if e.Msg != "" || e.Status != 0 {
			s += ": "
		}
		s += e.Err.Error()
	}
	if e.Ambiguous {
		s += " (the request was sent: Sectigo may have acted on it)"
	}
	return s
}

// Unwrap returns the underlying error.
func (e *httpError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrAmbiguous) true for an ambiguous answer.
func (e *httpError) Is(target error) bool { return target == ErrAmbiguous && e.Ambiguous }

// pendingError is Fetch's "not yet": ca.ErrPending with the poll interval
// as its Retry-After.
func pendingError(op, detail string, retry time.Duration) error {
	return &ca.Error{CA: "sectigo", Op: op, Detail: detail, Retry: retry, Err: ca.ErrPending}
}
