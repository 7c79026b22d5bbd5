package markmonitor_test

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/markmonitor"
	"github.com/certd/certd/config"
)

// fakeJWT is a token with an exp far away (header {"alg":"HS256"},
// payload {"exp":4102444800}).
const fakeJWT = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2lnbmF0dXJl"

// fake is a REST fixture: a TLS server answering by method and path, and
// recording the requests.
type fake struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies map[string]string // "METHOD path" -> last body
	query  map[string]string // "METHOD path" -> last raw query
	answer func(w http.ResponseWriter, r *http.Request, body string)
}

func newFake(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, body string)) *fake {
	t.Helper()
	f := &fake{bodies: map[string]string{}, query: map[string]string{}, answer: answer}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		key := r.Method + " " + r.URL.Path
		f.mu.Lock()
		f.bodies[key], f.query[key] = string(b), r.URL.RawQuery
		f.mu.Unlock()
		if r.URL.Path == "/auth/v1/auth/authenticate" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"jwt":"` + fakeJWT + `","expiresIn":5400}`))
			return
		}
		f.answer(w, r, string(b))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) client(t *testing.T, logger *zap.Logger, mod func(*markmonitor.ClientOptions)) *markmonitor.Client {
	t.Helper()
	opts := markmonitor.ClientOptions{URL: f.srv.URL + "/cert/v1", AuthURL: f.srv.URL + "/auth/v1", APIKey: config.NewSecretValue(apiKey),
		Username: username, Password: config.NewSecretValue(password), Transport: f.srv.Client().Transport, Logger: logger}
	if mod != nil {
		mod(&opts)
	}
	c, err := markmonitor.NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// No secret leaves certd in an error or a log line, even when the API
// echoes the request back: the API key, the password and the JWT are
// redacted from what the CA says and from transport errors.
func TestSecretsNeverInErrorsOrLogs(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		msg := fmt.Sprintf("echo: key=%s auth=%s body=%s", r.Header.Get("x-api-key"), r.Header.Get("Authorization"), body)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": "BAD_REQUEST", "message": msg})
	})
	core, logs := observer.New(zap.DebugLevel)
	c := f.client(t, zap.New(core), nil)
	is, err := markmonitor.NewIssuer(c, markmonitor.IssuerOptions{CertificateType: "SSL_DV_GEOTRUST", Organization: organization()})
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	_, err = c.Order(ctx, "0b8f3c1e-7a55-4d0e-9a51-3f7c2d1e8b90")
	errs = append(errs, err)
	req := request(t, nil, "a.example.com")
	req.SentAt = time.Now()
	_, err = is.Submit(ctx, req)
	errs = append(errs, err)
	_, _, err = is.Reconcile(ctx, req)
	errs = append(errs, err)
	// A transport failure after the request was sent, and one before.
	f.srv.CloseClientConnections()
	down := f.client(t, zap.New(core), func(o *markmonitor.ClientOptions) { o.URL = "https://127.0.0.1:1/cert/v1" })
	_, err = down.Order(ctx, "0b8f3c1e-7a55-4d0e-9a51-3f7c2d1e8b90")
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil {
			t.Fatalf("call %d did not fail", i)
		}
		if ce, ok := ca.AsError(err); !ok || ce.CA != "markmonitor" {
			t.Fatalf("call %d: %v is not a markmonitor *ca.Error", i, err)
		}
		noSecret(t, fmt.Sprintf("error %d", i), err.Error())
		noSecret(t, fmt.Sprintf("error %d (%%#v)", i), fmt.Sprintf("%+v", err))
	}
	if !strings.Contains(errs[0].Error(), "[REDACTED]") || !strings.Contains(errs[0].Error(), "[REDACTED JWT]") {
		t.Fatalf("the echo was not redacted but dropped? %v", errs[0])
	}
	for _, entry := range logs.All() {
		noSecret(t, "a log message", entry.Message)
		for k, v := range entry.ContextMap() {
			noSecret(t, "log field "+k, fmt.Sprint(v))
		}
	}
}

// The inferred names are configuration: json_names renames keys both
// ways and query_names the query parameters; pages are read 1-based when
// first_page is 1, and a page of Spring shape without "last" ends by
// totalPages.
func TestWireNamesAreConfigurable(t *testing.T) {
	const id = "0b8f3c1e-7a55-4d0e-9a51-3f7c2d1e8b90"
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, body string) {
		w.Header().Set("Content-Type", "application/json")
		switch r.Method + " " + r.URL.Path {
		case "GET /cert/v1/order/" + id:
			_, _ = w.Write([]byte(`{"resourceId":"` + id + `","state":"DIGI_PENDING","cert":{"commonName":"a.example.com","dcvMethod":"DNS_TXT_TOKEN",
				"domains":[{"name":"a.example.com","randomValue":"tok123","validationStatus":"PENDING"}]}}`))
		case "GET /cert/v1/order":
			page := r.URL.Query().Get("pageNumber")
			_, _ = w.Write([]byte(`{"content":[{"resourceId":"` + id + `","state":"DIGI_ISSUED"}],"totalPages":2,"number":` + page + `}`))
		case "PATCH /cert/v1/order/" + id + "/validate-domains":
			_, _ = w.Write([]byte(`{"resourceId":"` + id + `","state":"DIGI_PENDING"}`))
		default:
			http.NotFound(w, r)
		}
	})
	c := f.client(t, nil, func(o *markmonitor.ClientOptions) {
		o.JSONNames = map[string]string{"dcvToken": "randomValue", "status": "state", "domains": "domainNames"}
		o.QueryNames = map[string]string{"page": "pageNumber", "commonNames": "cn"}
		o.FirstPage = 1
	})
	is, err := markmonitor.NewIssuer(c, markmonitor.IssuerOptions{CertificateType: "SSL_DV_GEOTRUST", Organization: organization(),
		Actions: markmonitor.Actions{ValidateDomains: "validate-domains"}})
	if err != nil {
		t.Fatal(err)
	}
	req := request(t, nil, "a.example.com")
	auths, err := is.Authorizations(ctx, ca.Order{Ref: id}, req)
	if err != nil || len(auths) != 1 || auths[0].Challenges[0].Value != "tok123" || auths[0].Challenges[0].RecordName != "a.example.com" {
		t.Fatalf("authorizations: %+v %v", auths, err)
	}
	if _, err := is.Respond(ctx, auths[0], auths[0].Challenges[0]); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	sent := f.bodies["PATCH /cert/v1/order/"+id+"/validate-domains"]
	f.mu.Unlock()
	if sent != `{"domainNames":["a.example.com"]}` {
		t.Fatalf("validate body %s", sent)
	}
	orders, complete, err := c.SearchOrders(ctx, markmonitor.OrderQuery{CommonNames: []string{"a.example.com"}})
	if err != nil || !complete || len(orders) != 2 || orders[0].Status != "DIGI_ISSUED" {
		t.Fatalf("search: %+v %v %v, want 2 orders from pages 1 and 2", orders, complete, err)
	}
	f.mu.Lock()
	q := f.query["GET /cert/v1/order"]
	f.mu.Unlock()
	if !strings.Contains(q, "pageNumber=2") || !strings.Contains(q, "cn=a.example.com") || strings.Contains(q, "commonNames") {
		t.Fatalf("query %s", q)
	}
}

// A search that lists orders without their certificate (summaries) is
// never read as "absent": Reconcile reads those orders one by one and
// finds the request's by its CSR.
func TestReconcileReadsSummaries(t *testing.T) {
	const id = "0b8f3c1e-7a55-4d0e-9a51-3f7c2d1e8b90"
	req := request(t, nil, "a.example.com")
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: req.CSR}))
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, _ string) {
		w.Header().Set("Content-Type", "application/json")
		switch r.Method + " " + r.URL.Path {
		case "GET /cert/v1/order":
			_, _ = w.Write([]byte(`{"content":[{"resourceId":"` + id + `","status":"DIGI_PENDING"}],"last":true}`))
		case "GET /cert/v1/order/" + id:
			b, _ := json.Marshal(map[string]any{"resourceId": id, "status": "DIGI_PENDING", "createdDate": time.Now().UTC().Format(time.RFC3339),
				"cert": map[string]any{"commonName": "a.example.com", "dnsNames": []string{"a.example.com"}, "csr": csr}})
			_, _ = w.Write(b)
		default:
			http.NotFound(w, r)
		}
	})
	is, err := markmonitor.NewIssuer(f.client(t, nil, nil), markmonitor.IssuerOptions{CertificateType: "SSL_DV_GEOTRUST", Organization: organization()})
	if err != nil {
		t.Fatal(err)
	}
	req.SentAt = time.Now().Add(-time.Hour) // long past the search window
	o, found, err := is.Reconcile(ctx, req)
	if !found || err != nil || o.Ref != id {
		t.Fatalf("found=%v ref=%s err=%v, want the listed order", found, o.Ref, err)
	}
}
