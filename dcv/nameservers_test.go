package dcv_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/testenv"
)

// iterativeResolver answers queries the way a recursive resolver does,
// from the parent server down: it follows referrals through their glue,
// on port (name servers all listen on one port, as on 53), and hands
// back the first answer that is not a referral. It keeps no cache.
func iterativeResolver(parent string, port int) dns.HandlerFunc {
	return func(w dns.ResponseWriter, q *dns.Msg) {
		server := parent
		var resp *dns.Msg
		for range 4 {
			m := q.Copy()
			m.Id = dns.Id()
			m.RecursionDesired = false
			r, err := dns.Exchange(m, server)
			if err != nil {
				fail := new(dns.Msg)
				fail.SetRcode(q, dns.RcodeServerFailure)
				_ = w.WriteMsg(fail)
				return
			}
			resp = r
			if r.Authoritative || len(r.Answer) > 0 || r.Rcode != dns.RcodeSuccess {
				break
			}
			next := ""
			for _, rr := range r.Extra {
				if a, ok := rr.(*dns.A); ok {
					next = net.JoinHostPort(a.A.String(), strconv.Itoa(port))
					break
				}
			}
			if next == "" {
				break
			}
			server = next
		}
		resp.Id, resp.Authoritative, resp.RecursionAvailable = q.Id, false, true
		_ = w.WriteMsg(resp)
	}
}

// nsWorld is a parent zone example.test on 127.0.0.4 delegating to two
// servers, 127.0.0.2 and 127.0.0.3, that each serve the child zones
// (primaries both: what one is told, the other does not know until it is
// told too). Every server listens on the same port, which only NSPort
// tells the engine; the engine's resolver knows nothing but the parent.
//
//   - sub.example.test: NS ns1.sub (127.0.0.2) and ns2.sub (127.0.0.3),
//     with glue in the parent.
//   - lame.example.test: NS ns1.lame (127.0.0.2) and ns9.lame, which has
//     no address anywhere (yet).
type nsWorld struct {
	a, b     *testenv.Knot
	port     int
	resolver string
}

func startNSWorld(t *testing.T) *nsWorld {
	t.Helper()
	parent := `@ SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
@ NS ns.example.test.
ns A 127.0.0.4
sub NS ns1.sub.example.test.
sub NS ns2.sub.example.test.
ns1.sub A 127.0.0.2
ns2.sub A 127.0.0.3
lame NS ns1.lame.example.test.
lame NS ns9.lame.example.test.
ns1.lame A 127.0.0.2
`
	child := func(zone string, ns ...string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "@ SOA %s.%s. hostmaster.%s. 1 3600 600 86400 60\n", ns[0], zone, zone)
		for _, n := range ns {
			fmt.Fprintf(&b, "@ NS %s.%s.\n", n, zone)
		}
		return b.String()
	}
	children := map[string]string{
		"sub.example.test":  child("sub.example.test", "ns1", "ns2") + "ns1 A 127.0.0.2\nns2 A 127.0.0.3\n",
		"lame.example.test": child("lame.example.test", "ns1", "ns9") + "ns1 A 127.0.0.2\n",
	}
	knots, port := testenv.StartKnotsSharingPort(t, []testenv.KnotSpec{
		{IP: "127.0.0.4", Zones: map[string]string{"example.test": parent}},
		{IP: "127.0.0.2", Zones: children},
		{IP: "127.0.0.3", Zones: children},
	})
	if port == 53 {
		t.Fatal("the shared port is 53: the test would not show that NSPort is used")
	}
	return &nsWorld{a: knots[1], b: knots[2], port: port, resolver: fakeDNS(t, iterativeResolver(knots[0].Addr, port))}
}

// engineVia publishes through k, finding servers by NS records only.
func (w *nsWorld) engineVia(t *testing.T, k *testenv.Knot) (*dcv.Engine, *memJournal) {
	t.Helper()
	j := newJournal()
	e, err := dcv.NewEngine(dcv.Options{DNS: map[string]dcv.DNSProvider{"p": provider(k)}, Journal: j,
		Resolvers: []string{w.resolver}, NSPort: w.port, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e, j
}

// waitBriefly runs a Wait bounded to d: it must not be satisfied.
func waitBriefly(t *testing.T, e *dcv.Engine, p *dcv.Published, d time.Duration) error {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := e.Wait(c, []*dcv.Published{p})
	if err == nil || !errors.Is(err, dcv.ErrNotVisible) {
		t.Fatalf("wait satisfied (%v), but a name server does not serve the record", err)
	}
	return err
}

// waitInBackground starts a Wait; the channel gets its result.
func waitInBackground(e *dcv.Engine, p *dcv.Published) <-chan error {
	done := make(chan error, 1)
	go func() { done <- e.Wait(ctx, []*dcv.Published{p}) }()
	return done
}

func notDoneFor(t *testing.T, done <-chan error, d time.Duration, why string) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("wait ended (%v) while %s", err, why)
	case <-time.After(d):
	}
}

