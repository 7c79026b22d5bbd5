package dcv_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/providers"
)

// countingProvider counts the records the engine adds.
type countingProvider struct {
	dcv.DNSProvider
	appends atomic.Int32
}

func (c *countingProvider) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	c.appends.Add(int32(len(recs)))
	return c.DNSProvider.AppendRecords(ctx, zone, recs)
}

func keepOrders(owner string) bool { return strings.HasPrefix(owner, "order:") }

func liveOwners(t *testing.T, j dcv.Journal) []string {
	t.Helper()
	live, err := j.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range live {
		out = append(out, r.Owner+" "+r.Name)
	}
	slices.Sort(out)
	return out
}

func txt(name, value string) dcv.Challenge {
	return dcv.Challenge{Domain: "example.com", Method: dcv.DNSTXT, RecordName: name, Value: value}
}

// What an open order published stays through the stale pass and a
// restart's Reconcile; what nobody keeps goes.
func TestKeptArtefactsSurviveHousekeepingAndRestarts(t *testing.T) {
	k := testenv.StartKnot(t, map[string]string{"example.com": testenv.Zone("example.com")})
	j := newJournal()
	withKeep := func(resp *providers.Responder) func(*dcv.Options) {
		return func(o *dcv.Options) {
			o.Keep = keepOrders
			o.HTTP = map[string]dcv.HTTPTarget{"resp": resp}
		}
	}
	e := engine(t, j, k, withKeep(providers.NewResponder("")))
	dnsT := dcv.Target{DNS: "knot"}
	if _, err := e.Present(ctx, "order:1", txt("_order.example.com", "order-tok"), dnsT); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Present(ctx, "cert:www", txt("_cert.example.com", "cert-tok"), dnsT); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Present(ctx, "order:1", atlasFile("a.example.com", "order-file"), dcv.Target{HTTP: "resp"}); err != nil {
		t.Fatal(err)
	}

	// Two hours later the stale pass removes the certificate's forgotten
	// record but not the order's.
	if err := e.ReconcileStale(ctx, time.Hour, time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := k.TXT(t, "_cert.example.com"); len(got) != 0 {
		t.Errorf("stale unkept record not removed: %v", got)
	}
	if got := k.TXT(t, "_order.example.com"); len(got) != 1 {
		t.Errorf("kept record removed by the stale pass: %v", got)
	}
	if got := liveOwners(t, j); !slices.Equal(got, []string{"order:1 " + gsdv, "order:1 _order.example.com"}) {
		t.Errorf("journal after the stale pass: %v", got)
	}

	// A restart: a new engine over the same journal, with an empty
	// responder (its files lived in memory). Reconcile keeps the order's
	// artefacts and puts its file back.
	resp := providers.NewResponder("")
	e2 := engine(t, j, k, withKeep(resp))
	if err := e2.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := k.TXT(t, "_order.example.com"); len(got) != 1 {
		t.Errorf("kept record removed by Reconcile: %v", got)
	}
	if got := liveOwners(t, j); len(got) != 2 {
		t.Errorf("journal after Reconcile: %v", got)
	}
	if !serves(t, resp, "a.example.com", gsdv, "order-file") {
		t.Error("Reconcile did not put the kept file back into the restarted responder")
	}

	// Without Keep (nil), Reconcile removes everything.
	e3 := engine(t, j, k, func(o *dcv.Options) { o.HTTP = map[string]dcv.HTTPTarget{"resp": resp} })
	if err := e3.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := k.TXT(t, "_order.example.com"); len(got) != 0 {
		t.Errorf("Reconcile without Keep left %v", got)
	}
	if serves(t, resp, "a.example.com", gsdv, "order-file") {
		t.Error("Reconcile without Keep left the file")
	}
	if got := liveOwners(t, j); len(got) != 0 {
		t.Errorf("journal: %v", got)
	}
}

// serves asks the responder directly, as the CA would with Host host.
func serves(t *testing.T, r *providers.Responder, host, path, want string) bool {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Host = host
	r.ServeHTTP(rec, req)
	return rec.Code == 200 && rec.Body.String() == want
}

// A resumed order waits on and cleans up what an earlier run published,
// without publishing it again.
func TestAdoptAndCleanUpOwnerAfterRestart(t *testing.T) {
	k := testenv.StartKnot(t, map[string]string{"example.com": testenv.Zone("example.com", `_sib TXT "foreign"`)})
	j := newJournal()
	counter := &countingProvider{DNSProvider: provider(k)}
	resp1 := providers.NewResponder("")
	e1 := engine(t, j, k, func(o *dcv.Options) {
		o.Keep = keepOrders
		o.DNS = map[string]dcv.DNSProvider{"knot": counter}
		o.HTTP = map[string]dcv.HTTPTarget{"resp": resp1}
	})
	const owner = "order:42"
	dnsT, httpT := dcv.Target{DNS: "knot"}, dcv.Target{HTTP: "resp"}
	var first []string
	for _, c := range []struct {
		ch dcv.Challenge
		t  dcv.Target
	}{
		{txt("_order.example.com", "order-tok"), dnsT},
		{sectigoCNAME("example.com", "h1.h2.uniq.sectigo.com"), dnsT},
		{atlasFile("a.example.com", "order-file"), httpT},
	} {
		p, err := e1.Present(ctx, owner, c.ch, c.t)
		if err != nil {
			t.Fatal(err)
		}
		first = append(first, p.Where())
	}
	if _, err := e1.Present(ctx, "cert:other", txt("_other.example.com", "other-tok"), dnsT); err != nil {
		t.Fatal(err)
	}
	// An intent the earlier run never saw through: not adopted, but
	// CleanUpOwner removes it.
	if err := j.Record(ctx, &dcv.Record{Owner: owner, Kind: "dns-txt", Provider: "knot", Zone: "example.com",
		Name: "_intent.example.com", Value: "half", State: "intent"}); err != nil {
		t.Fatal(err)
	}
	appends := counter.appends.Load()

	// The restart, with an empty responder and no Reconcile yet.
	srv, addr := serveResponder(t)
	e2 := engine(t, j, k, func(o *dcv.Options) {
		o.Keep = keepOrders
		o.DNS = map[string]dcv.DNSProvider{"knot": counter}
		o.HTTP = map[string]dcv.HTTPTarget{"resp": srv}
		o.HTTPDial = dialTo(addr)
	})
	ps, err := e2.Adopt(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, string(p.Challenge.Method)+" "+p.Where())
	}
	want := []string{"dns-txt _order.example.com", "dns-cname _0f3a5c9e2b7d41a8.example.com", "http-file " + gsdv}
	if !slices.Equal(got, want) {
		t.Fatalf("adopted %v, want %v", got, want)
	}
	if h := ps[2].Challenge; h.Domain != "a.example.com" || h.Path != gsdv || h.Content != "order-file" {
		t.Errorf("adopted file challenge: %+v", h)
	}
	if v := ps[1].Challenge; v.RecordName != "_0f3a5c9e2b7d41a8.example.com" || v.Value != "h1.h2.uniq.sectigo.com" {
		t.Errorf("adopted CNAME challenge: %+v", v)
	}
	if err := e2.Wait(ctx, ps); err != nil {
		t.Fatalf("waiting on adopted artefacts (the file must be back in the new responder): %v", err)
	}
	if n := counter.appends.Load(); n != appends {
		t.Errorf("adopting published %d more DNS records", n-appends)
	}
	if other, _ := e2.Adopt(ctx, "order:none"); len(other) != 0 {
		t.Errorf("adopted for an owner with nothing: %d", len(other))
	}

	// Presenting the same again is idempotent too.
	again, err := e2.Present(ctx, owner, txt("_order.example.com", "order-tok"), dnsT)
	if err != nil || again.Where() != first[0] {
		t.Fatalf("re-present: %v %v", again, err)
	}
	if n := counter.appends.Load(); n != appends {
		t.Errorf("re-presenting appended %d records", n-appends)
	}

	if err := e2.CleanUpOwner(ctx, owner); err != nil {
		t.Fatal(err)
	}
	if got := k.TXT(t, "_order.example.com"); len(got) != 0 {
		t.Errorf("TXT after CleanUpOwner: %v", got)
	}
	if got := k.CNAME(t, "_0f3a5c9e2b7d41a8.example.com"); got != "" {
		t.Errorf("CNAME after CleanUpOwner: %v", got)
	}
	if code, _ := fetch(t, addr, "a.example.com", gsdv); code != 404 {
		t.Errorf("file after CleanUpOwner: %d", code)
	}
	if got := k.TXT(t, "_other.example.com"); len(got) != 1 {
		t.Errorf("another owner's record touched: %v", got)
	}
	if got := k.TXT(t, "_sib.example.com"); len(got) != 1 {
		t.Errorf("foreign record touched: %v", got)
	}
	if got := liveOwners(t, j); !slices.Equal(got, []string{"cert:other _other.example.com"}) {
		t.Errorf("journal after CleanUpOwner: %v", got)
	}
}

