// Package storetest is the conformance suite every store backend passes:
// the contract of store.Store written as tests.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/certd/certd/store"
)

// Run runs the suite. open returns a fresh, empty store for each subtest.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CertificateRoundTrip", certificateRoundTrip},
		{"DueByNextAction", dueByNextAction},
		{"ClaimRoundTrip", claimRoundTrip},
		{"OrderJournal", orderJournal},
		{"OrderIdempotency", orderIdempotency},
		{"VersionsAndCurrent", versionsAndCurrent},
		{"Artefacts", artefacts},
		{"Deployments", deployments},
		{"EventsAppendOnly", eventsAppendOnly},
		{"NotFound", notFound},
		{"CAAccounts", caAccounts},
		{"OrderSentAt", orderSentAt},
		{"AccountHolds", accountHolds},
		{"LastPass", lastPass},
		{"LeaseExclusive", leaseExclusive},
		{"LeaseTakeover", leaseTakeover},
		{"StaleLeaseWritesNothing", staleWrites},
		{"ClaimDue", claimDue},
		{"UpdateInOneTransaction", updateInOneTransaction},
		{"PerHost", perHost},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var ctx = context.Background()

// at is a fixed instant with millisecond precision.
var at = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func certificateRoundTrip(t *testing.T, s store.Store) {
	c := store.Certificate{Name: "www", Account: "atlas", Domains: []string{"example.com", "*.example.com"}, KeyType: "ecdsa-p256",
		SpecHash: "h1", State: store.StatePending, NextAction: "issue", NextActionAt: at, Failures: 2, LastError: "boom",
		RetryAfter: at.Add(time.Hour)}
	must(t, s.SaveCertificate(ctx, c))
	got, err := s.GetCertificate(ctx, "www")
	must(t, err)
	if got.Name != c.Name || got.Account != c.Account || fmt.Sprint(got.Domains) != fmt.Sprint(c.Domains) || got.KeyType != c.KeyType ||
		got.SpecHash != c.SpecHash || got.State != c.State || got.NextAction != c.NextAction || !got.NextActionAt.Equal(at) ||
		got.Failures != 2 || got.LastError != "boom" || !got.RetryAfter.Equal(at.Add(time.Hour)) || got.Current != nil {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, c)
	}
	if got.CreatedAt.IsZero() || got.UpdatedAt.IsZero() {
		t.Error("timestamps not set")
	}
	// Save replaces; NextActionAt zero clears the schedule.
	c.State, c.NextActionAt, c.Failures = store.StateValid, time.Time{}, 0
	must(t, s.SaveCertificate(ctx, c))
	got, err = s.GetCertificate(ctx, "www")
	must(t, err)
	if got.State != store.StateValid || !got.NextActionAt.IsZero() || got.Failures != 0 {
		t.Fatalf("update: %+v", got)
	}
	list, err := s.ListCertificates(ctx)
	must(t, err)
	if len(list) != 1 {
		t.Fatalf("list: %d", len(list))
	}
}

func dueByNextAction(t *testing.T, s store.Store) {
	for i, off := range []time.Duration{-2 * time.Hour, -time.Hour, 0, time.Hour} {
		must(t, s.SaveCertificate(ctx, store.Certificate{Name: fmt.Sprintf("c%d", i), Domains: []string{"a.example"},
			State: store.StatePending, NextAction: "issue", NextActionAt: at.Add(off)}))
	}
	must(t, s.SaveCertificate(ctx, store.Certificate{Name: "idle", Domains: []string{"a.example"}, State: store.StateValid}))
	due, err := s.DueCertificates(ctx, at, 10)
	must(t, err)
	var names []string
	for _, c := range due {
		names = append(names, c.Name)
	}
	if fmt.Sprint(names) != "[c0 c1 c2]" {
		t.Fatalf("due = %v, want [c0 c1 c2] (earliest first, nothing unscheduled)", names)
	}
	due, err = s.DueCertificates(ctx, at, 2)
	must(t, err)
	if len(due) != 2 {
		t.Fatalf("limit not honoured: %d", len(due))
	}
}

