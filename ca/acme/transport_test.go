package acme

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// stub answers each request with the next of its programmed outcomes.
type stub struct {
	outcomes []func() (*http.Response, error)
	sent     int
}

func (s *stub) RoundTrip(*http.Request) (*http.Response, error) {
	o := s.outcomes[min(s.sent, len(s.outcomes)-1)]
	s.sent++
	return o()
}

func status(code int) func() (*http.Response, error) {
	return func() (*http.Response, error) {
		return &http.Response{StatusCode: code, Header: http.Header{"Retry-After": {"7"}}, Body: io.NopCloser(strings.NewReader("{}"))}, nil
	}
}

func fail(err error) func() (*http.Response, error) {
	return func() (*http.Response, error) { return nil, err }
}

// The newOrder guard: a request that may have created an order is never
// sent again within one exchange; a definite refusal or a failed dial may
// be.
func TestOnceOnlyRequestGuard(t *testing.T) {
	const u = "https://ca.example/new-order"
	dialErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	for _, tc := range []struct {
		name      string
		first     func() (*http.Response, error)
		resent    bool
		ambiguous bool
	}{
		{"badNonce is refused: resend", status(400), true, false},
		{"rate limited: resend allowed (acmez does not)", status(429), true, false},
		{"server error: may have committed", status(503), false, true},
		{"answer lost: may have committed", fail(io.ErrUnexpectedEOF), false, true},
		{"dial failed: never sent", fail(dialErr), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := &stub{outcomes: []func() (*http.Response, error){tc.first, status(201)}}
			hc := &http.Client{Transport: &transport{base: base}}
			x := &exchange{route: "newOrder", once: u}
			ctx := withExchange(context.Background(), x)
			for range 2 {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader([]byte("{}")))
				resp, err := hc.Do(req)
				if err == nil {
					resp.Body.Close()
				}
			}
			if got := base.sent == 2; got != tc.resent {
				t.Fatalf("sent %d times; resend allowed = %v, want %v", base.sent, got, tc.resent)
			}
			if x.wasLost() != tc.ambiguous {
				t.Fatalf("ambiguous = %v, want %v", x.wasLost(), tc.ambiguous)
			}
		})
	}
}

func TestRetryAfterIsRecorded(t *testing.T) {
	base := &stub{outcomes: []func() (*http.Response, error){status(200)}}
	hc := &http.Client{Transport: &transport{base: base}}
	x := &exchange{route: "order"}
	req, _ := http.NewRequestWithContext(withExchange(context.Background(), x), http.MethodPost, "https://ca.example/order/1", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := x.retryAfter(time.Now()); got != 7*time.Second {
		t.Fatalf("Retry-After %s, want 7s", got)
	}
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"120":                           2 * time.Minute,
		"-5":                            0,
		"Tue, 24 Nov 2026 12:01:00 GMT": time.Minute,
		"Tue, 24 Nov 2026 11:00:00 GMT": 0,
		"soon":                          0,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("Retry-After %q: %s, want %s", v, got, want)
		}
	}
}

// EAB MAC keys are decoded however the CA encoded them.
func TestDecodeMACKey(t *testing.T) {
	raw := []byte{0xfb, 0xff, 0x01, 0x02, 0x03, 0xfe, 0x10}
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		got, err := DecodeMACKey(" " + enc.EncodeToString(raw) + "\n")
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("%q: %x %v", enc.EncodeToString(raw), got, err)
		}
	}
	if _, err := DecodeMACKey("not base64 !!"); err == nil || strings.Contains(err.Error(), "!!") {
		t.Fatalf("bad key: %v (must fail without echoing the key)", err)
	}
}

// Polls start short and double, take the server's Retry-After when given,
// and stop at the deadline rather than sleeping past it.
func TestPollerPacing(t *testing.T) {
	p := newPoller(time.Hour)
	p.deadline = time.Now().Add(time.Hour)
	var got []time.Duration
	for range 4 {
		d, err := p.wait(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d)
	}
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond}
	for k := range want {
		if got[k] != want[k] {
			t.Fatalf("waits %v, want %v", got, want)
		}
	}
	short := newPoller(50 * time.Millisecond)
	if d, err := short.wait(context.Background(), 3*time.Second); !errors.Is(err, errPollTimeout) || d != 3*time.Second {
		t.Fatalf("a Retry-After past the deadline: %s %v", d, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := newPoller(time.Hour).wait(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
