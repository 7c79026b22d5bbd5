package providers

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	r53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/libdns/libdns"
)

// fakeRoute53 speaks the Route 53 XML API for one hosted zone: list and
// change resource record sets, with AWS's rule that a DELETE must name
// the record set exactly.
type fakeRoute53 struct {
	t    *testing.T
	mu   sync.Mutex
	sets map[string][]string // "name|type" -> values
	ttl  map[string]int
	seen []string
}

type r53Set struct {
	Name   string `xml:"Name"`
	Type   string `xml:"Type"`
	TTL    int    `xml:"TTL"`
	Values []struct {
		Value string `xml:"Value"`
	} `xml:"ResourceRecords>ResourceRecord"`
}

func (f *fakeRoute53) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, r.Method+" "+r.URL.Path)
	if auth := r.Header.Get("Authorization"); !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDTEST/") || !strings.Contains(auth, "/us-east-1/route53/aws4_request") {
		f.t.Errorf("request not signed with the configured key: %q", r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusForbidden)
		return
	}
	const ns = `xmlns="https://route53.amazonaws.com/doc/2013-04-01/"`
	w.Header().Set("Content-Type", "text/xml")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/2013-04-01/hostedzone/Z1/rrset":
		var b strings.Builder
		keys := make([]string, 0, len(f.sets))
		for k := range f.sets {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?><ListResourceRecordSetsResponse %s><ResourceRecordSets>`, ns)
		for _, k := range keys {
			name, typ, _ := strings.Cut(k, "|")
			fmt.Fprintf(&b, "<ResourceRecordSet><Name>%s</Name><Type>%s</Type><TTL>%d</TTL><ResourceRecords>", name, typ, f.ttl[k])
			for _, v := range f.sets[k] {
				fmt.Fprintf(&b, "<ResourceRecord><Value>%s</Value></ResourceRecord>", xmlEscape(v))
			}
			b.WriteString("</ResourceRecords></ResourceRecordSet>")
		}
		b.WriteString("</ResourceRecordSets><IsTruncated>false</IsTruncated><MaxItems>300</MaxItems></ListResourceRecordSetsResponse>")
		_, _ = io.WriteString(w, b.String())
	case r.Method == http.MethodPost && strings.TrimSuffix(r.URL.Path, "/") == "/2013-04-01/hostedzone/Z1/rrset":
		var req struct {
			Changes []struct {
				Action string `xml:"Action"`
				Set    r53Set `xml:"ResourceRecordSet"`
			} `xml:"ChangeBatch>Changes>Change"`
		}
		body, _ := io.ReadAll(r.Body)
		if err := xml.Unmarshal(body, &req); err != nil || len(req.Changes) == 0 {
			f.t.Errorf("change batch: %v: %s", err, body)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		for _, c := range req.Changes {
			name := c.Set.Name
			if !strings.HasSuffix(name, ".") || strings.HasSuffix(name, "..") {
				f.t.Errorf("record set name %q is not one fully qualified name", name)
			}
			key := name + "|" + c.Set.Type
			var vals []string
			for _, v := range c.Set.Values {
				vals = append(vals, v.Value)
			}
			switch c.Action {
			case "CREATE":
				if _, exists := f.sets[key]; exists {
					w.WriteHeader(http.StatusBadRequest)
					fmt.Fprintf(w, `<ErrorResponse %s><Error><Type>Sender</Type><Code>InvalidChangeBatch</Code><Message>Tried to create resource record set but it already exists</Message></Error></ErrorResponse>`, ns)
					return
				}
				f.sets[key], f.ttl[key] = vals, c.Set.TTL
			case "UPSERT":
				f.sets[key], f.ttl[key] = vals, c.Set.TTL
			case "DELETE":
				if strings.Join(f.sets[key], "\n") != strings.Join(vals, "\n") {
					w.WriteHeader(http.StatusBadRequest)
					fmt.Fprintf(w, `<ErrorResponse %s><Error><Type>Sender</Type><Code>InvalidChangeBatch</Code><Message>Tried to delete resource record set but the values provided do not match the current values</Message></Error></ErrorResponse>`, ns)
					return
				}
				delete(f.sets, key)
			default:
				f.t.Errorf("action %q", c.Action)
			}
		}
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><ChangeResourceRecordSetsResponse %s><ChangeInfo><Id>/change/C1</Id><Status>INSYNC</Status><SubmittedAt>%s</SubmittedAt></ChangeInfo></ChangeResourceRecordSetsResponse>`, ns, time.Now().UTC().Format(time.RFC3339))
	default:
		f.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusNotFound)
	}
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// fakeEndpoint points the Route 53 client at url.
func fakeEndpoint(url string) func(*r53.Options) {
	return func(o *r53.Options) { o.BaseEndpoint = aws.String(url) }
}

