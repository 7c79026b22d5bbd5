package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/certd/certd/store"
)

// The lease cases: the contract in store/lease.go. Leases run on the
// store's clock (a database's, for PostgreSQL), so expiry is waited for
// in real time with short leases.

type ctxT = context.Context

const shortTTL = 300 * time.Millisecond

func waitExpiry() { time.Sleep(shortTTL + 250*time.Millisecond) }

func leaseExclusive(t *testing.T, s store.Store) {
	l, err := s.AcquireLease(ctx, "cert:www", "host-a", time.Minute)
	must(t, err)
	if l.Token <= 0 || l.Holder != "host-a" || l.Resource != "cert:www" || l.Remaining <= 0 || l.Expires.IsZero() {
		t.Fatalf("lease: %+v", l)
	}
	if _, err := s.AcquireLease(ctx, "cert:www", "host-b", time.Minute); !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("second holder: %v, want ErrLeaseHeld", err)
	}
	if _, err := s.AcquireLease(ctx, "cert:www", "host-a", time.Minute); !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("same holder again: %v, want ErrLeaseHeld (a lease is never granted twice while live)", err)
	}
	// Another resource is independent.
	if _, err := s.AcquireLease(ctx, "cert:api", "host-b", time.Minute); err != nil {
		t.Fatal(err)
	}
	// Racing claimers: exactly one wins each resource.
	for round := range 5 {
		res := fmt.Sprintf("claim:acct/race%d.example", round)
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for h := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.AcquireLease(ctx, res, fmt.Sprintf("host-%d", h), time.Minute)
				if err == nil {
					mu.Lock()
					won++
					mu.Unlock()
				} else if !errors.Is(err, store.ErrLeaseHeld) {
					t.Errorf("racing claimer: %v", err)
				}
			}()
		}
		wg.Wait()
		if won != 1 {
			t.Fatalf("round %d: %d claimers won one resource, want 1", round, won)
		}
	}
}

func leaseTakeover(t *testing.T, s store.Store) {
	a, err := s.AcquireLease(ctx, "cert:www", "host-a", shortTTL)
	must(t, err)
	waitExpiry()
	b, err := s.AcquireLease(ctx, "cert:www", "host-b", time.Minute)
	must(t, err)
	if b.Token <= a.Token {
		t.Fatalf("takeover token %d not above the expired lease's %d", b.Token, a.Token)
	}
	if _, err := s.RenewLease(ctx, a, time.Minute); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("renewing the expired lease: %v, want ErrLeaseLost", err)
	}
	if err := s.ReleaseLease(ctx, a); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("releasing the expired lease: %v, want ErrLeaseLost", err)
	}
	// Renewal keeps the token and extends; release frees at once and the
	// next grant has a higher token.
	b2, err := s.RenewLease(ctx, b, 2*time.Minute)
	must(t, err)
	if b2.Token != b.Token || !b2.Expires.After(b.Expires) {
		t.Fatalf("renewed %+v from %+v", b2, b)
	}
	must(t, s.ReleaseLease(ctx, b2))
	c, err := s.AcquireLease(ctx, "cert:www", "host-c", time.Minute)
	must(t, err)
	if c.Token <= b.Token {
		t.Fatalf("token after release %d not above %d", c.Token, b.Token)
	}
	ls, err := s.ListLeases(ctx)
	must(t, err)
	if len(ls) != 1 || ls[0].Holder != "host-c" || ls[0].Token != c.Token {
		t.Fatalf("live leases: %+v", ls)
	}
}

