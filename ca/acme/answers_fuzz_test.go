package acme

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"
)

var fuzzNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// FuzzProblemDocument feeds problem documents (RFC 8555 section 6.7, as
// acmez decodes them) and Retry-After values to the code that turns them
// into a ca.Error. It must not panic, and the error must carry the
// problem's type and status, call permanent only the types listed as
// such, never hold a negative Retry-After, and always have a message.
func FuzzProblemDocument(f *testing.F) {
	for _, s := range []struct{ body, retryAfter string }{
		{`{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new orders recently","status":429}`, "3600"},
		{`{"type":"urn:ietf:params:acme:error:unauthorized","detail":"account is not authorized","status":403}`, ""},
		{`{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce","status":400}`, ""},
		{`{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"Error creating new order :: Cannot issue for \"example.invalid\"","status":400,"subproblems":[{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"Domain name does not end with a valid public suffix","identifier":{"type":"dns","value":"example.invalid"}}]}`, ""},
		{`{"type":"urn:ietf:params:acme:error:invalidProfile","detail":"profile \"shortlived\" is not offered","status":400}`, ""},
		{`{"type":"urn:ietf:params:acme:error:serverInternal","title":"Internal Server Error","status":500}`, "Wed, 21 Oct 2015 07:28:00 GMT"},
		{`{"type":"about:blank"}`, "9223372036854775807"},
		{`{}`, "-5"},
	} {
		f.Add([]byte(s.body), s.retryAfter)
	}
	i := &Issuer{opts: Options{Now: func() time.Time { return fuzzNow }}}
	f.Fuzz(func(t *testing.T, body []byte, retryAfter string) {
		var p acme.Problem
		if json.Unmarshal(body, &p) != nil {
			return // acmez reports a body that is no JSON by itself
		}
		x := &exchange{header: http.Header{"Retry-After": {retryAfter}}}
		err := i.describe(x, "creating the order", p)
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("not a ca.Error: %T %v", err, err)
		}
		if e.Code != p.Type || e.Status != p.Status {
			t.Fatalf("code %q status %d from problem %q %d", e.Code, e.Status, p.Type, p.Status)
		}
		if e.Permanent != permanentProblems[p.Type] {
			t.Fatalf("permanent %v for %q", e.Permanent, p.Type)
		}
		if e.Retry < 0 {
			t.Fatalf("negative Retry-After %v from %q", e.Retry, retryAfter)
		}
		if e.Detail == "" || err.Error() == "" {
			t.Fatalf("an error without a message: %#v", e)
		}
	})
}

// FuzzRenewalInfo feeds renewalInfo answers (RFC 9773) and their
// Retry-After. It must not panic; an answer that is not JSON is a
// ca.Error; a decoded one carries the Retry-After, never negative, and the
// window as sent (the scheduler checks Valid before using it).
func FuzzRenewalInfo(f *testing.F) {
	for _, s := range []struct{ body, retryAfter string }{
		{`{"suggestedWindow":{"start":"2025-06-20T00:00:00Z","end":"2025-06-22T00:00:00Z"}}`, "21600"},
		{`{"suggestedWindow":{"start":"2025-06-01T00:00:00Z","end":"2025-06-01T06:00:00Z"},"explanationURL":"https://acme.example/docs/ari"}`, ""},
		{`{"suggestedWindow":{"start":"2025-06-22T00:00:00Z","end":"2025-06-20T00:00:00Z"}}`, "-1"},
		{`{"suggestedWindow":{}}`, "9223372036854775807"},
		{`<html>Bad Gateway</html>`, ""},
	} {
		f.Add([]byte(s.body), s.retryAfter)
	}
	f.Fuzz(func(t *testing.T, body []byte, retryAfter string) {
		ra := parseRetryAfter(retryAfter, fuzzNow)
		if ra < 0 {
			t.Fatalf("negative Retry-After %v from %q", ra, retryAfter)
		}
		w, err := decodeRenewalInfo(bytes.NewReader(body), http.StatusOK, ra)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Retry != ra || !strings.Contains(err.Error(), "renewalInfo") {
				t.Fatalf("error %T %v", err, err)
			}
			return
		}
		if w.RetryAfter != ra {
			t.Fatalf("Retry-After %v, sent %v", w.RetryAfter, ra)
		}
		if w.Valid() && !w.End.After(w.Start) {
			t.Fatalf("valid window ending before it starts: %+v", w)
		}
	})
}