// Presenting the same artefact twice for one owner returns the first
// publication; another owner's equal value is its own record, and the
// value stays until the last record of it is cleaned up.
func TestPresentIsIdempotentPerOwner(t *testing.T) {
	k := testenv.StartKnot(t, map[string]string{"example.com": testenv.Zone("example.com")})
	j := newJournal()
	counter := &countingProvider{DNSProvider: provider(k)}
	e := engine(t, j, k, func(o *dcv.Options) { o.DNS = map[string]dcv.DNSProvider{"knot": counter} })
	ch := txt("_acme-challenge.example.com", "same-value")
	p1, err := e.Present(ctx, "cert:a", ch, dcv.Target{DNS: "knot"})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := e.Present(ctx, "cert:a", ch, dcv.Target{DNS: "knot"})
	if err != nil {
		t.Fatal(err)
	}
	if n := counter.appends.Load(); n != 1 {
		t.Errorf("the same owner's second Present appended again: %d appends", n)
	}
	if got := liveOwners(t, j); len(got) != 1 {
		t.Fatalf("journal after the second Present: %v", got)
	}
	if err := e.Wait(ctx, []*dcv.Published{p2}); err != nil {
		t.Fatal(err)
	}
	p3, err := e.Present(ctx, "cert:b", ch, dcv.Target{DNS: "knot"})
	if err != nil {
		t.Fatal(err)
	}
	if got := liveOwners(t, j); len(got) != 2 {
		t.Fatalf("another owner's Present: journal %v", got)
	}
	if err := e.CleanUp(ctx, []*dcv.Published{p1, p2}); err != nil {
		t.Fatal(err)
	}
	if got := k.TXT(t, "_acme-challenge.example.com"); !slices.Equal(got, []string{"same-value"}) {
		t.Fatalf("cert:b's value after cert:a's cleanup: %v", got)
	}
	if err := e.CleanUp(ctx, []*dcv.Published{p3}); err != nil {
		t.Fatal(err)
	}
	if got := k.TXT(t, "_acme-challenge.example.com"); len(got) != 0 {
		t.Fatalf("after the last cleanup: %v", got)
	}
}
