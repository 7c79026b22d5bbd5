package reseller

import (
	"net/http"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/certd/certd/dcv"
)

// FuzzValidationDetails feeds validation-details answers to the walker
// that reads them whatever their shape, seeded with the shapes its tests
// hold. It must not panic, nor fail on any JSON; it reports every
// requested domain once, in order; a challenge is for the domain it is
// listed under (a wildcard's for its base name, and never a file), and a
// file challenge stays under /.well-known/.
func FuzzValidationDetails(f *testing.F) {
	for _, s := range []struct{ domains, body string }{
		{"*.b.example.com", `{"domains":[{"domain":"b.example.com","dns_type":"CNAME","dns_record":"_x.b.example.com","dns_value":"t.sectigo.com","file_path":"/.well-known/pki-validation/X.txt","file_content":"c"}]}`},
		{"c.example.com", `{"status":"pending","dns":{"type":"TXT","name":"c.example.com","value":"v1"}}`},
		{"d.example.com", `{"dns_records":[{"host":"d.example.com","type":"TXT","value":"v2"}]}`},
		{"e.example.com", `{"e.example.com":{"status":"pending","approver":{"email":"admin@e.example.com"}}}`},
		{"f.example.com,g.example.com", `{"f.example.com":"Validated","g.example.com":true}`},
		{"h.example.com", `{"status":"active"}`},
		{"i.example.com", `{"domain":"i.example.com","file_path":"/etc/passwd","file_content":"x"}`},
		{"i.example.com", `{"domain":"i.example.com","http":{"url":"http://i.example.com/.well-known/pki-validation/A1.txt","content":["line1","line2"]}}`},
		{"j.example.com,k.example.com", `{"steps":[{"step":1,"todo":"publish something"}],"progress":0.5,"x":null}`},
		{"a.example.com,www.a.example.com", `{"domain":"www.a.example.com","status":"pending","txt":{"host":"a.example.com","value":"tok"},"sans":[{"domain":"a.example.com","status":"validated"}]}`},
		{"n.example.com", `{"domain":["n.example.com"],"domains":{"n.example.com":[1,2,{"dns_type":7}]},"status":{"a":1}}`},
		{"l.example.com", `null`},
		{"0", `{"url":"A://1/.well-known/pki-validation/x.txt","Content":["0"] }`},
		{"i.example.com", `{"domain":"i.example.com","file_path":"/.well-known/pki-validation/../../../etc/cron.d/x","file_content":"x"}`},
		{"l.example.com", `[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{"domain":"l.example.com"}]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`},
	} {
		f.Add(s.domains, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, list string, body []byte) {
		domains := strings.Split(list, ",")
		rep, err := parseValidation(body, domains)
		if err != nil {
			return // not JSON: reported as such
		}
		if len(rep.Domains) != len(domains) {
			t.Fatalf("%d domains reported for %d requested", len(rep.Domains), len(domains))
		}
		for i, dv := range rep.Domains {
			if dv.Domain != domains[i] {
				t.Fatalf("domain %d is %q, requested %q", i, dv.Domain, domains[i])
			}
			base := strings.TrimPrefix(dv.Domain, "*.")
			for _, ch := range dv.Challenges {
				// A file may be served on the host its URL names (the
				// CA's word), which must then be a host name.
				if ch.Domain != dv.Domain && ch.Domain != base && (ch.Method != dcv.HTTPFile || !looksLikeHost(ch.Domain)) {
					t.Fatalf("%s: a %s challenge for %q", dv.Domain, ch.Method, ch.Domain)
				}
				switch ch.Method {
				case dcv.HTTPFile:
					if strings.HasPrefix(dv.Domain, "*.") {
						t.Fatalf("%s: a file challenge for a wildcard", dv.Domain)
					}
					if !strings.HasPrefix(ch.Path, "/.well-known/") || path.Clean(ch.Path) != ch.Path {
						t.Fatalf("%s: file path %q", dv.Domain, ch.Path)
					}
				case dcv.DNSTXT, dcv.DNSCNAME, dcv.Email:
				default:
					t.Fatalf("%s: method %q", dv.Domain, ch.Method)
				}
			}
		}
	})
}

// FuzzErrorBody feeds error answers of every shape (DRF's, {message,
// code, errors}, lists, bare strings, HTML) with their status to the
// classifier. It must not panic; the ca.Error keeps the status, names
// its CA, has a message, never holds the API key, and is ambiguous only
// for a 5xx to a request that is not a GET.
func FuzzErrorBody(f *testing.F) {
	for _, s := range []struct {
		status int
		body   string
	}{
		{400, `{"domains":["Enter a valid domain name."],"dcv_type":["This field is required."]}`},
		{400, `{"non_field_errors":["The CSR key is too weak."]}`},
		{401, `{"detail":"Invalid token."}`},
		{402, `{"message":"Insufficient balance","code":"insufficient_funds"}`},
		{404, `{"detail":"Not found."}`},
		{422, `{"message":"Validation failed","errors":{"csr":"invalid","domains":["a.example.com is blacklisted"]}}`},
		{422, `[{"field":"plan","message":"unknown plan"}]`},
		{429, `{"detail":"Request was throttled. Expected available in 30 seconds."}`},
		{500, `<html><body><h1>Server Error (500)</h1></body></html>`},
		{503, ``},
		{400, `"a bare string with the key CANARY-reseller-key"`},
	} {
		f.Add(s.status, []byte(s.body), "POST")
	}
	const key = "CANARY-reseller-key"
	c := &Client{secrets: []string{key}, opts: ClientOptions{Now: time.Now}}
	f.Fuzz(func(t *testing.T, status int, body []byte, method string) {
		if status < 400 || status > 599 {
			status = 400 + (status%200+200)%200
		}
		e := c.apiError("submit", "/orders/", method, &answer{status: status, header: http.Header{}, body: body})
		if e == nil || e.Status != status || e.CA != caName || e.Error() == "" {
			t.Fatalf("error %#v for status %d", e, status)
		}
		if strings.Contains(e.Error(), key) {
			t.Fatalf("the API key is in the error: %v", e)
		}
		if e.Ambiguous && (status < 500 || method == http.MethodGet) {
			t.Fatalf("ambiguous on %d to %s", status, method)
		}
	})
}
