package reseller

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/certd/certd/dcv"
)

// The validation details are read whatever their shape: the known
// upstream shapes give their artefacts exactly as the answer says, and
// unknown shapes give nothing (never a guess, never a panic).
func TestParseValidationShapes(t *testing.T) {
	type want struct {
		valid      bool
		found      bool
		challenges []dcv.Challenge
	}
	cases := []struct {
		name    string
		domains []string
		body    string
		want    map[string]want
		allOK   bool
	}{
		{
			name:    "sectigo flat list",
			domains: []string{"a.example.com", "b.example.com"},
			body: `{"status":"pending","dcv_type":"DNS","domains":[
				{"domain":"a.example.com","status":"pending","dns_record":"_ABC.a.example.com.","dns_type":"CNAME","dns_value":"x.y.sectigo.com."},
				{"domain":"b.example.com","status":"validated"}]}`,
			want: map[string]want{
				"a.example.com": {found: true, challenges: []dcv.Challenge{{Domain: "a.example.com", Method: dcv.DNSCNAME, RecordName: "_abc.a.example.com", Value: "x.y.sectigo.com"}}},
				"b.example.com": {found: true, valid: true},
			},
		},
		{
			name:    "sectigo file with lines",
			domains: []string{"a.example.com"},
			body:    `[{"domain":"A.EXAMPLE.COM","file_path":"/.well-known/pki-validation/ABC.txt","file_content":["SHA","sectigo.com","U1"]}]`,
			want: map[string]want{"a.example.com": {found: true, challenges: []dcv.Challenge{{Domain: "a.example.com", Method: dcv.HTTPFile,
				Path: "/.well-known/pki-validation/ABC.txt", Content: "SHA\nsectigo.com\nU1"}}}},
		},
		{
			name:    "digicert keyed by name",
			domains: []string{"a.example.com", "*.a.example.com"},
			body: `{"order_status":"pending","dcv_random_value":{"token":"tok"},"domains":{
				"a.example.com":{"validation_status":"pending","txt_record":{"host":"_dnsauth.a.example.com","value":"tok"},
					"fileauth":{"url":"http://a.example.com/.well-known/pki-validation/fileauth.txt","contents":"tok"}},
				"*.a.example.com":{"validation_status":"approved","fileauth":{"url":"http://a.example.com/.well-known/pki-validation/fileauth.txt","contents":"tok"}}}}`,
			want: map[string]want{
				"a.example.com": {found: true, challenges: []dcv.Challenge{
					{Domain: "a.example.com", Method: dcv.HTTPFile, Path: "/.well-known/pki-validation/fileauth.txt", Content: "tok"},
					{Domain: "a.example.com", Method: dcv.DNSTXT, RecordName: "_dnsauth.a.example.com", Value: "tok"}}},
				// A file never proves a wildcard.
				"*.a.example.com": {found: true, valid: true},
			},
		},
		{
			name:    "wildcard read from its base name, without files",
			domains: []string{"*.b.example.com"},
			body: `{"domains":[{"domain":"b.example.com","dns_type":"CNAME","dns_record":"_x.b.example.com","dns_value":"t.sectigo.com",
				"file_path":"/.well-known/pki-validation/X.txt","file_content":"c"}]}`,
			want: map[string]want{"*.b.example.com": {found: true, challenges: []dcv.Challenge{
				{Domain: "b.example.com", Method: dcv.DNSCNAME, RecordName: "_x.b.example.com", Value: "t.sectigo.com"}}}},
		},
		{
			name:    "single domain, artefacts at the top level",
			domains: []string{"c.example.com"},
			body:    `{"status":"pending","dns":{"type":"TXT","name":"c.example.com","value":"v1"}}`,
			want:    map[string]want{"c.example.com": {found: true, challenges: []dcv.Challenge{{Domain: "c.example.com", Method: dcv.DNSTXT, RecordName: "c.example.com", Value: "v1"}}}},
		},
		{
			name:    "records in a list with their own host",
			domains: []string{"d.example.com"},
			body:    `{"dns_records":[{"host":"d.example.com","type":"TXT","value":"v2"}]}`,
			want:    map[string]want{"d.example.com": {found: true, challenges: []dcv.Challenge{{Domain: "d.example.com", Method: dcv.DNSTXT, RecordName: "d.example.com", Value: "v2"}}}},
		},
		{
			name:    "email approver",
			domains: []string{"e.example.com"},
			body:    `{"e.example.com":{"status":"pending","approver":{"email":"admin@e.example.com"}}}`,
			want:    map[string]want{"e.example.com": {found: true, challenges: []dcv.Challenge{{Domain: "e.example.com", Method: dcv.Email, EmailAddress: "admin@e.example.com"}}}},
		},
		{
			name:    "status as a bare string and a boolean",
			domains: []string{"f.example.com", "g.example.com"},
			body:    `{"f.example.com":"Validated","g.example.com":true}`,
			want:    map[string]want{"f.example.com": {found: true, valid: true}, "g.example.com": {found: true, valid: true}},
		},
		{
			name:    "order already active",
			domains: []string{"h.example.com"},
			body:    `{"status":"active"}`,
			allOK:   true,
			want:    map[string]want{"h.example.com": {found: true}},
		},
		{
			name:    "a file path outside .well-known is refused",
			domains: []string{"i.example.com"},
			body:    `{"domain":"i.example.com","file_path":"/etc/passwd","file_content":"x"}`,
			want:    map[string]want{"i.example.com": {found: true}},
		},
		{
			name:    "unknown shape",
			domains: []string{"j.example.com", "k.example.com"},
			body:    `{"steps":[{"step":1,"todo":"publish something"}],"progress":0.5,"x":null}`,
			want:    map[string]want{"j.example.com": {}, "k.example.com": {}},
		},
		{
			name:    "SANs nested in the main name's object; an artefact's host is not a domain object",
			domains: []string{"a.example.com", "www.a.example.com"},
			body: `{"domain":"www.a.example.com","status":"pending","txt":{"host":"a.example.com","value":"tok"},
				"sans":[{"domain":"a.example.com","status":"validated"}]}`,
			want: map[string]want{
				"www.a.example.com": {found: true, challenges: []dcv.Challenge{{Domain: "www.a.example.com", Method: dcv.DNSTXT, RecordName: "a.example.com", Value: "tok"}}},
				"a.example.com":     {found: true, valid: true},
			},
		},
		{name: "empty object", domains: []string{"l.example.com", "m.example.com"}, body: `{}`, want: map[string]want{"l.example.com": {}, "m.example.com": {}}},
		{name: "null", domains: []string{"l.example.com"}, body: `null`, want: map[string]want{"l.example.com": {}}},
		{name: "a number", domains: []string{"l.example.com"}, body: `42`, want: map[string]want{"l.example.com": {}}},
		{
			name: "wrong types everywhere", domains: []string{"n.example.com"},
			body: `{"domain":["n.example.com"],"domains":{"n.example.com":[1,2,{"dns_type":7}]},"status":{"a":1}}`,
			want: map[string]want{"n.example.com": {}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep, err := parseValidation([]byte(c.body), c.domains)
			if err != nil {
				t.Fatal(err)
			}
			if rep.AllValid != c.allOK {
				t.Errorf("AllValid = %v, want %v", rep.AllValid, c.allOK)
			}
			if len(rep.Domains) != len(c.domains) {
				t.Fatalf("%d domains, want %d", len(rep.Domains), len(c.domains))
			}
			for _, dv := range rep.Domains {
				w := c.want[dv.Domain]
				if dv.Valid != w.valid || len(dv.Challenges) != len(w.challenges) {
					t.Errorf("%s: valid=%v challenges=%+v; want valid=%v challenges=%+v (notes %q, shape %s)",
						dv.Domain, dv.Valid, dv.Challenges, w.valid, w.challenges, rep.Notes, rep.Shape)
					continue
				}
				for _, ch := range w.challenges {
					found := false
					for _, got := range dv.Challenges {
						found = found || got == ch
					}
					if !found {
						t.Errorf("%s: missing %+v in %+v", dv.Domain, ch, dv.Challenges)
					}
				}
				if !w.valid && len(w.challenges) == 0 && !c.allOK && rep.Shape == "" {
					t.Errorf("%s: nothing read, but no shape reported for the log", dv.Domain)
				}
			}
		})
	}
}

