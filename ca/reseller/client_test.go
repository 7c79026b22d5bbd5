package reseller_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/reseller"
	"github.com/certd/certd/ca/reseller/resellersim"
)

const plan = "3f7830c3-3fa4-404d-908f-35daaa1cd17b"

var refs atomic.Int64

// fake is an httptest API answering with fn, recording the requests.
type fake struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
	body [][]byte
}

func newFake(t *testing.T, fn func(w http.ResponseWriter, r *http.Request)) *fake {
	t.Helper()
	f := &fake{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, r)
		f.body = append(f.body, b)
		f.mu.Unlock()
		fn(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

func (f *fake) issuer(t *testing.T, log *zap.Logger, opts reseller.IssuerOptions) *reseller.Issuer {
	t.Helper()
	c, err := reseller.NewClient(reseller.ClientOptions{URL: f.srv.URL + "/api", Username: testUser, APIKey: testKey, Logger: log,
		Retries: 1, Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Plan == "" {
		opts.Plan = plan
	}
	if opts.Logger == nil {
		opts.Logger = log
	}
	iss, err := reseller.NewIssuer(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func request(t *testing.T, names ...string) ca.Request {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: names[0]}, DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	return ca.Request{CertName: names[0], Domains: names, Key: key, CSR: csr, ClientRef: fmt.Sprintf("ref-%d", refs.Add(1)),
		Since: time.Now(), SentAt: time.Now()}
}

func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(core), logs
}

// logText is every message and field of logs, for grepping.
func logText(logs *observer.ObservedLogs) string {
	var b strings.Builder
	for _, e := range logs.All() {
		b.WriteString(e.Message)
		for k, v := range e.ContextMap() {
			fmt.Fprintf(&b, " %s=%v", k, v)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// N5: whatever the API answers (even echoing the credentials back), no
// error text and no log line carries the API key or the Authorization
// header's value.
func TestSecretsNeverInErrors(t *testing.T) {
	basic := base64.StdEncoding.EncodeToString([]byte(testUser + ":" + testKey))
	echo := func(r *http.Request) string {
		return "you sent " + r.Header.Get("Authorization") + " and key " + testKey
	}
	cases := map[string]func(w http.ResponseWriter, r *http.Request){
		"401 echoing": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 401, map[string]string{"detail": echo(r)})
		},
		"400 fields echoing": func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 400, map[string][]string{"csr": {echo(r)}, "plan": {testKey}})
		},
		"500 html echoing": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			_, _ = io.WriteString(w, "<html>"+echo(r)+"</html>")
		},
		"429 echoing": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "600")
			writeJSON(w, 429, map[string]any{"error": map[string]string{"message": echo(r), "code": testKey}})
		},
		"connection dropped": func(w http.ResponseWriter, r *http.Request) {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		},
		"redirect elsewhere": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://127.0.0.1:1/steal?key="+testKey, http.StatusFound)
		},
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			log, logs := observed()
			f := newFake(t, fn)
			iss := f.issuer(t, log, reseller.IssuerOptions{})
			req := request(t, "a.example.com")
			var errs []error
			_, err := iss.Submit(ctx, req)
			errs = append(errs, err)
			_, err = iss.Fetch(ctx, ca.Order{Ref: "42"}, req)
			errs = append(errs, err)
			_, _, err = iss.Reconcile(ctx, req)
			errs = append(errs, err)
			for _, err := range errs {
				if err == nil {
					t.Fatal("no error")
				}
				for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), logText(logs)} {
					if strings.Contains(text, testKey) || strings.Contains(text, basic) {
						t.Fatalf("a credential leaked: %s", text)
					}
				}
				if _, ok := ca.AsError(err); !ok {
					t.Errorf("not a *ca.Error: %v", err)
				}
			}
		})
	}
}