func claimRoundTrip(t *testing.T, s store.Store) {
	c := store.Claim{Account: "atlas", Domain: "example.com", CAClaimID: "01ABC", Token: "tok", Status: "PENDING", Method: "dns",
		AssertBy: at.Add(30 * 24 * time.Hour), NextAction: "verify", NextActionAt: at}
	must(t, s.SaveClaim(ctx, c))
	c.Status, c.ExpiresAt = "VERIFIED", at.Add(397*24*time.Hour)
	must(t, s.SaveClaim(ctx, c))
	got, err := s.GetClaim(ctx, "atlas", "example.com")
	must(t, err)
	if got.Status != "VERIFIED" || got.CAClaimID != "01ABC" || got.Token != "tok" || !got.ExpiresAt.Equal(c.ExpiresAt) || !got.AssertBy.Equal(c.AssertBy) {
		t.Fatalf("claim: %+v", got)
	}
	due, err := s.DueClaims(ctx, at, 10)
	must(t, err)
	if len(due) != 1 {
		t.Fatalf("due claims: %d", len(due))
	}
	list, err := s.ListClaims(ctx)
	must(t, err)
	if len(list) != 1 {
		t.Fatalf("claims: %d", len(list))
	}
}

func saveCert(t *testing.T, s store.Store, name string) {
	must(t, s.SaveCertificate(ctx, store.Certificate{Name: name, Domains: []string{"a.example"}, State: store.StatePending}))
}

// newOrder creates an intent order (and its key) for generation 1 of cert.
func newOrder(t *testing.T, s store.Store, cert string) store.Order {
	t.Helper()
	id, err := s.CreateOrder(ctx, store.Order{IdempotencyKey: cert + "-1", CertName: cert, Generation: 1, State: store.OrderIntent},
		store.PrivateKey{CertName: cert, KeyType: "ecdsa-p256", PEM: []byte("k"), PublicSHA: "x"})
	must(t, err)
	o, err := s.GetOrder(ctx, id)
	must(t, err)
	return o
}

func orderJournal(t *testing.T, s store.Store) {
	saveCert(t, s, "www")
	key := store.PrivateKey{CertName: "www", KeyType: "ecdsa-p256", PEM: []byte("-----BEGIN PRIVATE KEY-----"), PublicSHA: "abc"}
	id, err := s.CreateOrder(ctx, store.Order{IdempotencyKey: "www-1", CertName: "www", Account: "atlas", Generation: 1,
		CSR: []byte{1, 2, 3}, SpecHash: "h", State: store.OrderIntent}, key)
	must(t, err)
	o, err := s.GetOrder(ctx, id)
	must(t, err)
	if o.State != store.OrderIntent || o.KeyID == 0 || string(o.CSR) != "\x01\x02\x03" {
		t.Fatalf("order: %+v", o)
	}
	k, err := s.GetKey(ctx, o.KeyID)
	must(t, err)
	if string(k.PEM) != string(key.PEM) || k.PublicSHA != "abc" {
		t.Fatalf("key: %+v", k)
	}
	open, err := s.OpenOrders(ctx)
	must(t, err)
	if len(open) != 1 {
		t.Fatalf("open orders: %d", len(open))
	}
	o.State, o.CARef = store.OrderPending, "0A1B2C"
	must(t, s.SaveOrder(ctx, o))
	byKey, err := s.GetOrderByKey(ctx, "www-1")
	must(t, err)
	if byKey.CARef != "0A1B2C" || byKey.State != store.OrderPending {
		t.Fatalf("by key: %+v", byKey)
	}
	latest, err := s.LatestOrder(ctx, "www")
	must(t, err)
	if latest.ID != id {
		t.Fatalf("latest order %d, want %d", latest.ID, id)
	}
	if _, err := s.LatestOrder(ctx, "none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("latest of nothing: %v", err)
	}
	o.State = store.OrderIssued
	must(t, s.SaveOrder(ctx, o))
	open, err = s.OpenOrders(ctx)
	must(t, err)
	if len(open) != 0 {
		t.Fatalf("issued order still open")
	}
}

func orderIdempotency(t *testing.T, s store.Store) {
	saveCert(t, s, "www")
	key := store.PrivateKey{CertName: "www", KeyType: "ecdsa-p256", PEM: []byte("k"), PublicSHA: "x"}
	o := store.Order{IdempotencyKey: "www-1", CertName: "www", Generation: 1, State: store.OrderIntent}
	_, err := s.CreateOrder(ctx, o, key)
	must(t, err)
	if _, err := s.CreateOrder(ctx, o, key); !errors.Is(err, store.ErrExists) {
		t.Fatalf("same idempotency key: %v, want ErrExists", err)
	}
	o.IdempotencyKey = "www-1-again"
	if _, err := s.CreateOrder(ctx, o, key); !errors.Is(err, store.ErrExists) {
		t.Fatalf("same generation: %v, want ErrExists (N1)", err)
	}
	// The failed create stored no key either.
	if _, err := s.GetKey(ctx, 2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused order left its key behind: %v", err)
	}
}