func TestParseValidationNotJSON(t *testing.T) {
	for _, body := range []string{"", "<html>oops</html>", "{", `{"a":`} {
		if _, err := parseValidation([]byte(body), []string{"a.example.com"}); err == nil {
			t.Errorf("%q: no error", body)
		}
	}
}

// The shape logged for an unknown answer holds its keys, never its values.
func TestShapeHasNoValues(t *testing.T) {
	rep, err := parseValidation([]byte(`{"secretish":{"token":"VALUE-NOT-LOGGED","n":[1]}}`), []string{"a.example.com", "b.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rep.Shape, "VALUE-NOT-LOGGED") || !strings.Contains(rep.Shape, ".secretish.token:string") {
		t.Errorf("shape %q", rep.Shape)
	}
}

// Deeply nested answers end without a panic or a stack overflow: the
// walk stops at maxDepth.
func TestParseValidationDeep(t *testing.T) {
	body := strings.Repeat(`{"a":[`, 2000) + `{"domain":"a.example.com","dns_type":"TXT","dns_record":"a.example.com","dns_value":"v"}` + strings.Repeat(`]}`, 2000)
	rep, err := parseValidation([]byte(body), []string{"a.example.com", "b.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Domains[0].Found || len(rep.Notes) == 0 {
		t.Errorf("an entry beyond the depth limit was read: %+v %q", rep.Domains[0], rep.Notes)
	}
}

func FuzzParseValidation(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"domains":[{"domain":"a.example.com","dns_type":"CNAME","dns_record":"_x","dns_value":"y"}]}`,
		`{"a.example.com":{"fileauth":{"url":"http://a.example.com/.well-known/x","contents":["a","b"]}}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		rep, err := parseValidation([]byte(body), []string{"a.example.com", "*.a.example.com"})
		if err != nil {
			return
		}
		for _, dv := range rep.Domains {
			for _, ch := range dv.Challenges {
				if ch.Method == dcv.HTTPFile && (strings.HasPrefix(dv.Domain, "*.") || !strings.HasPrefix(ch.Path, "/.well-known/")) {
					t.Fatalf("bad file challenge %+v for %s", ch, dv.Domain)
				}
			}
		}
		_ = json.Valid([]byte(body))
	})
}
