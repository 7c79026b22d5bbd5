package atlas

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Error is every error answer of the Atlas API, typed: the HTTP status,
// Atlas's description, correlation id and errors map, and the Retry-After
// it sent. The scheduler decides with errors.As, never by matching text.
type Error struct {
	Method, Path string
	Status       int
	Description  string
	ID           string
	Errors       map[string]string
	Retry        time.Duration
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "atlas: %s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Description != "" {
		fmt.Fprintf(&b, ": %s", e.Description)
	}
	if len(e.Errors) > 0 {
		keys := make([]string, 0, len(e.Errors))
		for k := range e.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "; %s: %s", k, e.Errors[k])
		}
	}
	if e.ID != "" {
		fmt.Fprintf(&b, " (id %s)", e.ID)
	}
	return b.String()
}

// RetryAfter is the delay Atlas asked for (zero if none); the scheduler
// never retries sooner.
func (e *Error) RetryAfter() time.Duration { return e.Retry }

// Temporary reports whether retrying later can help: rate limits, busy
// service and server errors. A 402 (quota), 422 (rejected) or 4xx is not.
func (e *Error) Temporary() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// IsStatus reports whether err is an Atlas Error with that status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// Sentinel conditions of the API.
var (
	// ErrNotReady: the certificate is still being issued (202).
	ErrNotReady = errors.New("atlas: certificate not issued yet")
	// ErrQuota: the account's issuance quota is used up (402); terminal
	// until someone buys more.
	ErrQuota = errors.New("atlas: issuance quota reached")
	// ErrAmbiguous: the request may or may not have reached Atlas (the
	// connection failed after it was sent). Look the outcome up before
	// sending it again.
	ErrAmbiguous = errors.New("atlas: outcome unknown")
)
