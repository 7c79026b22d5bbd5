package dcv_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/libdns/rfc2136"

	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/providers"
)

var ctx = context.Background()

// memJournal is a hand-written journal fake.
type memJournal struct {
	mu   sync.Mutex
	next int64
	recs map[int64]dcv.Record
}

func newJournal() *memJournal { return &memJournal{recs: map[int64]dcv.Record{}} }

func (j *memJournal) Record(_ context.Context, r *dcv.Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.next++
	r.ID = j.next
	j.recs[r.ID] = *r
	return nil
}

func (j *memJournal) Update(_ context.Context, r dcv.Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.recs[r.ID] = r
	return nil
}

func (j *memJournal) Live(context.Context) ([]dcv.Record, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []dcv.Record
	for _, r := range j.recs {
		if r.State != "removed" {
			r.Updated = time.Now()
			out = append(out, r)
		}
	}
	return out, nil
}

func provider(k *testenv.Knot) *rfc2136.Provider {
	return &rfc2136.Provider{Server: k.Addr, KeyName: k.KeyName, KeyAlg: k.KeyAlg, Key: k.Secret}
}

func engine(t *testing.T, j dcv.Journal, k *testenv.Knot, mod func(*dcv.Options)) *dcv.Engine {
	t.Helper()
	opts := dcv.Options{DNS: map[string]dcv.DNSProvider{"knot": provider(k)}, Journal: j, Resolvers: []string{k.Addr},
		AuthServers: map[string][]string{"knot": {k.Addr}}, Timeout: 10 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	e, err := dcv.NewEngine(opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestPublishWaitCleanupKeepsForeignRecords(t *testing.T) {
	k := testenv.StartKnot(t, map[string]string{"example.com": testenv.Zone("example.com", `@ TXT "v=spf1 -all"`, `www TXT "foreign-www"`)})
	j := newJournal()
	e := engine(t, j, k, nil)
	ch := dcv.Challenge{Domain: "www.example.com", Method: dcv.DNSTXT, RecordName: "www.example.com", Value: "token-123"}
	p, err := e.Present(ctx, "claim:atlas/www.example.com", ch, dcv.Target{DNS: "knot"})
	if err != nil {
		t.Fatal(err)
	}
	if got := k.TXT(t, "www.example.com"); !slices.Contains(got, "token-123") || !slices.Contains(got, "foreign-www") {
		t.Fatalf("after publish: %v (the RRset must be added to, not replaced)", got)
	}
	live, _ := j.Live(ctx)
	if len(live) != 1 || live[0].State != "published" || live[0].Zone != "example.com" {
		t.Fatalf("journal: %+v", live)
	}
	if err := e.Wait(ctx, []*dcv.Published{p}); err != nil {
		t.Fatal(err)
	}
	if err := e.CleanUp(ctx, []*dcv.Published{p}); err != nil {
		t.Fatal(err)
	}
	if got := k.TXT(t, "www.example.com"); len(got) != 1 || got[0] != "foreign-www" {
		t.Fatalf("after cleanup: %v, want only the foreign value", got)
	}
	if got := k.TXT(t, "example.com"); len(got) != 1 || got[0] != "v=spf1 -all" {
		t.Fatalf("apex TXT touched: %v", got)
	}
	if live, _ := j.Live(ctx); len(live) != 0 {
		t.Fatalf("journal still live: %+v", live)
	}
}

func TestWaitsForEveryAuthoritativeServer(t *testing.T) {
	zones := map[string]string{"example.com": testenv.Zone("example.com")}
	primary := testenv.StartKnot(t, zones)
	lagging := testenv.StartKnot(t, zones)
	e := engine(t, newJournal(), primary, func(o *dcv.Options) {
		o.AuthServers = map[string][]string{"knot": {primary.Addr, lagging.Addr}}
	})
	ch := dcv.Challenge{Domain: "example.com", Method: dcv.DNSTXT, RecordName: "example.com", Value: "tok"}
	p, err := e.Present(ctx, "claim:a/example.com", ch, dcv.Target{DNS: "knot"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Wait(ctx, []*dcv.Published{p}) }()
	select {
	case err := <-done:
		t.Fatalf("ready while the second server does not serve the record yet: %v", err)
	case <-time.After(700 * time.Millisecond):
	}
	lagging.AddTXT(t, "example.com", "example.com", "tok") // the second server catches up
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("not ready after both servers serve the record")
	}
	_ = e.CleanUp(ctx, []*dcv.Published{p})
}

func TestCNAMEDelegationIntoAnotherZone(t *testing.T) {
	k := testenv.StartKnot(t, map[string]string{
		"example.com": testenv.Zone("example.com",
			"_acme-challenge CNAME example.com.validation.example.net.",
			"_loop CNAME _loop2.example.com.", "_loop2 CNAME _loop.example.com."),
		"example.net": testenv.Zone("example.net"),
	})
	j := newJournal()
	e := engine(t, j, k, nil)
	ch := dcv.Challenge{Domain: "example.com", Method: dcv.DNSTXT, RecordName: "_acme-challenge.example.com", Value: "delegated-tok"}
	p, err := e.Present(ctx, "claim:a/example.com", ch, dcv.Target{DNS: "knot", Delegate: "example.com.validation.example.net"})
	if err != nil {
		t.Fatal(err)
	}
	if live, _ := j.Live(ctx); live[0].Zone != "example.net" || live[0].Name != "example.com.validation.example.net" {
		t.Fatalf("published into %+v, want zone example.net", live[0])
	}
	if err := e.Wait(ctx, []*dcv.Published{p}); err != nil {
		t.Fatal(err)
	}
	if got := k.TXT(t, "example.com.validation.example.net"); !slices.Contains(got, "delegated-tok") {
		t.Fatalf("delegate TXT: %v", got)
	}
	_ = e.CleanUp(ctx, []*dcv.Published{p})

	// A loop is an error, quickly, not a hang.
	loop := dcv.Challenge{Domain: "example.com", Method: dcv.DNSTXT, RecordName: "_loop.example.com", Value: "x"}
	p2, err := e.Present(ctx, "claim:a/example.com", loop, dcv.Target{DNS: "knot", Delegate: "x.example.net"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = e.Wait(ctx, []*dcv.Published{p2})
	if err == nil || !strings.Contains(err.Error(), "CNAME loop") || time.Since(start) > 3*time.Second {
		t.Fatalf("loop: %v after %v", err, time.Since(start))
	}
	// A missing CNAME is named with the record to create.
	miss := dcv.Challenge{Domain: "example.com", Method: dcv.DNSTXT, RecordName: "_other.example.com", Value: "x"}
	p3, _ := e.Present(ctx, "claim:a/example.com", miss, dcv.Target{DNS: "knot", Delegate: "y.example.net"})
	if err := e.Wait(ctx, []*dcv.Published{p3}); err == nil || !strings.Contains(err.Error(), "has no CNAME") {
		t.Fatalf("missing CNAME: %v", err)
	}
	if err := e.CleanUp(ctx, []*dcv.Published{p2, p3}); err != nil {
		t.Fatal(err)
	}
}

// crashingProvider publishes, then "crashes" before the engine can mark
// the record published.
type crashingJournal struct {
	*memJournal
	failUpdate bool
}

func (c *crashingJournal) Update(ctx context.Context, r dcv.Record) error {
	if c.failUpdate {
		return context.Canceled // the process died here
	}
	return c.memJournal.Update(ctx, r)
}

func TestCrashBetweenCreateAndJournalLeavesNoOrphan(t *testing.T) {
	k := testenv.StartKnot(t, map[string]string{"example.com": testenv.Zone("example.com", `@ TXT "foreign"`)})
	mem := newJournal()
	cj := &crashingJournal{memJournal: mem, failUpdate: true}
	e := engine(t, cj, k, nil)
	ch := dcv.Challenge{Domain: "example.com", Method: dcv.DNSTXT, RecordName: "example.com", Value: "orphan-tok"}
	if _, err := e.Present(ctx, "claim:a/example.com", ch, dcv.Target{DNS: "knot"}); err == nil {
		t.Fatal("expected the journal failure")
	}
	if got := k.TXT(t, "example.com"); !slices.Contains(got, "orphan-tok") {
		t.Fatalf("the record should exist at the crash: %v", got)
	}
	// After the restart: a new engine over the same journal reconciles.
	e2 := engine(t, mem, k, nil)
	if err := e2.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := k.TXT(t, "example.com"); len(got) != 1 || got[0] != "foreign" {
		t.Fatalf("after reconcile: %v, want only the foreign record", got)
	}
	if live, _ := mem.Live(ctx); len(live) != 0 {
		t.Fatalf("journal: %+v", live)
	}
}

func TestHTTPSelfCheck(t *testing.T) {
	var mode string
	var mu sync.Mutex
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		m := mode
		mu.Unlock()
		switch m {
		case "404":
			http.NotFound(w, r)
		case "wrong":
			_, _ = w.Write([]byte("something else"))
		case "redirect":
			http.Redirect(w, r, "https://elsewhere/", http.StatusFound)
		default:
			_, _ = w.Write([]byte("the-token"))
		}
	}))
	defer site.Close()
	addr := strings.TrimPrefix(site.URL, "http://")
	resp := providers.NewResponder("")
	e, err := dcv.NewEngine(dcv.Options{Journal: newJournal(), Resolvers: []string{"127.0.0.1:1"}, Timeout: 600 * time.Millisecond,
		HTTP: map[string]dcv.HTTPTarget{"mem": resp},
		HTTPDial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}})
	if err != nil {
		t.Fatal(err)
	}
	ch := dcv.Challenge{Domain: "www.example.com", Method: dcv.HTTPFile, Path: "/.well-known/pki-validation/gsdv.txt", Content: "the-token"}
	p, err := e.Present(ctx, "claim:a/www.example.com", ch, dcv.Target{HTTP: "mem"})
	if err != nil {
		t.Fatal(err)
	}
	for m, want := range map[string]string{"404": "answers 404", "wrong": "other content", "redirect": "redirects (302"} {
		mu.Lock()
		mode = m
		mu.Unlock()
		if err := e.Wait(ctx, []*dcv.Published{p}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", m, err, want)
		}
	}
	mu.Lock()
	mode = "ok"
	mu.Unlock()
	if err := e.Wait(ctx, []*dcv.Published{p}); err != nil {
		t.Fatal(err)
	}
	if err := e.CleanUp(ctx, []*dcv.Published{p}); err != nil {
		t.Fatal(err)
	}
}

// failingDeleter fails the first removal, as a provider outage would.
type failingDeleter struct {
	dcv.DNSProvider
	fail int
}

func (f *failingDeleter) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	if f.fail > 0 {
		f.fail--
		return nil, errors.New("provider unavailable")
	}
	return f.DNSProvider.DeleteRecords(ctx, zone, recs)
}