func doneWithin(t *testing.T, done <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(d):
		t.Fatal("wait not satisfied although every name server serves the record")
	}
}

// TestWaitAsksEveryNameServerFoundThroughNS: with no AuthServers, the
// engine finds the zone's servers through its NS records and their
// addresses, and asks each on NSPort. A record published through one
// server is not visible until the other serves it too, whichever of the
// two it was published through.
func TestWaitAsksEveryNameServerFoundThroughNS(t *testing.T) {
	w := startNSWorld(t)
	for i, c := range []struct {
		name       string
		via, other *testenv.Knot
	}{
		{"published through ns1", w.a, w.b},
		{"published through ns2", w.b, w.a},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, j := w.engineVia(t, c.via)
			value := fmt.Sprintf("token-%d", i)
			ch := dcv.Challenge{Domain: "sub.example.test", Method: dcv.DNSTXT, RecordName: "_acme-challenge.sub.example.test", Value: value}
			p, err := e.Present(ctx, "cert:www", ch, dcv.Target{DNS: "p"})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = e.CleanUp(ctx, []*dcv.Published{p}) }()
			if live, _ := j.Live(ctx); len(live) != 1 || live[0].Zone != "sub.example.test" {
				t.Fatalf("journal: %+v, want zone sub.example.test", live)
			}
			err = waitBriefly(t, e, p, 1500*time.Millisecond)
			if !strings.Contains(err.Error(), c.other.Addr) {
				t.Fatalf("the wait does not name the server that lags (%s): %v", c.other.Addr, err)
			}
			done := waitInBackground(e, p)
			notDoneFor(t, done, 700*time.Millisecond, "the second server still lacks the record")
			c.other.AddTXT(t, "sub.example.test", "_acme-challenge.sub.example.test", value)
			doneWithin(t, done, 10*time.Second)
		})
	}
	t.Run("CNAME", func(t *testing.T) {
		e, _ := w.engineVia(t, w.a)
		ch := dcv.Challenge{Domain: "sub.example.test", Method: dcv.DNSCNAME, RecordName: "_0f3a5c9e.sub.example.test", Value: "abc.sectigo.example.net"}
		p, err := e.Present(ctx, "order:1", ch, dcv.Target{DNS: "p"})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = e.CleanUp(ctx, []*dcv.Published{p}) }()
		if err := waitBriefly(t, e, p, 1500*time.Millisecond); !strings.Contains(err.Error(), w.b.Addr) {
			t.Fatalf("the wait does not name the server that lags (%s): %v", w.b.Addr, err)
		}
		done := waitInBackground(e, p)
		notDoneFor(t, done, 700*time.Millisecond, "the second server still lacks the CNAME")
		w.b.AddRR(t, "sub.example.test", "_0f3a5c9e.sub.example.test. 60 IN CNAME abc.sectigo.example.net.")
		doneWithin(t, done, 10*time.Second)
	})
}

// TestNameServerWithoutAddressIsNotServing: a name server whose address
// cannot be found is not left out of "every authoritative server": the
// wait goes on, fails naming it when it runs out, and once the name
// server has an address it is asked like the others.
func TestNameServerWithoutAddressIsNotServing(t *testing.T) {
	w := startNSWorld(t)
	e, _ := w.engineVia(t, w.a)
	ch := dcv.Challenge{Domain: "lame.example.test", Method: dcv.DNSTXT, RecordName: "_acme-challenge.lame.example.test", Value: "tok-lame"}
	p, err := e.Present(ctx, "cert:lame", ch, dcv.Target{DNS: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.CleanUp(ctx, []*dcv.Published{p}) }()
	// ns1 serves the record; ns9 cannot be asked.
	err = waitBriefly(t, e, p, 1500*time.Millisecond)
	if !strings.Contains(err.Error(), "ns9.lame.example.test") {
		t.Fatalf("the wait does not name the name server without an address: %v", err)
	}
	t.Logf("wait: %v", err)

	done := waitInBackground(e, p)
	notDoneFor(t, done, 700*time.Millisecond, "ns9 has no address")
	// ns9 gets an address: 127.0.0.3, which does not serve the record yet.
	for _, k := range []*testenv.Knot{w.a, w.b} {
		k.AddRR(t, "lame.example.test", "ns9.lame.example.test. 60 IN A 127.0.0.3")
	}
	notDoneFor(t, done, 2500*time.Millisecond, "ns9 (127.0.0.3) does not serve the record")
	w.b.AddTXT(t, "lame.example.test", "_acme-challenge.lame.example.test", "tok-lame")
	doneWithin(t, done, 10*time.Second)
}

func TestNSPortOutOfRange(t *testing.T) {
	for _, port := range []int{-1, 65536} {
		if _, err := dcv.NewEngine(dcv.Options{Journal: newJournal(), Resolvers: []string{"127.0.0.1:1"}, NSPort: port}); err == nil {
			t.Errorf("NSPort %d accepted", port)
		}
	}
}
