package dcv_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"

	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/testenv"
)

// sectigoCNAME is the shape of Sectigo's DNS CNAME DCV: _<MD5 of the
// CSR>.<domain> CNAME <SHA-256 halves>.<unique value>.sectigo.com.
func sectigoCNAME(domain, target string) dcv.Challenge {
	return dcv.Challenge{Domain: domain, Method: dcv.DNSCNAME, RecordName: "_0f3a5c9e2b7d41a8." + domain, Value: target}
}

func TestDNSCNAMEPublishWaitCleanup(t *testing.T) {
	k := testenv.StartKnot(t, map[string]string{"example.com": testenv.Zone("example.com",
		`_sib TXT "foreign-sibling"`, `www A 127.0.0.1`)})
	j := newJournal()
	e := engine(t, j, k, nil)
	name := "_0f3a5c9e2b7d41a8.example.com"
	// Target in another case and with a trailing dot: DNS names compare
	// case-insensitively, and the journal keeps them without the dot.
	p, err := e.Present(ctx, "order:1", sectigoCNAME("example.com", "A1B2.C3D4.Uniq7.Sectigo.com."), dcv.Target{DNS: "knot"})
	if err != nil {
		t.Fatal(err)
	}
	if got := k.CNAME(t, name); got != "a1b2.c3d4.uniq7.sectigo.com" {
		t.Fatalf("CNAME on the server: %q", got)
	}
	live, _ := j.Live(ctx)
	if len(live) != 1 || live[0].Kind != "dns-cname" || live[0].State != "published" || live[0].Zone != "example.com" ||
		live[0].Name != name || live[0].Value != "a1b2.c3d4.uniq7.sectigo.com" {
		t.Fatalf("journal: %+v", live)
	}
	if err := e.Wait(ctx, []*dcv.Published{p}); err != nil {
		t.Fatal(err)
	}
	if err := e.CleanUp(ctx, []*dcv.Published{p}); err != nil {
		t.Fatal(err)
	}
	if got := k.CNAME(t, name); got != "" {
		t.Fatalf("CNAME after cleanup: %q", got)
	}
	if got := k.TXT(t, "_sib.example.com"); len(got) != 1 || got[0] != "foreign-sibling" {
		t.Fatalf("sibling TXT touched: %v", got)
	}
	if live, _ := j.Live(ctx); len(live) != 0 {
		t.Fatalf("journal still live: %+v", live)
	}
}

func TestDNSCNAMEWaitsForEveryAuthoritativeServer(t *testing.T) {
	zones := map[string]string{"example.com": testenv.Zone("example.com")}
	primary := testenv.StartKnot(t, zones)
	lagging := testenv.StartKnot(t, zones)
	e := engine(t, newJournal(), primary, func(o *dcv.Options) {
		o.AuthServers = map[string][]string{"knot": {primary.Addr, lagging.Addr}}
	})
	p, err := e.Present(ctx, "order:1", sectigoCNAME("example.com", "x.y.sectigo.com"), dcv.Target{DNS: "knot"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Wait(ctx, []*dcv.Published{p}) }()
	select {
	case err := <-done:
		t.Fatalf("ready while the second server does not serve the CNAME yet: %v", err)
	case <-time.After(700 * time.Millisecond):
	}
	// The second server first answers another target, then the right one.
	lagging.AddRR(t, "example.com", "_0f3a5c9e2b7d41a8.example.com. 60 IN CNAME wrong.sectigo.com.")
	select {
	case err := <-done:
		t.Fatalf("ready while the second server answers another target: %v", err)
	case <-time.After(700 * time.Millisecond):
	}
	lagging.AddRR(t, "example.com", "_0f3a5c9e2b7d41a8.example.com. 60 IN CNAME X.Y.SECTIGO.COM.") // replaces the CNAME
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("not ready after both servers serve the CNAME")
	}
	_ = e.CleanUp(ctx, []*dcv.Published{p})
}