// Every answer maps onto the typed ca.Error the scheduler decides with.
func TestErrorMapping(t *testing.T) {
	type want struct {
		permanent, ambiguous bool
		code                 string
		retry                time.Duration
		detail               string
	}
	cases := []struct {
		name   string
		submit bool // POST /ssl-certificate; else GET /ssl-certificate/{id}
		status int
		header map[string]string
		body   string
		want   want
	}{
		{"401", true, 401, nil, `{"detail":"Invalid username/password."}`, want{permanent: true, detail: "refused"}},
		{"403", false, 403, nil, `{"detail":"You do not have permission."}`, want{permanent: true}},
		{"402", true, 402, nil, `{"detail":"Payment required"}`, want{permanent: true, code: "quota"}},
		{"400 insufficient funds", true, 400, nil, `{"non_field_errors":["Insufficient balance to purchase this plan."]}`, want{permanent: true, code: "quota"}},
		{"400 DRF fields", true, 400, nil, `{"csr":["The CSR should be generated using a key of at least 2048 bits."]}`,
			want{permanent: true, code: "invalid:csr", detail: "csr: The CSR should"}},
		{"422 errors map", true, 422, nil, `{"message":"Validation failed","code":"E_VALID","errors":{"dcv_type":"not a valid choice"}}`,
			want{permanent: true, code: "E_VALID", detail: "dcv_type: not a valid choice"}},
		{"422 errors list", true, 422, nil, `{"errors":[{"field":"plan","message":"unknown plan"}]}`,
			want{permanent: true, code: "invalid:plan", detail: "plan: unknown plan"}},
		{"429 Retry-After", true, 429, map[string]string{"Retry-After": "300"}, `{"detail":"Request was throttled."}`, want{retry: 300 * time.Second}},
		{"429 HTTP date", false, 429, map[string]string{"Retry-After": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}, ``, want{retry: 59 * time.Minute}},
		{"503 to a POST", true, 503, map[string]string{"Retry-After": "120"}, `{"detail":"Service unavailable"}`, want{ambiguous: true, retry: 120 * time.Second}},
		{"500 to a POST", true, 500, nil, `oops`, want{ambiguous: true}},
		{"503 to a GET", false, 503, map[string]string{"Retry-After": "120"}, ``, want{retry: 120 * time.Second}},
		{"404", false, 404, nil, `{"detail":"Not found."}`, want{permanent: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range c.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(c.status)
				_, _ = io.WriteString(w, c.body)
			})
			iss := f.issuer(t, zap.NewNop(), reseller.IssuerOptions{})
			req := request(t, "a.example.com")
			var err error
			if c.submit {
				_, err = iss.Submit(ctx, req)
			} else {
				_, err = iss.Fetch(ctx, ca.Order{Ref: "42"}, req)
			}
			e, ok := ca.AsError(err)
			if !ok {
				t.Fatalf("not a *ca.Error: %v", err)
			}
			if e.CA != "reseller" || e.Status != c.status || e.Permanent != c.want.permanent || e.Ambiguous != c.want.ambiguous ||
				c.want.code != "" && e.Code != c.want.code || e.Retry < c.want.retry || c.want.retry == 0 && e.Retry != 0 ||
				!strings.Contains(e.Detail, c.want.detail) {
				t.Errorf("%+v, want %+v", e, c.want)
			}
			if errors.Is(err, ca.ErrAmbiguous) != c.want.ambiguous {
				t.Errorf("errors.Is(ErrAmbiguous) = %v", !c.want.ambiguous)
			}
		})
	}
}

