package ca

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Error is the one typed failure every issuer returns for what a CA said
// (or did not say). The scheduler, metrics and notifications classify
// failures through it with errors.As, and never import a CA package or
// match strings.
//
// Issuers MUST return an *Error (possibly wrapped) for every answer of the
// CA that is not a success, and SHOULD for transport failures; they MUST
// set Ambiguous when the request may have been committed (a lost answer,
// a 5xx after a non-idempotent request) and Permanent only when retrying
// cannot help without a person (credentials refused, quota used up, a
// policy the configuration cannot meet).
type Error struct {
	// CA is the issuer's kind ("atlas", "acme", "sectigo", ...).
	CA string
	// Op is what was being done ("submit", "fetch", "POST /certificates").
	Op string
	// Status is the HTTP status (0: no answer).
	Status int
	// Code is the CA's own error code or problem type, when it sent one.
	Code string
	// Detail is the CA's words, for operators.
	Detail string
	// Retry is the CA's Retry-After (0: not said). The next attempt at
	// this CA account is never sooner.
	Retry time.Duration
	// Permanent: retrying cannot help until a person acts.
	Permanent bool
	// Ambiguous: the request may have reached the CA and been committed;
	// the caller looks it up before sending it again.
	Ambiguous bool
	// Unauthorized lists the names the CA (or its policy) says lack a
	// valid domain validation: the caller proves them again.
	Unauthorized []string
	// Err is the underlying error, if any.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.CA != "" {
		b.WriteString(e.CA)
		b.WriteString(": ")
	}
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	switch {
	case e.Detail != "":
		b.WriteString(e.Detail)
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString("failed")
	}
	if e.Code != "" {
		fmt.Fprintf(&b, " (code %s)", e.Code)
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, " [HTTP %d]", e.Status)
	}
	if e.Retry > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.Retry)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrAmbiguous) true for an ambiguous Error.
func (e *Error) Is(target error) bool { return target == ErrAmbiguous && e.Ambiguous }

// RetryAfter is the CA's Retry-After (zero if none).
func (e *Error) RetryAfter() time.Duration { return e.Retry }

// AsError returns the first *Error in err's chain.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// IsPermanent reports whether err is a CA failure that retrying cannot
// fix without a person.
func IsPermanent(err error) bool {
	e, ok := AsError(err)
	return ok && e.Permanent
}

// RetryAfterOf is the longest Retry-After in err's chain (0: none).
func RetryAfterOf(err error) time.Duration {
	var d time.Duration
	for err != nil {
		if ra, ok := err.(interface{ RetryAfter() time.Duration }); ok {
			d = max(d, ra.RetryAfter())
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				d = max(d, RetryAfterOf(e))
			}
			return d
		default:
			return d
		}
	}
	return d
}

// UnauthorizedNames are the names err says need their domain validation
// proved again (nil: none).
func UnauthorizedNames(err error) []string {
	if e, ok := AsError(err); ok {
		return e.Unauthorized
	}
	return nil
}

// Cost is what placing an order costs, which decides what certd may do
// when an order goes wrong.
type Cost int

const (
	// PaidAtSubmit: the CA charges (or counts against a quota) when it
	// accepts the order (Atlas, Sectigo, Markmonitor, the reseller API).
	// Such an order is never replaced because validation failed or was
	// slow: its proofs stay published and the CA is asked to check again.
	PaidAtSubmit Cost = iota
	// FreeUntilFinalized: nothing is charged until the order is finalized
	// (ACME); an order whose validation failed is simply replaced.
	FreeUntilFinalized
)

func (c Cost) String() string {
	if c == FreeUntilFinalized {
		return "free until finalized"
	}
	return "paid at submit"
}

// Coster is implemented by issuers whose orders are not paid at submit.
// An issuer that does not implement it is treated as PaidAtSubmit, the
// safe assumption.
type Coster interface {
	OrderCost() Cost
}

// CostOf is the order cost issuer declares.
func CostOf(issuer Issuer) Cost {
	if c, ok := issuer.(Coster); ok {
		return c.OrderCost()
	}
	return PaidAtSubmit
}
