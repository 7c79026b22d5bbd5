package markmonitor

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/config"
)

var fuzzNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const fuzzKey = "CANARY-mm-key"

func fuzzClient() *Client {
	return &Client{opts: ClientOptions{Now: func() time.Time { return fuzzNow }, TokenLifetime: 90 * time.Minute,
		RateLimitRetry: time.Minute, APIKey: config.NewSecretValue(fuzzKey), Password: config.NewSecretValue("CANARY-mm-password")}}
}

// FuzzTokenAnswer feeds authenticate and refresh answers (every shape
// tokenOf reads: an object, a JSON string, a bare JWT) to the token
// extraction and the JWT expiry. Nothing may panic; a token is never
// scheduled to last longer than the configured lifetime, and an exp claim
// the client takes is a real instant after 1970, not an overflowed one
// that would make every call log in again.
func FuzzTokenAnswer(f *testing.F) {
	jwt := func(payload string) string {
		return "eyJhbGciOiJIUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2lnbmF0dXJl"
	}
	for _, s := range []string{
		`{"token":"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2lnbmF0dXJl"}`,
		`{"accessToken":"` + jwt(`{"sub":"certd","exp":1748782800}`) + `"}`,
		`"` + jwt(`{"exp":1748779300.5}`) + `"`,
		jwt(`{"exp":1e300}`),
		jwt(`{"exp":-1}`),
		jwt(`{"exp":"soon"}`),
		`{"jwt":""}`,
		`<html>Unauthorized</html>`,
	} {
		f.Add([]byte(s))
	}
	c := fuzzClient()
	f.Fuzz(func(t *testing.T, body []byte) {
		tok := tokenOf(body)
		if e, ok := jwtExpiry(tok); ok && !e.After(time.Unix(0, 0)) {
			t.Fatalf("expiry %v taken from %q", e, tok)
		}
		got, exp, err := c.readToken(request{route: "/auth/authenticate", auth: true}, &response{status: 200, body: body})
		if err != nil {
			if tok != "" {
				t.Fatalf("token %q refused: %v", tok, err)
			}
			return
		}
		if got != tok || got == "" {
			t.Fatalf("token %q, tokenOf says %q", got, tok)
		}
		if exp.After(fuzzNow.Add(c.opts.TokenLifetime)) {
			t.Fatalf("expiry %v beyond the configured lifetime", exp)
		}
	})
}

// FuzzAnswers feeds the other JSON answers: paged listings (Spring Data,
// items/data/results, bare arrays), and error bodies with their status.
// Nothing may panic; a page that says more follow has items (an empty
// page ends the listing rather than walking to the page cap); an error
// keeps its status, has a message, never holds the API key, and never
// holds a negative Retry-After.
func FuzzAnswers(f *testing.F) {
	for _, s := range []struct {
		status int
		body   string
	}{
		{200, `{"content":[{"orderId":101,"status":"ISSUED"}],"totalPages":3,"last":false,"number":0,"size":1}`},
		{200, `{"content":[],"totalPages":5}`},
		{200, `{"items":[{"resourceId":"5f0e6b8e-1c1a-4d2e-9a8b-7c6d5e4f3a2b","name":"Example Org"}]}`},
		{200, `[{"orderId":102},{"orderId":103}]`},
		{200, `{"results":null,"last":"maybe"}`},
		{400, `{"code":"VALIDATION_ERROR","message":"cert.csr is required"}`},
		{401, `{"error":"invalid_token","error_description":"The access token expired"}`},
		{409, `{"errors":[{"message":"order 101 is not in a state to be cancelled"},"second"]}`},
		{429, `{"message":"Too Many Requests"}`},
		{500, `<html>Internal Server Error CANARY-mm-key</html>`},
	} {
		f.Add(s.status, []byte(s.body), "30", true)
	}
	c := fuzzClient()
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfter string, commits bool) {
		items, more, err := pageOf(body, 1, 0, 2)
		if err == nil && more && len(items) == 0 {
			t.Fatalf("an empty page that says more follow: %s", body)
		}
		if status < 400 || status > 599 {
			status = 400 + (status%200+200)%200
		}
		r := request{route: "/order", method: http.MethodPost, commits: commits}
		err = c.statusError(r, &response{status: status, header: http.Header{"Retry-After": {retryAfter}}, body: body})
		e, ok := ca.AsError(err)
		if !ok || e.Status != status || e.Error() == "" || e.Retry < 0 {
			t.Fatalf("error %#v for status %d", err, status)
		}
		if strings.Contains(e.Error(), fuzzKey) {
			t.Fatalf("the API key is in the error: %v", e)
		}
		if e.Ambiguous && !commits {
			t.Fatalf("ambiguous for a request that commits nothing: %v", e)
		}
	})
}