// A request written and then unanswered is ambiguous for a POST (it may
// have been committed) and retried for a GET; a request never sent is
// neither.
func TestLostAnswers(t *testing.T) {
	var n int
	var mu sync.Mutex
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		if r.Method == http.MethodGet && !first {
			writeJSON(w, 200, map[string]any{"id": "42", "status": "pending"})
			return
		}
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	})
	iss := f.issuer(t, zap.NewNop(), reseller.IssuerOptions{})
	req := request(t, "a.example.com")
	if _, err := iss.Submit(ctx, req); !errors.Is(err, ca.ErrAmbiguous) {
		t.Fatalf("a lost POST answer: %v, want ambiguous", err)
	}
	if _, err := iss.Fetch(ctx, ca.Order{Ref: "42"}, req); !errors.Is(err, ca.ErrPending) {
		t.Fatalf("a lost GET answer is retried: %v", err)
	}
	// Nothing listens: the request never left.
	c, err := reseller.NewClient(reseller.ClientOptions{URL: "http://127.0.0.1:1", Username: testUser, APIKey: testKey, Retries: 1,
		Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	dead, _ := reseller.NewIssuer(c, reseller.IssuerOptions{Plan: plan})
	_, err = dead.Submit(ctx, req)
	if e, ok := ca.AsError(err); !ok || e.Ambiguous {
		t.Fatalf("a refused connection: %v, want a definite failure", err)
	}
}

// The create request carries exactly the seed's fields, as JSON with an
// explicit Content-Type and HTTP Basic credentials; the answer's id (a
// number here) is the order's reference; an answer without one is
// ambiguous.
func TestSubmitRequest(t *testing.T) {
	answer := `{"id": 1234, "status": "pending"}`
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		_, _ = io.WriteString(w, answer)
	})
	contact := reseller.Contact{ChamberOfCommerce: "12345678", CompanyName: "Johns inc.", Department: "Development", Address: "Example street 13",
		ZipCode: "12345", City: "Smallville", ApproverFirstName: "John", ApproverLastName: "Doe", ApproverEmailAddress: "john.doe@example.com",
		ApproverPhoneNumber: "+31.612345678"}
	iss := f.issuer(t, zap.NewNop(), reseller.IssuerOptions{DCVType: "file", Contact: contact})
	req := request(t, "a.example.com", "b.example.com")
	o, err := iss.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if o.Ref != "1234" {
		t.Errorf("Ref %q", o.Ref)
	}
	r := f.reqs[0]
	if r.Method != "POST" || r.URL.Path != "/api/ssl-certificate" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s %s %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
	}
	if u, p, ok := r.BasicAuth(); !ok || u != testUser || p != testKey {
		t.Errorf("basic auth %q %v", u, ok)
	}
	var body struct {
		CSR, DCVType, Plan, ClientReference                                     string
		ChamberOfCommerce, CompanyName, Department, Address, City, ZipCode      string
		ApproverFirstName, ApproverLastName, ApproverEmail, ApproverPhoneNumber string
	}
	fields := map[string]*string{"csr": &body.CSR, "dcv_type": &body.DCVType, "plan": &body.Plan, "client_reference": &body.ClientReference,
		"chamber_of_commerce": &body.ChamberOfCommerce, "company_name": &body.CompanyName, "department": &body.Department,
		"address": &body.Address, "city": &body.City, "zip_code": &body.ZipCode, "approver_first_name": &body.ApproverFirstName,
		"approver_last_name": &body.ApproverLastName, "approver_email_address": &body.ApproverEmail, "approver_phone_number": &body.ApproverPhoneNumber}
	var raw map[string]string
	if err := json.Unmarshal(f.body[0], &raw); err != nil {
		t.Fatal(err)
	}
	for k, v := range raw {
		p, ok := fields[k]
		if !ok {
			t.Errorf("field %q is not the seed's", k)
			continue
		}
		*p = v
	}
	if !strings.HasPrefix(body.CSR, "-----BEGIN CERTIFICATE REQUEST-----\n") || !strings.HasSuffix(body.CSR, "-----END CERTIFICATE REQUEST-----\n") ||
		body.DCVType != "FILE" || body.Plan != plan || body.ClientReference != req.ClientRef || body.ChamberOfCommerce != "12345678" ||
		body.ApproverEmail != "john.doe@example.com" || body.ApproverPhoneNumber != "+31.612345678" || body.ZipCode != "12345" {
		t.Errorf("body %s", f.body[0])
	}
	answer = `{"status": "pending"}`
	if _, err := iss.Submit(ctx, req); !errors.Is(err, ca.ErrAmbiguous) {
		t.Errorf("an answer without an id: %v, want ambiguous", err)
	}
	// FILE cannot prove a wildcard: refused before anything is sent.
	before := f.count()
	_, err = iss.Submit(ctx, request(t, "*.a.example.com"))
	if !ca.IsPermanent(err) || f.count() != before {
		t.Errorf("FILE for a wildcard: %v (requests %d -> %d)", err, before, f.count())
	}
}