func TestDNSCNAMERefusesToReplaceAnotherCNAME(t *testing.T) {
	k := testenv.StartKnot(t, map[string]string{"example.com": testenv.Zone("example.com",
		"_0f3a5c9e2b7d41a8 CNAME someone-else.example.net.", `_sib TXT "foreign"`)})
	j := newJournal()
	e := engine(t, j, k, nil)
	taken := "_0f3a5c9e2b7d41a8.example.com"

	// In the zone: adding would replace it (RFC 2136), so nothing is done.
	_, err := e.Present(ctx, "order:1", sectigoCNAME("example.com", "mine.sectigo.com"), dcv.Target{DNS: "knot"})
	if !errors.Is(err, dcv.ErrCNAMEConflict) || !strings.Contains(err.Error(), "someone-else.example.net") {
		t.Fatalf("existing CNAME: %v, want ErrCNAMEConflict naming the target", err)
	}
	if got := k.CNAME(t, taken); got != "someone-else.example.net" {
		t.Fatalf("the existing CNAME was changed: %q", got)
	}
	if live, _ := j.Live(ctx); len(live) != 0 {
		t.Fatalf("a refused CNAME was journaled: %+v", live)
	}

	// Other data at the name: an RFC 2136 server would silently ignore
	// the CNAME, so refuse, naming what is there.
	_, err = e.Present(ctx, "order:1", dcv.Challenge{Domain: "example.com", Method: dcv.DNSCNAME, RecordName: "_sib.example.com", Value: "x.sectigo.com"}, dcv.Target{DNS: "knot"})
	if !errors.Is(err, dcv.ErrCNAMEConflict) || !strings.Contains(err.Error(), "holds TXT") {
		t.Fatalf("name with a TXT: %v, want ErrCNAMEConflict naming the TXT", err)
	}
	if got := k.TXT(t, "_sib.example.com"); len(got) != 1 || got[0] != "foreign" {
		t.Fatalf("TXT at the name: %v", got)
	}

	// The same target already in place, made by someone else: used as it
	// is, and left alone by CleanUp.
	p, err := e.Present(ctx, "order:1", sectigoCNAME("example.com", "someone-else.example.net"), dcv.Target{DNS: "knot"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Wait(ctx, []*dcv.Published{p}); err != nil {
		t.Fatal(err)
	}
	if err := e.CleanUp(ctx, []*dcv.Published{p}); err != nil {
		t.Fatal(err)
	}
	if got := k.CNAME(t, taken); got != "someone-else.example.net" {
		t.Fatalf("a CNAME certd did not create was removed: %q", got)
	}

	// In the journal: another owner's CNAME at the name, journaled but not
	// (or not yet) in the zone.
	if err := j.Record(ctx, &dcv.Record{Owner: "order:2", Kind: "dns-cname", Provider: "knot", Zone: "example.com",
		Name: "_0f3a5c9e2b7d41a8.sub.example.com", Value: "first.sectigo.com", State: "intent"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Present(ctx, "order:3", sectigoCNAME("sub.example.com", "second.sectigo.com"), dcv.Target{DNS: "knot"}); !errors.Is(err, dcv.ErrCNAMEConflict) {
		t.Fatalf("journaled CNAME: %v, want ErrCNAMEConflict", err)
	}
	if got := k.CNAME(t, "_0f3a5c9e2b7d41a8.sub.example.com"); got != "" {
		t.Fatalf("CNAME published over a journaled one: %q", got)
	}
	// Delegation is a TXT matter.
	if _, err := e.Present(ctx, "order:4", sectigoCNAME("example.com", "x.sectigo.com"), dcv.Target{DNS: "knot", Delegate: "x.example.net"}); err == nil {
		t.Fatal("a delegated CNAME was accepted")
	}
	if err := e.CleanUpOwner(ctx, "order:2"); err != nil {
		t.Fatal(err)
	}
	if live, _ := j.Live(ctx); len(live) != 0 {
		t.Fatalf("after cleanup: journal %+v", live)
	}
}

// recordingProvider remembers the zones records were added to.
type recordingProvider struct {
	mu    sync.Mutex
	zones []string
}

func (r *recordingProvider) AppendRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.zones = append(r.zones, zone)
	return recs, nil
}

func (r *recordingProvider) DeleteRecords(_ context.Context, _ string, recs []libdns.Record) ([]libdns.Record, error) {
	return recs, nil
}

// A recursive resolver asked for the SOA of a name that is a CNAME (a DCV
// CNAME already in place) follows it and answers with the SOA of the
// target's zone; the record still belongs in the name's own zone.
func TestZoneIgnoresTheSOAOfACNAMETarget(t *testing.T) {
	soa := func(zone string) dns.RR {
		rr, _ := dns.NewRR(zone + " 60 IN SOA ns1." + zone + " hostmaster." + zone + " 1 3600 600 86400 60")
		return rr
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		switch name := strings.ToLower(q.Question[0].Name); name {
		case "_0f3a5c9e2b7d41a8.example.com.":
			cname, _ := dns.NewRR(name + " 60 IN CNAME a.b.uniq.sectigo.com.")
			m.Answer = []dns.RR{cname}
			m.Ns = []dns.RR{soa("sectigo.com.")} // the target does not exist
		case "example.com.":
			m.Answer = []dns.RR{soa("example.com.")}
		default:
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{soa("example.com.")}
		}
		_ = w.WriteMsg(m)
	})
	addr := fakeDNS(t, mux)
	prov := &recordingProvider{}
	e, err := dcv.NewEngine(dcv.Options{DNS: map[string]dcv.DNSProvider{"p": prov}, Journal: newJournal(), Resolvers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Present(ctx, "order:1", txt("_0f3a5c9e2b7d41a8.example.com", "v"), dcv.Target{DNS: "p"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(prov.zones, []string{"example.com."}) {
		t.Fatalf("published into %v, want example.com.", prov.zones)
	}
}

// fakeDNS serves h on a loopback UDP port until the test ends.
func fakeDNS(t *testing.T, h dns.Handler) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// Servers may answer a CNAME target in any case: the target compares
// case-insensitively, trailing dots aside.
func TestDNSCNAMETargetComparesCaseInsensitively(t *testing.T) {
	addr := fakeDNS(t, dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		name := strings.ToLower(q.Question[0].Name)
		switch {
		case name == "example.com." && q.Question[0].Qtype == dns.TypeSOA:
			soa, _ := dns.NewRR("example.com. 60 IN SOA ns1.example.com. hostmaster.example.com. 1 3600 600 86400 60")
			m.Answer = []dns.RR{soa}
		case name == "_0f3a5c9e2b7d41a8.example.com.":
			cname, _ := dns.NewRR(q.Question[0].Name + " 60 IN CNAME A1B2.C3D4.Uniq7.SECTIGO.com.")
			m.Answer = []dns.RR{cname}
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	}))
	e, err := dcv.NewEngine(dcv.Options{DNS: map[string]dcv.DNSProvider{"p": &recordingProvider{}}, Journal: newJournal(),
		Resolvers: []string{addr}, AuthServers: map[string][]string{"p": {addr}}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.Present(ctx, "order:1", sectigoCNAME("example.com", "a1b2.c3d4.uniq7.sectigo.com"), dcv.Target{DNS: "p"})
	if err != nil {
		t.Fatalf("the same target in another case was taken for a conflict: %v", err)
	}
	if err := e.Wait(ctx, []*dcv.Published{p}); err != nil {
		t.Fatal(err)
	}
}
