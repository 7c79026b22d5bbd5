package atlas

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fuzzAnswer is what the fuzzing server sends to every call but the login.
type fuzzAnswer struct {
	mu                   sync.Mutex
	status               int
	body                 []byte
	location, retryAfter string
	totalCount           string
}

// FuzzAnswers feeds every answer parser of the client (JSON bodies of
// each call, the error body, Retry-After, Location, Total-Count) with
// arbitrary answers from a server that logs in normally. The client must
// not panic, must not take an error status for success, and what it
// returns must be usable: a serial or claim id that is one path segment,
// a certificate with its PEM, a non-empty chain, a typed error carrying
// the status that was sent and a Retry-After that is not negative.
func FuzzAnswers(f *testing.F) {
	// Answers as the simulator and the tests' fixtures send them.
	seeds := []struct {
		call                       uint8
		status                     int
		body, location, retryAfter string
		totalCount                 string
	}{
		{0, 200, `{"validity":{"secondsmin":3600,"secondsmax":31536000,"not_before_negative_skew":120,"not_before_positive_skew":3600},"subject_dn":{"common_name":{"presence":"REQUIRED","format":"^.*$"}},"san":{"dns_names":{"static":false,"list":["^.*\\.example\\.com$"],"mincount":0,"maxcount":100}},"public_key":{"key_type":"ECDSA","allowed_lengths":[256,384],"key_format":"PKCS8"},"public_key_signature":"FORBIDDEN"}`, "", "", ""},
		{1, 201, ``, "/v2/certificates/01A2B3C4D5E6F708", "", ""},
		{2, 200, `{"certificate":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n","status":"ISSUED","updated_at":1700000000}`, "", "", ""},
		{2, 202, ``, "", "", ""},
		{3, 200, `["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n","-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"]`, "", "", ""},
		{4, 200, `[{"serial_number":"01A2B3","not_before":1700000000,"not_after":1707776000}]`, "", "", "1"},
		{5, 200, `{"value":42}`, "", "", ""},
		{6, 200, `[{"id":"01HCLAIM","status":"VERIFIED","domain":"example.com.","created_at":1700000000,"expires_at":1731536000,"assert_by":1729000000,"log":[{"status":"SUCCESS","description":"domain claim verified","timestamp":1700000100,"method":"dns"}]}]`, "", "", "1"},
		{7, 201, `{"token":"d2c1b3a4e5f60718293a4b5c6d7e8f90","assert_by":1729000000}`, "/v2/claims/domains/01HCLAIM", "", ""},
		{8, 200, `{"id":"01HCLAIM","status":"PENDING","domain":"example.com.","log":[]}`, "", "", ""},
		{9, 204, ``, "", "", ""},
		{10, 200, `{"constructed":["admin@example.com","hostmaster@example.com"],"DNS":{"SOA":{"emails":["dns@example.com"]}}}`, "", "", ""},
		{11, 204, ``, "", "", ""},
		{1, 422, `{"description":"Unprocessable Entity","id":"0f0e","errors":{"subject_dn.common_name":"not allowed by policy"}}`, "", "", ""},
		{1, 402, `{"description":"quota exhausted"}`, "", "", ""},
		{5, 429, `{"description":"Too Many Requests"}`, "", "30", ""},
		{5, 503, `<html><body>Service Unavailable</body></html>`, "", "Wed, 21 Oct 2015 07:28:00 GMT", ""},
		{5, 429, ``, "", "18446744074", ""},
		{2, 200, `{"certificate":"-----BEGIN CERT`, "", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.call, s.status, []byte(s.body), s.location, s.retryAfter, s.totalCount)
	}

	ans := &fuzzAnswer{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/login") {
			_, _ = w.Write([]byte(`{"access_token":"fuzz-token"}`))
			return
		}
		ans.mu.Lock()
		defer ans.mu.Unlock()
		if ans.location != "" {
			w.Header().Set("Location", ans.location)
		}
		if ans.retryAfter != "" {
			w.Header().Set("Retry-After", ans.retryAfter)
		}
		if ans.totalCount != "" {
			w.Header().Set("Total-Count", ans.totalCount)
		}
		w.WriteHeader(ans.status)
		_, _ = w.Write(ans.body)
	}))
	f.Cleanup(srv.Close)
	now := time.Unix(1700000000, 0)
	c, err := NewClient(ClientOptions{
		URL: srv.URL + "/v2", APIKey: "k", APISecret: "s",
		Certificate: tls.Certificate{Certificate: [][]byte{{0}}}, // not used: the transport is the server's
		Now:         func() time.Time { return now },
		Sleep:       func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
		Retries:     1, MaxInlineWait: time.Nanosecond, Timeout: 5 * time.Second,
	})
	if err != nil {
		f.Fatal(err)
	}
	c.http.Transport = srv.Client().Transport

	f.Fuzz(func(t *testing.T, call uint8, status int, body []byte, location, retryAfter, totalCount string) {
		if status < 200 || status > 599 {
			status = 200 + (status%400+400)%400
		}
		for _, h := range []string{location, retryAfter, totalCount} {
			if strings.ContainsAny(h, "\r\n\x00") || len(h) > 200 {
				return // not something an HTTP server can send
			}
		}
		ans.mu.Lock()
		ans.status, ans.body, ans.location, ans.retryAfter, ans.totalCount = status, body, location, retryAfter, totalCount
		ans.mu.Unlock()
		c.InvalidatePolicy()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		var got any
		switch call % 12 {
		case 0:
			got, err = c.ValidationPolicy(ctx)
		case 1:
			var serial string
			serial, err = c.CreateCertificate(ctx, &CertRequest{PublicKey: "k"})
			if err == nil && !oneSegment(serial) {
				t.Fatalf("serial %q from Location %q", serial, location)
			}
			got = serial
		case 2:
			var info *CertInfo
			info, err = c.Certificate(ctx, "01A2")
			if err == nil && info.PEM == "" {
				t.Fatal("a certificate without its PEM")
			}
			if errors.Is(err, ErrNotReady) && status != http.StatusAccepted {
				t.Fatalf("not ready on %d", status)
			}
			got = info
		case 3:
			var chain []string
			chain, err = c.TrustChain(ctx)
			if err == nil && len(chain) == 0 {
				t.Fatal("an empty chain")
			}
			got = chain
		case 4:
			got, err = c.Stats(ctx, "issued", time.Time{}, time.Time{})
		case 5:
			got, err = c.Quota(ctx)
		case 6:
			got, err = c.Claims(ctx, "")
		case 7:
			var tok *ClaimToken
			tok, err = c.CreateClaim(ctx, "example.com")
			if err == nil && (tok.Token == "" || !oneSegment(tok.ID)) {
				t.Fatalf("claim token %+v from Location %q", tok, location)
			}
			got = tok
		case 8:
			got, err = c.Claim(ctx, "01HCLAIM")
		case 9:
			var r VerifyResult
			r, err = c.VerifyDNS(ctx, "01HCLAIM", "")
			if err == nil && r != Verified && r != Started && r != Pending {
				t.Fatalf("verify result %d", r)
			}
			got = r
		case 10:
			got, err = c.EmailAddresses(ctx, "01HCLAIM")
		case 11:
			err = c.DeleteClaim(ctx, "01HCLAIM")
		}
		if err == nil {
			if status >= 300 {
				t.Fatalf("status %d taken for success: %#v", status, got)
			}
			return
		}
		if err.Error() == "" {
			t.Fatal("an error without a message")
		}
		var e *Error
		if errors.As(err, &e) {
			if e.Status != status {
				t.Fatalf("error carries status %d, the answer was %d", e.Status, status)
			}
			if e.Retry < 0 {
				t.Fatalf("negative Retry-After %v from %q", e.Retry, retryAfter)
			}
			if call%12 == 1 && (status < 300 || status >= 500) && !errors.Is(err, ErrAmbiguous) {
				// The order may be committed: it must be looked up, never
				// sent again (N1).
				t.Fatalf("a %d answer to POST /certificates is not ambiguous: %v", status, err)
			}
		}
	})
}

// oneSegment reports whether an id taken from a Location can be put back
// into a path as one segment.
func oneSegment(id string) bool {
	return id != "" && id != "." && id != ".." && !strings.ContainsAny(id, "/?#")
}