// Only "pending" and "active" are documented: an unknown status is never
// taken as an end (it is pending, logged at warn), a rejected one ends
// the order.
func TestFetchStatuses(t *testing.T) {
	cases := []struct {
		status   string
		rejected []string
		want     error
		warn     bool
	}{
		{"pending", nil, ca.ErrPending, false},
		{"PENDING", nil, ca.ErrPending, false},
		{"on_hold", nil, ca.ErrPending, true},
		{"awaiting-organisation-validation", nil, ca.ErrPending, true},
		{"", nil, ca.ErrPending, true},
		{"cancelled", nil, ca.ErrRejected, false},
		{"Rejected", nil, ca.ErrRejected, false},
		{"expired", nil, ca.ErrRejected, false},
		{"cancelled", []string{"dead"}, ca.ErrPending, true},
		{"dead", []string{"dead"}, ca.ErrRejected, false},
	}
	for _, c := range cases {
		t.Run(c.status+strings.Join(c.rejected, ","), func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 200, map[string]any{"id": "42", "status": c.status})
			})
			log, logs := observed()
			iss := f.issuer(t, log, reseller.IssuerOptions{PollInterval: 7 * time.Minute, RejectedStatuses: c.rejected})
			_, err := iss.Fetch(ctx, ca.Order{Ref: "42"}, request(t, "a.example.com"))
			if !errors.Is(err, c.want) {
				t.Fatalf("%v, want %v", err, c.want)
			}
			e, _ := ca.AsError(err)
			if e == nil || e.Permanent || e.Ambiguous {
				t.Errorf("%+v: neither permanent nor ambiguous expected", e)
			}
			if c.want == ca.ErrPending && e.Retry != 7*time.Minute {
				t.Errorf("Retry %s, want the poll interval", e.Retry)
			}
			if warned := logs.FilterLevelExact(zapcore.WarnLevel).Len() > 0; warned != c.warn {
				t.Errorf("warned %v, want %v: %s", warned, c.warn, logText(logs))
			}
		})
	}
}