func route53Block(t *testing.T) *Route53Config {
	t.Helper()
	t.Setenv("CERTD_TEST_AKID", "AKIDTEST")
	t.Setenv("CERTD_TEST_SECRET", "secret")
	return mustDecodeRoute53(t, "region: us-east-1\naccess_key_id: env:CERTD_TEST_AKID\nsecret_access_key: env:CERTD_TEST_SECRET\nhosted_zone_id: Z1\n")
}

func TestRoute53AddsToAndRemovesFromTheRecordSet(t *testing.T) {
	fake := &fakeRoute53{t: t, sets: map[string][]string{"_acme-challenge.example.com.|TXT": {`"foreign"`}}, ttl: map[string]int{"_acme-challenge.example.com.|TXT": 300}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	p, err := newRoute53With(route53Block(t), fakeEndpoint(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	rec := libdns.TXT{Name: "_acme-challenge", TTL: time.Minute, Text: "tok-123"}
	if _, err := p.AppendRecords(ctx, "example.com.", []libdns.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if got := fake.sets["_acme-challenge.example.com.|TXT"]; len(got) != 2 {
		t.Fatalf("after append: %v (the RRset must be added to, not replaced)", got)
	}
	if _, err := p.AppendRecords(ctx, "example.com.", []libdns.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if got := fake.sets["_acme-challenge.example.com.|TXT"]; len(got) != 2 {
		t.Fatalf("after a second append of the same value: %v", got)
	}
	if _, err := p.DeleteRecords(ctx, "example.com.", []libdns.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if got := fake.sets["_acme-challenge.example.com.|TXT"]; len(got) != 1 || got[0] != `"foreign"` || fake.ttl["_acme-challenge.example.com.|TXT"] != 300 {
		t.Fatalf("after delete: %v (TTL %d), want only the foreign value, TTL 300", got, fake.ttl["_acme-challenge.example.com.|TXT"])
	}
	// Deleting what is not there changes nothing and is not an error.
	if _, err := p.DeleteRecords(ctx, "example.com.", []libdns.Record{rec, libdns.TXT{Name: "_none", Text: "x"}}); err != nil {
		t.Fatal(err)
	}
	// An empty name works too (no foreign values to keep): the set goes.
	other := libdns.TXT{Name: "_other", TTL: time.Minute, Text: "tok-456"}
	if _, err := p.AppendRecords(ctx, "example.com.", []libdns.Record{other}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.DeleteRecords(ctx, "example.com.", []libdns.Record{other}); err != nil {
		t.Fatal(err)
	}
	if _, ok := fake.sets["_other.example.com.|TXT"]; ok {
		t.Fatal("record left behind")
	}
	if got := fake.sets["_acme-challenge.example.com.|TXT"]; len(got) != 1 {
		t.Fatalf("foreign value touched: %v", got)
	}
	t.Logf("requests: %v", fake.seen)
}

// A TXT value as Route 53 may list it: split into strings, escaped in
// octal.
func TestRoute53TXTValues(t *testing.T) {
	long := strings.Repeat("a", 300)
	for _, c := range []struct {
		listed, data string
		same         bool
	}{
		{`"tok"`, "tok", true},
		{`"t" "ok"`, "tok", true},
		{`"\052tok"`, "*tok", true},
		{`"tok2"`, "tok", false},
		{`tok`, "tok", false},
		{route53Value(libdns.TXT{Text: long}.RR()), long, true},
	} {
		if got := sameRoute53Value(libdns.TXT{Text: c.data}.RR(), c.listed); got != c.same {
			t.Errorf("%s vs %q: %v, want %v", c.listed, c.data, got, c.same)
		}
	}
	if v := route53Value(libdns.TXT{Text: long}.RR()); !strings.HasPrefix(v, `"`+strings.Repeat("a", 255)+`" "`) {
		t.Errorf("a 300-byte value is not split at 255: %s", v)
	}
}

// TestRoute53NeverEndsTheProcess runs the provider, in a child process of
// the test binary, under the environment that made libdns/route53 v1.6.0
// call log.Fatalf (AWS_PROFILE naming a profile that is in no file): every
// call must return, with an error when Route 53 refuses, and the child
// must reach its end. The environment must change nothing: certd's
// configuration alone says where and as whom it writes.
func TestRoute53NeverEndsTheProcess(t *testing.T) {
	if os.Getenv("CERTD_TEST_ROUTE53_CHILD") == "1" {
		route53UnderABrokenAWSEnvironment(t)
		return
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRoute53NeverEndsTheProcess$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "CERTD_TEST_ROUTE53_CHILD=1",
		"AWS_PROFILE=missing-profile", "AWS_CONFIG_FILE="+empty, "AWS_SHARED_CREDENTIALS_FILE="+empty,
		// Would send certd's requests elsewhere, if it read them.
		"AWS_ENDPOINT_URL=http://127.0.0.1:1", "AWS_ENDPOINT_URL_ROUTE_53=http://127.0.0.1:1",
		"AWS_ACCESS_KEY_ID=AKIDFROMENV", "AWS_SECRET_ACCESS_KEY=from-env", "AWS_REGION=eu-west-3")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), childDone) {
		t.Fatalf("the child running the route53 provider did not reach its end (%v):\n%s", err, out)
	}
}

const childDone = "route53 child: every call returned"

func route53UnderABrokenAWSEnvironment(t *testing.T) {
	cfg := route53Block(t)
	rec := libdns.TXT{Name: "_acme-challenge", TTL: time.Minute, Text: "tok-789"}

	// Route 53 answering: the calls go through, signed with the key of the
	// configuration.
	fake := &fakeRoute53{t: t, sets: map[string][]string{}, ttl: map[string]int{}}
	ok := httptest.NewServer(fake)
	defer ok.Close()
	p, err := newRoute53With(cfg, fakeEndpoint(ok.URL))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.AppendRecords(ctx, "example.com.", []libdns.Record{rec}); err != nil {
		t.Fatalf("append: %v", err)
	}
	if _, err := p.DeleteRecords(ctx, "example.com.", []libdns.Record{rec}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if len(fake.sets) != 0 {
		t.Fatalf("left behind: %v", fake.sets)
	}

	// Route 53 refusing: the calls return the error.
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `<?xml version="1.0"?><ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>denied</Message></Error></ErrorResponse>`)
	}))
	defer refusing.Close()
	p, err = newRoute53With(cfg, fakeEndpoint(refusing.URL))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.AppendRecords(ctx, "example.com.", []libdns.Record{rec}); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("append against a refusing Route 53: %v", err)
	}
	if _, err := p.DeleteRecords(ctx, "example.com.", []libdns.Record{rec}); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("delete against a refusing Route 53: %v", err)
	}
	// Through the table cmd/certd uses, too.
	if _, err := DNSTypes()["route53"].New(cfg); err != nil {
		t.Fatalf("building through the table: %v", err)
	}
	fmt.Println(childDone)
}

func mustDecodeRoute53(t *testing.T, block string) *Route53Config {
	t.Helper()
	cfg, err := parseDNSBlock(t, "route53", block)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.(*Route53Config)
}