// staleWrites: every write carrying a lease that was lost fails with
// ErrLeaseLost and changes nothing; the same write with the live lease
// succeeds.
func staleWrites(t *testing.T, s store.Store) {
	saveCert(t, s, "www")
	o := newOrder(t, s, "www")
	vid, err := s.AddVersion(ctx, store.Version{CertName: "www", KeyID: o.KeyID, Serial: "1", NotBefore: at, NotAfter: at, Fingerprint: "f",
		CertPEM: []byte("c"), ChainPEM: []byte("c")})
	must(t, err)
	did, err := s.AddDeployment(ctx, store.Deployment{CertName: "www", VersionID: vid, Dir: "/d", State: "started"})
	must(t, err)
	aid, err := s.JournalArtefact(ctx, store.Artefact{Owner: "cert:www", Kind: "dns-txt", Provider: "p", Name: "n", Value: "v"})
	must(t, err)
	must(t, s.SaveClaim(ctx, store.Claim{Account: "acct", Domain: "example.com", Status: "PENDING"}))

	stale, err := s.AcquireLease(ctx, "cert:www", "host-a", shortTTL)
	must(t, err)
	waitExpiry()
	live, err := s.AcquireLease(ctx, "cert:www", "host-b", time.Minute)
	must(t, err)
	sctx := store.WithLease(ctx, stale)
	lctx := store.WithLease(ctx, live)

	type write struct {
		name string
		do   func(c ctxT) error
	}
	ws := []write{
		{"SaveCertificate", func(c ctxT) error {
			return s.SaveCertificate(c, store.Certificate{Name: "www", Domains: []string{"a.example"}, State: store.StateFailing, LastError: "stale"})
		}},
		{"UpdateCertificate", func(c ctxT) error {
			return s.UpdateCertificate(c, "www", func(x *store.Certificate) error { x.LastError = "stale"; return nil })
		}},
		{"SaveClaim", func(c ctxT) error {
			return s.SaveClaim(c, store.Claim{Account: "acct", Domain: "example.com", Status: "STALE"})
		}},
		{"UpdateClaim", func(c ctxT) error {
			return s.UpdateClaim(c, "acct", "example.com", func(x *store.Claim) error { x.Status = "STALE"; return nil })
		}},
		{"CreateOrder", func(c ctxT) error {
			_, err := s.CreateOrder(c, store.Order{IdempotencyKey: "www-2", CertName: "www", Generation: 2, State: store.OrderIntent},
				store.PrivateKey{CertName: "www", KeyType: "ecdsa-p256", PEM: []byte("k2"), PublicSHA: "y"})
			return err
		}},
		{"SaveOrder", func(c ctxT) error {
			o2 := o
			o2.State, o2.LastError = store.OrderFailed, "stale"
			return s.SaveOrder(c, o2)
		}},
		{"AddVersion", func(c ctxT) error {
			_, err := s.AddVersion(c, store.Version{CertName: "www", KeyID: o.KeyID, Serial: "2", NotBefore: at, NotAfter: at, Fingerprint: "g",
				CertPEM: []byte("c"), ChainPEM: []byte("c")})
			return err
		}},
		{"JournalArtefact", func(c ctxT) error {
			_, err := s.JournalArtefact(c, store.Artefact{Owner: "cert:www", Kind: "dns-txt", Provider: "p", Name: "n2", Value: "v"})
			return err
		}},
		{"SaveArtefact", func(c ctxT) error {
			return s.SaveArtefact(c, store.Artefact{ID: aid, State: store.ArtefactRemoved})
		}},
		{"AddDeployment", func(c ctxT) error {
			_, err := s.AddDeployment(c, store.Deployment{CertName: "www", VersionID: vid, Dir: "/d", State: "started"})
			return err
		}},
		{"SaveDeployment", func(c ctxT) error {
			return s.SaveDeployment(c, store.Deployment{ID: did, State: "failed", Error: "stale"})
		}},
		{"AppendEvent", func(c ctxT) error {
			_, err := s.AppendEvent(c, store.Event{Level: "info", Kind: "stale", Message: "stale"})
			return err
		}},
		{"SaveCAAccount", func(c ctxT) error {
			return s.SaveCAAccount(c, store.CAAccount{Account: "acme", Endpoint: "https://x", KeyPEM: []byte("k")})
		}},
		{"SetAccountHold", func(c ctxT) error {
			return s.SetAccountHold(c, store.AccountHold{Account: "acct", Until: at})
		}},
		{"RecordPass", func(c ctxT) error { return s.RecordPass(c, store.Pass{Host: "h", FinishedAt: at, PID: 1}) }},
		{"SetHostCertificates", func(c ctxT) error { return s.SetHostCertificates(c, "h", specs("www")) }},
	}
	snapshot := func() string {
		c, _ := s.GetCertificate(ctx, "www")
		cl, _ := s.GetClaim(ctx, "acct", "example.com")
		oo, _ := s.GetOrder(ctx, o.ID)
		vs, _ := s.ListVersions(ctx, "www")
		arts, _ := s.LiveArtefacts(ctx)
		ds, _ := s.ListDeployments(ctx, "www")
		evs, _ := s.ListEvents(ctx, store.EventFilter{})
		_, acctErr := s.GetCAAccount(ctx, "acme", "https://x")
		holds, _ := s.AccountHolds(ctx)
		passes, _ := s.ListPasses(ctx)
		hosts, _ := s.HostCertificates(ctx)
		latest, _ := s.LatestOrder(ctx, "www")
		return fmt.Sprintf("%s|%s|%s|%s|%d|%d|%+v|%d|%v|%d|%d|%v|%d",
			c.State, c.LastError, cl.Status, oo.State, len(vs), len(arts), ds, len(evs), acctErr != nil, len(holds), len(passes), hosts, latest.Generation)
	}
	before := snapshot()
	for _, w := range ws {
		if err := w.do(sctx); !errors.Is(err, store.ErrLeaseLost) {
			t.Errorf("%s with a lost lease: %v, want ErrLeaseLost", w.name, err)
		}
	}
	if after := snapshot(); after != before {
		t.Fatalf("writes with a lost lease changed the store:\nbefore %s\nafter  %s", before, after)
	}
	for _, w := range ws {
		if err := w.do(lctx); err != nil {
			t.Errorf("%s with the live lease: %v", w.name, err)
		}
	}
	if after := snapshot(); after == before {
		t.Fatal("writes with the live lease changed nothing")
	}
	// Released: the holder's writes fail too.
	must(t, s.ReleaseLease(ctx, live))
	if err := s.SaveCertificate(lctx, store.Certificate{Name: "www", Domains: []string{"a.example"}, State: store.StateValid}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("write after release: %v, want ErrLeaseLost", err)
	}
}