// Reconcile: a lookup by client reference proves absence when empty;
// several objects are a loud error with the oldest kept; objects with
// another reference (a server ignoring the filter) are never taken; an
// unreadable listing is an error, never "absent".
func TestReconcile(t *testing.T) {
	obj := func(id, ref, created string) map[string]any {
		return map[string]any{"id": id, "status": "pending", "client_reference": ref, "created_at": created}
	}
	cases := []struct {
		name   string
		answer any
		found  bool
		ref    string
		err    bool
		loud   bool
	}{
		{name: "empty list", answer: []any{}},
		{name: "empty DRF page", answer: map[string]any{"count": 0, "next": nil, "results": []any{}}},
		{name: "one", answer: []any{obj("a1", "REF", "2025-01-01T00:00:00Z")}, found: true, ref: "a1"},
		{name: "one in data", answer: map[string]any{"data": []any{obj("a1", "REF", "")}}, found: true, ref: "a1"},
		{name: "several, oldest kept", answer: []any{obj("new", "REF", "2025-03-01T00:00:00Z"), obj("old", "REF", "2025-01-01T10:00:00Z"),
			obj("mid", "REF", "2025-02-01T00:00:00Z")}, found: true, ref: "old", loud: true},
		{name: "filter ignored by the server", answer: []any{obj("x", "OTHER", ""), obj("y", "", "")}},
		{name: "no list in the object", answer: map[string]any{"count": 1}, err: true},
		{name: "entries without ids", answer: []any{map[string]any{"status": "pending"}}, err: true},
		{name: "a string", answer: "nothing", err: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var query string
			f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
				query = r.URL.RawQuery
				writeJSON(w, 200, c.answer)
			})
			log, logs := observed()
			iss := f.issuer(t, log, reseller.IssuerOptions{})
			req := request(t, "a.example.com")
			req.ClientRef = "REF"
			o, found, err := iss.Reconcile(ctx, req)
			if c.err {
				if err == nil || found {
					t.Fatalf("found=%v err=%v, want an error", found, err)
				}
				return
			}
			if err != nil || found != c.found || o.Ref != c.ref {
				t.Fatalf("%+v found=%v err=%v", o, found, err)
			}
			if query != "client_reference=REF" {
				t.Errorf("query %q", query)
			}
			if loud := logs.FilterLevelExact(zapcore.ErrorLevel).Len() > 0; loud != c.loud {
				t.Errorf("error logged %v, want %v", loud, c.loud)
			}
		})
	}
	// Never sent: nothing is asked.
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, []any{}) })
	req := request(t, "a.example.com")
	req.SentAt = time.Time{}
	if _, found, err := f.issuer(t, zap.NewNop(), reseller.IssuerOptions{}).Reconcile(ctx, req); found || err != nil || f.count() != 0 {
		t.Errorf("never sent: found=%v err=%v requests=%d", found, err, f.count())
	}
}

// The listing's "next" link is followed on the API's host only: the
// credentials never go elsewhere.
func TestListNextLink(t *testing.T) {
	var other *httptest.Server
	other = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request sent to another host (with credentials: %v)", r.Header.Get("Authorization") != "")
	}))
	defer other.Close()
	var f *fake
	f = newFake(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("page") {
		case "":
			writeJSON(w, 200, map[string]any{"count": 2, "next": f.srv.URL + "/api/ssl-certificate?client_reference=REF&page=2",
				"results": []any{map[string]any{"id": "p1", "client_reference": "REF"}}})
		case "2":
			writeJSON(w, 200, map[string]any{"count": 2, "next": other.URL + "/x?page=3",
				"results": []any{map[string]any{"id": "p2", "client_reference": "REF"}}})
		}
	})
	c := f.issuer(t, zap.NewNop(), reseller.IssuerOptions{}).Client()
	_, err := c.List(ctx, reseller.ListFilter{ClientReference: "REF"})
	if err == nil || !strings.Contains(err.Error(), "not on the API's host") {
		t.Fatalf("%v", err)
	}
	if f.count() != 2 {
		t.Errorf("%d requests", f.count())
	}
}

// Every exchange is observed under a route without ids.
func TestObserveRoutes(t *testing.T) {
	e := newEnv(t, nil)
	var mu sync.Mutex
	routes := map[string]int{}
	c := e.client(t, zap.NewNop(), func(o *reseller.ClientOptions) {
		o.Observe = func(route string, status int, _ time.Duration) {
			mu.Lock()
			routes[route] = status
			mu.Unlock()
		}
	})
	iss, err := reseller.NewIssuer(c, reseller.IssuerOptions{Plan: resellersim.SectigoDVPlan})
	if err != nil {
		t.Fatal(err)
	}
	req := request(t, "obs.example.com")
	o, err := iss.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.prove(iss, o, req.Domains); err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Fetch(ctx, o, req); err != nil {
		t.Fatal(err)
	}
	if _, _, err := iss.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"POST /ssl-certificate", "GET /ssl-certificate", "GET /ssl-certificate/{id}",
		"GET /ssl-certificate/{id}/validation-details", "GET /ssl-certificate/{id}/download-crt", "GET /ssl-certificate/{id}/download-ca"} {
		if routes[want] != 200 && routes[want] != 201 {
			t.Errorf("route %q: status %d (routes %v)", want, routes[want], routes)
		}
	}
	for r := range routes {
		if strings.Contains(r, o.Ref) {
			t.Errorf("route %q carries an id", r)
		}
	}
}

