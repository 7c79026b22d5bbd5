package providers

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

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
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDTEST/") {
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

func TestRoute53AddsToAndRemovesFromTheRecordSet(t *testing.T) {
	fake := &fakeRoute53{t: t, sets: map[string][]string{"_acme-challenge.example.com.|TXT": {`"foreign"`}}, ttl: map[string]int{"_acme-challenge.example.com.|TXT": 300}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	// The AWS SDK's own endpoint override; certd sets no AWS variable itself.
	t.Setenv("AWS_ENDPOINT_URL_ROUTE_53", srv.URL)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("CERTD_TEST_AKID", "AKIDTEST")
	t.Setenv("CERTD_TEST_SECRET", "secret")
	cfg := mustDecodeRoute53(t, "region: us-east-1\naccess_key_id: env:CERTD_TEST_AKID\nsecret_access_key: env:CERTD_TEST_SECRET\nhosted_zone_id: Z1\n")
	prov, err := newRoute53(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := prov
	rec := libdns.TXT{Name: "_acme-challenge", TTL: time.Minute, Text: "tok-123"}
	if _, err := p.AppendRecords(ctx, "example.com.", []libdns.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if got := fake.sets["_acme-challenge.example.com.|TXT"]; len(got) != 2 {
		t.Fatalf("after append: %v (the RRset must be added to, not replaced)", got)
	}
	if _, err := p.DeleteRecords(ctx, "example.com.", []libdns.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if got := fake.sets["_acme-challenge.example.com.|TXT"]; len(got) != 1 || got[0] != `"foreign"` {
		t.Fatalf("after delete: %v, want only the foreign value", got)
	}
	// An empty name works too (no foreign values to keep).
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
	t.Logf("requests: %v", fake.seen)
}

func mustDecodeRoute53(t *testing.T, block string) *Route53Config {
	t.Helper()
	cfg, err := parseDNSBlock(t, "route53", block)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.(*Route53Config)
}