func claimDue(t *testing.T, s store.Store) {
	now := at.Add(time.Hour)
	for i := range 6 {
		must(t, s.SaveCertificate(ctx, store.Certificate{Name: fmt.Sprintf("c%d", i), Domains: []string{"a.example"}, State: store.StatePending,
			NextAction: "issue", NextActionAt: at.Add(time.Duration(i) * time.Minute)}))
	}
	// c5 is due later than now; c4 is not listed by the host.
	must(t, s.SaveCertificate(ctx, store.Certificate{Name: "later", Domains: []string{"a.example"}, NextAction: "renew", NextActionAt: now.Add(time.Hour)}))
	must(t, s.SetHostCertificates(ctx, "h1", specs("c0", "c1", "c2", "c3", "c5", "later")))
	must(t, s.SetHostCertificates(ctx, "h2", specs("c4")))
	// h4 lists c0 with another spec (its configuration asks other names):
	// it never claims it.
	must(t, s.SetHostCertificates(ctx, "h4", map[string]string{"c0": "other-spec"}))
	hc, err := s.HostCertificates(ctx)
	must(t, err)
	if keys(hc["h1"]) != "[c0 c1 c2 c3 c5 later]" || keys(hc["h2"]) != "[c4]" || hc["h4"]["c0"] != "other-spec" {
		t.Fatalf("host certificates: %v", hc)
	}
	if got, err := s.ClaimDueCertificates(ctx, "h4", "h4-a", now, time.Minute, 10); err != nil || len(got) != 0 {
		t.Fatalf("a host listing another spec claimed %+v (%v)", got, err)
	}
	// c1 is leased by another holder already.
	_, err = s.AcquireLease(ctx, store.CertificateResource("c1"), "other", time.Minute)
	must(t, err)
	got, err := s.ClaimDueCertificates(ctx, "h1", "h1-a", now, time.Minute, 3)
	must(t, err)
	var names []string
	for _, g := range got {
		names = append(names, g.Certificate.Name)
		if g.Lease.Resource != store.CertificateResource(g.Certificate.Name) || g.Lease.Holder != "h1-a" || g.Lease.Token <= 0 {
			t.Fatalf("lease %+v", g.Lease)
		}
		if len(g.Certificate.Domains) != 1 {
			t.Fatalf("certificate not read in full: %+v", g.Certificate)
		}
	}
	if fmt.Sprint(names) != "[c0 c2 c3]" {
		t.Fatalf("claimed %v, want [c0 c2 c3] (earliest first, c1 leased elsewhere, c4 another host's)", names)
	}
	// What is claimed is not claimed again; the rest is.
	got, err = s.ClaimDueCertificates(ctx, "h1", "h1-b", now, time.Minute, 10)
	must(t, err)
	if len(got) != 1 || got[0].Certificate.Name != "c5" {
		t.Fatalf("second claim: %+v, want only c5", got)
	}
	// Replacing a host's set drops what it no longer lists.
	must(t, s.SetHostCertificates(ctx, "h1", specs("c0")))
	hc, err = s.HostCertificates(ctx)
	must(t, err)
	if keys(hc["h1"]) != "[c0]" {
		t.Fatalf("after replacing: %v", hc)
	}

	// Two claimers racing over many due certificates never get one
	// certificate twice.
	var all []string
	for i := range 60 {
		n := fmt.Sprintf("r%02d", i)
		all = append(all, n)
		must(t, s.SaveCertificate(ctx, store.Certificate{Name: n, Domains: []string{"a.example"}, NextAction: "issue", NextActionAt: at}))
	}
	must(t, s.SetHostCertificates(ctx, "h3", specs(all...)))
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := s.ClaimDueCertificates(ctx, "h3", fmt.Sprintf("w%d", w), now, time.Minute, 7)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, g := range got {
					seen[g.Certificate.Name]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != len(all) {
		t.Fatalf("claimed %d of %d due certificates", len(seen), len(all))
	}
	for n, k := range seen {
		if k != 1 {
			t.Fatalf("%s claimed %d times", n, k)
		}
	}
}

func updateInOneTransaction(t *testing.T, s store.Store) {
	first := store.Certificate{Name: "new", Account: "a", Domains: []string{"x.example"}, State: store.StateIssuing, Failures: 3}
	must(t, s.InsertCertificate(ctx, first))
	if err := s.InsertCertificate(ctx, store.Certificate{Name: "new", Account: "b", State: store.StatePending}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("a second insert: %v, want ErrExists", err)
	}
	if c, _ := s.GetCertificate(ctx, "new"); c.State != store.StateIssuing || c.Failures != 3 || c.Account != "a" {
		t.Fatalf("a refused insert changed the row: %+v", c)
	}
	if err := s.UpdateCertificate(ctx, "nope", func(*store.Certificate) error { t.Fatal("fn called for a missing row"); return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of a missing certificate: %v, want ErrNotFound", err)
	}
	if _, err := s.GetCertificate(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("an update of a missing row created it")
	}
	must(t, s.SaveCertificate(ctx, store.Certificate{Name: "www", Account: "a", Domains: []string{"x.example"}, State: store.StatePending, Failures: 0}))
	boom := errors.New("boom")
	if err := s.UpdateCertificate(ctx, "www", func(c *store.Certificate) error { c.State = store.StateFailing; return boom }); !errors.Is(err, boom) {
		t.Fatalf("fn's error: %v", err)
	}
	if c, _ := s.GetCertificate(ctx, "www"); c.State != store.StatePending {
		t.Fatalf("an update whose fn failed wrote %q", c.State)
	}
	// Concurrent increments are all kept: no update lands between another's
	// read and write.
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.UpdateCertificate(ctx, "www", func(c *store.Certificate) error { c.Failures++; return nil }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	c, err := s.GetCertificate(ctx, "www")
	must(t, err)
	if c.Failures != 20 || c.Account != "a" || fmt.Sprint(c.Domains) != "[x.example]" {
		t.Fatalf("after 20 concurrent increments: failures %d, %+v", c.Failures, c)
	}
	must(t, s.SaveClaim(ctx, store.Claim{Account: "acct", Domain: "example.com", Status: "PENDING"}))
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			must(t, s.UpdateClaim(ctx, "acct", "example.com", func(c *store.Claim) error { c.Failures++; return nil }))
		}()
	}
	wg.Wait()
	cl, err := s.GetClaim(ctx, "acct", "example.com")
	must(t, err)
	if cl.Failures != 5 || cl.Status != "PENDING" {
		t.Fatalf("claim after 5 increments: %+v", cl)
	}
	if err := s.UpdateClaim(ctx, "acct", "nope.example", func(*store.Claim) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of a missing claim: %v", err)
	}
}

func perHost(t *testing.T, s store.Store) {
	saveCert(t, s, "www")
	o := newOrder(t, s, "www")
	vid, err := s.AddVersion(ctx, store.Version{CertName: "www", KeyID: o.KeyID, Serial: "1", NotBefore: at, NotAfter: at, Fingerprint: "f",
		CertPEM: []byte("c"), ChainPEM: []byte("c")})
	must(t, err)
	for _, h := range []string{"web1", "web2"} {
		_, err := s.AddDeployment(ctx, store.Deployment{Host: h, CertName: "www", VersionID: vid, Dir: "/d", State: "live", FinishedAt: at})
		must(t, err)
	}
	ds, err := s.ListDeployments(ctx, "www")
	must(t, err)
	if len(ds) != 2 || ds[0].Host != "web2" || ds[1].Host != "web1" {
		t.Fatalf("deployments by host: %+v", ds)
	}
	must(t, s.RecordPass(ctx, store.Pass{Host: "web1", FinishedAt: at, PID: 1, Worked: 2}))
	must(t, s.RecordPass(ctx, store.Pass{Host: "web2", FinishedAt: at.Add(time.Minute), PID: 2}))
	must(t, s.RecordPass(ctx, store.Pass{Host: "web1", FinishedAt: at.Add(2 * time.Minute), PID: 3}))
	ps, err := s.ListPasses(ctx)
	must(t, err)
	if len(ps) != 2 || ps[0].Host != "web1" || ps[0].PID != 3 || ps[1].Host != "web2" {
		t.Fatalf("passes: %+v", ps)
	}
	p, err := s.LastPass(ctx)
	must(t, err)
	if p.Host != "web1" || p.PID != 3 {
		t.Fatalf("last pass: %+v", p)
	}
}

// specs lists names with the empty spec hash of certificates saved
// without one.
func specs(names ...string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[n] = ""
	}
	return m
}

func keys(m map[string]string) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return fmt.Sprint(out)
}