func versionsAndCurrent(t *testing.T, s store.Store) {
	saveCert(t, s, "www")
	o := newOrder(t, s, "www")
	id := o.ID
	v := store.Version{CertName: "www", OrderID: id, KeyID: o.KeyID, Serial: "01AB", NotBefore: at, NotAfter: at.Add(90 * 24 * time.Hour),
		Fingerprint: "ff", CertPEM: []byte("cert"), ChainPEM: []byte("chain")}
	vid, err := s.AddVersion(ctx, v)
	must(t, err)
	c, err := s.GetCertificate(ctx, "www")
	must(t, err)
	c.CurrentVersion, c.State = vid, store.StateValid
	must(t, s.SaveCertificate(ctx, c))
	c, err = s.GetCertificate(ctx, "www")
	must(t, err)
	if c.Current == nil || c.Current.Serial != "01AB" || !c.Current.NotAfter.Equal(v.NotAfter) {
		t.Fatalf("current version: %+v", c.Current)
	}
	got, err := s.GetVersion(ctx, vid)
	must(t, err)
	if string(got.CertPEM) != "cert" || string(got.ChainPEM) != "chain" || got.OrderID != id {
		t.Fatalf("version: %+v", got)
	}
	vs, err := s.ListVersions(ctx, "www")
	must(t, err)
	if len(vs) != 1 {
		t.Fatalf("versions: %d", len(vs))
	}
}

func artefacts(t *testing.T, s store.Store) {
	id, err := s.JournalArtefact(ctx, store.Artefact{Owner: "claim:atlas/example.com", Kind: "dns-txt", Provider: "primary",
		Name: "_dnsauth.example.com", Value: "token"})
	must(t, err)
	live, err := s.LiveArtefacts(ctx)
	must(t, err)
	if len(live) != 1 || live[0].State != store.ArtefactIntent || live[0].ID != id {
		t.Fatalf("live: %+v", live)
	}
	a := live[0]
	a.State, a.Zone = store.ArtefactPublished, "example.com"
	must(t, s.SaveArtefact(ctx, a))
	a.State = store.ArtefactRemoved
	must(t, s.SaveArtefact(ctx, a))
	live, err = s.LiveArtefacts(ctx)
	must(t, err)
	if len(live) != 0 {
		t.Fatalf("removed artefact still live")
	}
}

func deployments(t *testing.T, s store.Store) {
	saveCert(t, s, "www")
	o := newOrder(t, s, "www")
	vid, err := s.AddVersion(ctx, store.Version{CertName: "www", KeyID: o.KeyID, Serial: "1", NotBefore: at, NotAfter: at, Fingerprint: "f",
		CertPEM: []byte("c"), ChainPEM: []byte("c")})
	must(t, err)
	did, err := s.AddDeployment(ctx, store.Deployment{CertName: "www", VersionID: vid, Dir: "/srv/tls/www", State: "started"})
	must(t, err)
	must(t, s.SaveDeployment(ctx, store.Deployment{ID: did, State: "live", FinishedAt: at}))
	ds, err := s.ListDeployments(ctx, "www")
	must(t, err)
	if len(ds) != 1 || ds[0].State != "live" || !ds[0].FinishedAt.Equal(at) || ds[0].StartedAt.IsZero() {
		t.Fatalf("deployments: %+v", ds)
	}
}

func eventsAppendOnly(t *testing.T, s store.Store) {
	for i := range 3 {
		_, err := s.AppendEvent(ctx, store.Event{At: at.Add(time.Duration(i) * time.Minute), Level: "info", Kind: "k",
			CertName: []string{"a", "b", "a"}[i], Message: fmt.Sprint("m", i), Fields: map[string]string{"i": fmt.Sprint(i)}})
		must(t, err)
	}
	all, err := s.ListEvents(ctx, store.EventFilter{})
	must(t, err)
	if len(all) != 3 || all[0].Message != "m0" || all[2].Fields["i"] != "2" {
		t.Fatalf("events (oldest first): %+v", all)
	}
	a, err := s.ListEvents(ctx, store.EventFilter{CertName: "a"})
	must(t, err)
	if len(a) != 2 {
		t.Fatalf("filter by cert: %d", len(a))
	}
	since, err := s.ListEvents(ctx, store.EventFilter{Since: at.Add(time.Minute)})
	must(t, err)
	if len(since) != 2 {
		t.Fatalf("since: %d", len(since))
	}
	last, err := s.ListEvents(ctx, store.EventFilter{Limit: 1})
	must(t, err)
	if len(last) != 1 || last[0].Message != "m2" {
		t.Fatalf("limit keeps the newest: %+v", last)
	}
}

