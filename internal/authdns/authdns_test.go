package authdns

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/libdns/rfc2136"
	"github.com/miekg/dns"
)

func TestUpdatesThroughTheRealProvider(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := New("demo-key", "c2VjcmV0c2VjcmV0c2VjcmV0", map[string][]string{"example.com": {`@ 60 IN TXT "foreign"`}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	txt := func() []string {
		m := new(dns.Msg)
		m.SetQuestion("example.com.", dns.TypeTXT)
		r, err := dns.Exchange(m, s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, rr := range r.Answer {
			out = append(out, rr.(*dns.TXT).Txt[0])
		}
		return out
	}
	p := &rfc2136.Provider{Server: s.Addr, KeyName: "demo-key", KeyAlg: "hmac-sha256", Key: "c2VjcmV0c2VjcmV0c2VjcmV0"}
	rec := libdns.TXT{Name: "@", TTL: time.Minute, Text: "tok"}
	if _, err := p.AppendRecords(ctx, "example.com.", []libdns.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if got := txt(); !slices.Contains(got, "tok") || !slices.Contains(got, "foreign") {
		t.Fatalf("after append: %v", got)
	}
	if _, err := p.DeleteRecords(ctx, "example.com.", []libdns.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if got := txt(); len(got) != 1 || got[0] != "foreign" {
		t.Fatalf("after delete: %v", got)
	}
	// A wrong key is refused.
	bad := &rfc2136.Provider{Server: s.Addr, KeyName: "demo-key", KeyAlg: "hmac-sha256", Key: "d3JvbmdrZXl3cm9uZ2tleQ=="}
	if _, err := bad.AppendRecords(ctx, "example.com.", []libdns.Record{rec}); err == nil {
		t.Fatal("update with a wrong key accepted")
	}
}