func pubEqual(a crypto.PublicKey, b crypto.PublicKey) bool {
	p, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && p.Equal(b)
}

// An answer whose shape certd does not know gives nothing to publish,
// without a panic: the names stay pending, the shape (keys, no values)
// is logged at warn; when the order turns out to be active they are
// valid.
func TestAuthorizationsUnknownShape(t *testing.T) {
	for _, status := range []string{"pending", "active"} {
		t.Run(status, func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/validation-details") {
					writeJSON(w, 200, map[string]any{"steps": []any{map[string]any{"todo": "SECRET-ISH-TOKEN", "n": 1}}, "x": nil})
					return
				}
				writeJSON(w, 200, map[string]any{"id": "42", "status": status})
			})
			log, logs := observed()
			iss := f.issuer(t, log, reseller.IssuerOptions{})
			auths, err := iss.Authorizations(ctx, ca.Order{Ref: "42"}, request(t, "a.example.com", "b.example.com"))
			if err != nil {
				t.Fatal(err)
			}
			want := ca.AuthPending
			if status == "active" {
				want = ca.AuthValid
			}
			for _, a := range auths {
				if a.Status != want || len(a.Challenges) != 0 || a.Ref != "42" {
					t.Errorf("%+v", a)
				}
			}
			text := logText(logs)
			if strings.Contains(text, "SECRET-ISH-TOKEN") {
				t.Errorf("a value was logged: %s", text)
			}
			if warned := logs.FilterLevelExact(zapcore.WarnLevel).Len() > 0; warned != (status == "pending") || status == "pending" && !strings.Contains(text, ".steps[].todo:string") {
				t.Errorf("warn %v: %s", warned, text)
			}
		})
	}
	// Not JSON at all: an error, not a panic.
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "<html>maintenance</html>") })
	if _, err := f.issuer(t, zap.NewNop(), reseller.IssuerOptions{}).Authorizations(ctx, ca.Order{Ref: "42"}, request(t, "a.example.com")); err == nil {
		t.Error("no error for an HTML answer")
	} else if _, ok := ca.AsError(err); !ok {
		t.Errorf("not a *ca.Error: %v", err)
	}
}

// An id is one path segment whatever it holds.
func TestIDEscaped(t *testing.T) {
	var path string
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.EscapedPath()
		writeJSON(w, 200, map[string]any{"id": "a/b?c", "status": "pending"})
	})
	if _, err := f.issuer(t, zap.NewNop(), reseller.IssuerOptions{}).Fetch(ctx, ca.Order{Ref: "a/b?c"}, request(t, "a.example.com")); !errors.Is(err, ca.ErrPending) {
		t.Fatal(err)
	}
	if path != "/api/ssl-certificate/a%2Fb%3Fc" {
		t.Errorf("path %q", path)
	}
}

// The simulator's paginated listing is walked to the end through its
// "next" links.
func TestListPages(t *testing.T) {
	e := newEnv(t, func(o *resellersim.Options) { o.PageSize = 2 })
	iss := e.issuer(t, reseller.IssuerOptions{})
	for range 5 {
		if _, err := iss.Submit(ctx, request(t, "page.example.com")); err != nil {
			t.Fatal(err)
		}
	}
	all, err := iss.Client().List(ctx, reseller.ListFilter{Plan: resellersim.SectigoDVPlan})
	if err != nil || len(all) != 5 {
		t.Fatalf("%d listed, %v", len(all), err)
	}
	if n := e.sim.Requests("GET /ssl-certificate"); n != 3 {
		t.Errorf("%d pages read", n)
	}
}
