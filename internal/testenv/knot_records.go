package testenv

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// CNAME returns the CNAME target at name as the server answers it (lower
// case, no trailing dot), or "" when there is none.
func (k *Knot) CNAME(t testing.TB, name string) string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeCNAME)
	r, err := dns.Exchange(m, k.Addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range r.Answer {
		if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, dns.Fqdn(name)) {
			return strings.TrimSuffix(strings.ToLower(c.Target), ".")
		}
	}
	return ""
}

// AddRR adds one record, in zone-file syntax with absolute names
// ("x.example.com. 60 IN CNAME y.example.net."), by a signed update, as
// another tool would.
func (k *Knot) AddRR(t testing.TB, zone, record string) {
	t.Helper()
	rr, err := dns.NewRR(record)
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(zone))
	m.Insert([]dns.RR{rr})
	m.SetTsig(dns.Fqdn(k.KeyName), dns.HmacSHA256, 300, time.Now().Unix())
	c := &dns.Client{TsigSecret: map[string]string{dns.Fqdn(k.KeyName): k.Secret}}
	r, _, err := c.Exchange(m, k.Addr)
	if err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("update %s: %v %v", record, err, r)
	}
}