func TestFailedRemovalIsRetriedButInFlightRecordsAreNot(t *testing.T) {
	k := testenv.StartKnot(t, map[string]string{"example.com": testenv.Zone("example.com")})
	j := newJournal()
	flaky := &failingDeleter{DNSProvider: provider(k), fail: 1}
	e := engine(t, j, k, func(o *dcv.Options) { o.DNS = map[string]dcv.DNSProvider{"knot": flaky} })
	done, err := e.Present(ctx, "claim:a/a.example.com", dcv.Challenge{Domain: "a.example.com", Method: dcv.DNSTXT, RecordName: "a.example.com", Value: "used"}, dcv.Target{DNS: "knot"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.CleanUp(ctx, []*dcv.Published{done}); err == nil {
		t.Fatal("expected the first removal to fail")
	}
	inflight, err := e.Present(ctx, "claim:a/b.example.com", dcv.Challenge{Domain: "b.example.com", Method: dcv.DNSTXT, RecordName: "b.example.com", Value: "in-use"}, dcv.Target{DNS: "knot"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ReconcileStale(ctx, time.Hour, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := k.TXT(t, "a.example.com"); len(got) != 0 {
		t.Errorf("the failed removal was not retried: %v", got)
	}
	if got := k.TXT(t, "b.example.com"); len(got) != 1 {
		t.Errorf("a record still in use was removed: %v", got)
	}
	_ = e.CleanUp(ctx, []*dcv.Published{inflight})
}

func TestDelegatedSubzone(t *testing.T) {
	k := testenv.StartKnot(t, map[string]string{
		"example.com":     testenv.Zone("example.com", "sub NS ns1.sub.example.com.", "ns1.sub A 127.0.0.1"),
		"sub.example.com": testenv.Zone("sub.example.com"),
	})
	j := newJournal()
	e := engine(t, j, k, nil)
	for name, zone := range map[string]string{"a.b.sub.example.com": "sub.example.com", "a.b.example.com": "example.com"} {
		p, err := e.Present(ctx, "t", dcv.Challenge{Domain: name, Method: dcv.DNSTXT, RecordName: name, Value: "v"}, dcv.Target{DNS: "knot"})
		if err != nil {
			t.Fatal(err)
		}
		live, _ := j.Live(ctx)
		found := false
		for _, r := range live {
			found = found || r.Name == name && r.Zone == zone
		}
		if !found {
			t.Errorf("%s not published into %s: %+v", name, zone, live)
		}
		if err := e.Wait(ctx, []*dcv.Published{p}); err != nil {
			t.Fatal(err)
		}
		if err := e.CleanUp(ctx, []*dcv.Published{p}); err != nil {
			t.Fatal(err)
		}
	}
}