func notFound(t *testing.T, s store.Store) {
	checks := map[string]error{}
	_, checks["cert"] = s.GetCertificate(ctx, "nope")
	_, checks["claim"] = s.GetClaim(ctx, "a", "b")
	_, checks["order"] = s.GetOrder(ctx, 42)
	_, checks["order by key"] = s.GetOrderByKey(ctx, "nope")
	_, checks["key"] = s.GetKey(ctx, 42)
	_, checks["version"] = s.GetVersion(ctx, 42)
	checks["save order"] = s.SaveOrder(ctx, store.Order{ID: 42})
	checks["save artefact"] = s.SaveArtefact(ctx, store.Artefact{ID: 42})
	checks["save deployment"] = s.SaveDeployment(ctx, store.Deployment{ID: 42})
	for what, err := range checks {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", what, err)
		}
	}
}

func caAccounts(t *testing.T, s store.Store) {
	const dir = "https://acme.example/directory"
	if _, err := s.GetCAAccount(ctx, "le", dir); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing account: %v, want ErrNotFound", err)
	}
	// The key is stored before registration, the reference after.
	must(t, s.SaveCAAccount(ctx, store.CAAccount{Account: "le", Endpoint: dir, KeyPEM: []byte("KEY"), BindingID: "kid-1"}))
	must(t, s.SaveCAAccount(ctx, store.CAAccount{Account: "le", Endpoint: dir, KeyPEM: []byte("KEY"), Ref: "https://acme.example/acct/1", BindingID: "kid-1"}))
	must(t, s.SaveCAAccount(ctx, store.CAAccount{Account: "le", Endpoint: dir + "2", KeyPEM: []byte("OTHER")}))
	a, err := s.GetCAAccount(ctx, "le", dir)
	must(t, err)
	if string(a.KeyPEM) != "KEY" || a.Ref != "https://acme.example/acct/1" || a.BindingID != "kid-1" || a.CreatedAt.IsZero() {
		t.Fatalf("round trip: %+v", a)
	}
	if err := s.SaveCAAccount(ctx, store.CAAccount{Account: "x", Endpoint: dir}); err == nil {
		t.Fatal("an account without a key was saved")
	}
}

// orderSentAt: the time an order was handed to the CA survives a save, and
// clearing it (a definite refusal) is stored too.
func orderSentAt(t *testing.T, s store.Store) {
	saveCert(t, s, "www")
	o := newOrder(t, s, "www")
	if !o.SentAt.IsZero() {
		t.Fatalf("a new order has SentAt %v", o.SentAt)
	}
	o.SentAt = at
	must(t, s.SaveOrder(ctx, o))
	got, err := s.GetOrder(ctx, o.ID)
	must(t, err)
	if !got.SentAt.Equal(at) {
		t.Fatalf("SentAt %v, want %v", got.SentAt, at)
	}
	got.SentAt = time.Time{}
	must(t, s.SaveOrder(ctx, got))
	if got, _ = s.GetOrder(ctx, o.ID); !got.SentAt.IsZero() {
		t.Fatalf("cleared SentAt read back as %v", got.SentAt)
	}
}

// accountHolds: one hold per account, replaced in place.
func accountHolds(t *testing.T, s store.Store) {
	must(t, s.SetAccountHold(ctx, store.AccountHold{Account: "atlas", Until: at, Reason: "429"}))
	must(t, s.SetAccountHold(ctx, store.AccountHold{Account: "acme", Until: at.Add(time.Hour), Reason: "busy"}))
	must(t, s.SetAccountHold(ctx, store.AccountHold{Account: "atlas", Until: at.Add(5 * time.Minute), Reason: "429 again"}))
	holds, err := s.AccountHolds(ctx)
	must(t, err)
	if len(holds) != 2 || holds[0].Account != "acme" || holds[1].Account != "atlas" ||
		!holds[1].Until.Equal(at.Add(5*time.Minute)) || holds[1].Reason != "429 again" {
		t.Fatalf("holds: %+v", holds)
	}
}

func lastPass(t *testing.T, s store.Store) {
	if _, err := s.LastPass(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("last pass of a new store: %v, want ErrNotFound", err)
	}
	must(t, s.RecordPass(ctx, store.Pass{FinishedAt: at, PID: 42, Worked: 3}))
	must(t, s.RecordPass(ctx, store.Pass{FinishedAt: at.Add(time.Minute), PID: 43, Worked: 0}))
	p, err := s.LastPass(ctx)
	must(t, err)
	if !p.FinishedAt.Equal(at.Add(time.Minute)) || p.PID != 43 || p.Worked != 0 {
		t.Fatalf("last pass: %+v, want the second one", p)
	}
}
