package store_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/certd/certd/store"
)

// TestCopySQLiteToPostgres: everything a SQLite store holds reads back the
// same through the PostgreSQL store, ids kept, keys sealed on the way; a
// second copy is refused.
func TestCopySQLiteToPostgres(t *testing.T) {
	src, _ := openTemp(t, store.Options{})
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(src.SaveCertificate(ctx, store.Certificate{Name: "www", Account: "atlas", Domains: []string{"example.com", "*.example.com"},
		KeyType: "ecdsa-p256", SpecHash: "h", State: store.StateValid, NextAction: "renew", NextActionAt: at, RetryAfter: at.Add(time.Hour)}))
	must(src.SaveCertificate(ctx, store.Certificate{Name: "api", Domains: []string{"api.example.com"}, State: store.StatePending, Failures: 2, LastError: "boom"}))
	keyPEM := []byte("-----BEGIN PRIVATE KEY-----\nwww\n-----END PRIVATE KEY-----\n")
	oid, err := src.CreateOrder(ctx, store.Order{IdempotencyKey: "www-1", CertName: "www", Account: "atlas", Generation: 1, CSR: []byte{1, 2},
		SpecHash: "h", State: store.OrderIntent}, store.PrivateKey{CertName: "www", KeyType: "ecdsa-p256", PEM: keyPEM, PublicSHA: "abc"})
	must(err)
	o, err := src.GetOrder(ctx, oid)
	must(err)
	o.State, o.CARef, o.SentAt = store.OrderIssued, "ref-1", at
	must(src.SaveOrder(ctx, o))
	vid, err := src.AddVersion(ctx, store.Version{CertName: "www", OrderID: oid, KeyID: o.KeyID, Serial: "01", NotBefore: at,
		NotAfter: at.Add(90 * 24 * time.Hour), Fingerprint: "ff", CertPEM: []byte("cert"), ChainPEM: []byte("chain")})
	must(err)
	must(src.UpdateCertificate(ctx, "www", func(c *store.Certificate) error { c.CurrentVersion = vid; return nil }))
	did, err := src.AddDeployment(ctx, store.Deployment{Host: "h1", CertName: "www", VersionID: vid, Dir: "/srv/tls/www", State: "started", StartedAt: at})
	must(err)
	must(src.SaveDeployment(ctx, store.Deployment{ID: did, State: "live", FinishedAt: at.Add(time.Second)}))
	_, err = src.AddDeployment(ctx, store.Deployment{Host: "h2", CertName: "www", VersionID: vid, Dir: "/srv/tls/www", State: "failed", Error: "disk", StartedAt: at})
	must(err)
	for i := range 3 {
		_, err := src.AppendEvent(ctx, store.Event{At: at.Add(time.Duration(i) * time.Minute), Level: "info", Kind: "issued", CertName: "www",
			Message: fmt.Sprint("m", i), Fields: map[string]string{"i": fmt.Sprint(i)}})
		must(err)
	}
	must(src.SaveCAAccount(ctx, store.CAAccount{Account: "le", Endpoint: "https://acme.example/dir", KeyPEM: []byte("ACCOUNT KEY"), Ref: "acct/1", BindingID: "kid"}))
	must(src.SaveClaim(ctx, store.Claim{Account: "atlas", Domain: "example.com", CAClaimID: "01", Token: "tok", Status: "VERIFIED", AssertBy: at, NextActionAt: at}))
	aid, err := src.JournalArtefact(ctx, store.Artefact{Owner: "cert:www", Kind: "dns-txt", Provider: "p", Name: "_acme-challenge.example.com", Value: "v"})
	must(err)
	must(src.SetAccountHold(ctx, store.AccountHold{Account: "atlas", Until: at, Reason: "429"}))
	must(src.RecordPass(ctx, store.Pass{Host: "h1", FinishedAt: at, PID: 7, Worked: 2}))
	must(src.SetHostCertificates(ctx, "h1", map[string]string{"api": "spec-a", "www": "spec-w"}))
	l, err := src.AcquireLease(ctx, "cert:www", "h1", time.Minute)
	must(err)

	dst, _ := openPG(t)
	stats, err := store.CopySQLiteToPostgres(ctx, src, dst)
	must(err)
	t.Logf("copied: %s", stats)
	for table, want := range map[string]int64{"certificates": 2, "private_keys": 1, "orders": 1, "cert_versions": 1, "deployments": 2,
		"events": 3, "ca_accounts": 1, "claims": 1, "dcv_artefacts": 1, "account_holds": 1, "passes": 1, "host_certificates": 2} {
		if stats.Rows[table] != want {
			t.Errorf("%s: %d rows copied, want %d", table, stats.Rows[table], want)
		}
	}

	same := func(what string, a, b any, errA, errB error) {
		t.Helper()
		if errA != nil || errB != nil {
			t.Fatalf("%s: %v / %v", what, errA, errB)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s differs:\nsqlite   %+v\npostgres %+v", what, a, b)
		}
	}
	{
		a, e1 := src.ListCertificates(ctx)
		b, e2 := dst.ListCertificates(ctx)
		same("certificates", a, b, e1, e2)
	}
	{
		a, e1 := src.GetOrder(ctx, oid)
		b, e2 := dst.GetOrder(ctx, oid)
		same("order", a, b, e1, e2)
	}
	{
		a, e1 := src.GetKey(ctx, o.KeyID)
		b, e2 := dst.GetKey(ctx, o.KeyID)
		same("key", a, b, e1, e2)
		if string(b.PEM) != string(keyPEM) {
			t.Errorf("key PEM %q", b.PEM)
		}
	}
	{
		a, e1 := src.ListVersions(ctx, "www")
		b, e2 := dst.ListVersions(ctx, "www")
		same("versions", a, b, e1, e2)
	}
	{
		a, e1 := src.ListDeployments(ctx, "www")
		b, e2 := dst.ListDeployments(ctx, "www")
		same("deployments", a, b, e1, e2)
	}
	{
		a, e1 := src.ListEvents(ctx, store.EventFilter{})
		b, e2 := dst.ListEvents(ctx, store.EventFilter{})
		same("events", a, b, e1, e2)
	}
	{
		a, e1 := src.GetCAAccount(ctx, "le", "https://acme.example/dir")
		b, e2 := dst.GetCAAccount(ctx, "le", "https://acme.example/dir")
		same("CA account", a, b, e1, e2)
	}
	{
		a, e1 := src.ListClaims(ctx)
		b, e2 := dst.ListClaims(ctx)
		same("claims", a, b, e1, e2)
	}
	{
		a, e1 := src.LiveArtefacts(ctx)
		b, e2 := dst.LiveArtefacts(ctx)
		same("artefacts", a, b, e1, e2)
	}
	{
		a, e1 := src.AccountHolds(ctx)
		b, e2 := dst.AccountHolds(ctx)
		same("account holds", a, b, e1, e2)
	}
	{
		a, e1 := src.ListPasses(ctx)
		b, e2 := dst.ListPasses(ctx)
		same("passes", a, b, e1, e2)
	}
	{
		a, e1 := src.HostCertificates(ctx)
		b, e2 := dst.HostCertificates(ctx)
		same("host certificates", a, b, e1, e2)
	}

	// New rows get ids past the copied ones, and lease tokens keep growing.
	id, err := dst.AppendEvent(ctx, store.Event{Level: "info", Kind: "k", Message: "after"})
	must(err)
	if id != 4 {
		t.Errorf("event id after the copy: %d, want 4", id)
	}
	aid2, err := dst.JournalArtefact(ctx, store.Artefact{Owner: "cert:www", Kind: "dns-txt", Provider: "p", Name: "n", Value: "v"})
	must(err)
	if aid2 <= aid {
		t.Errorf("artefact id after the copy: %d, not past %d", aid2, aid)
	}
	l2, err := dst.AcquireLease(ctx, "cert:www", "h1", time.Minute)
	must(err)
	if l2.Token <= l.Token {
		t.Errorf("lease token after the copy: %d, not past %d", l2.Token, l.Token)
	}

	if _, err := store.CopySQLiteToPostgres(ctx, src, dst); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second copy: %v, want ErrExists", err)
	}
}

// TestCopySealedSQLite: keys sealed in SQLite are opened with its key and
// sealed with PostgreSQL's.
func TestCopySealedSQLite(t *testing.T) {
	src, _ := openTemp(t, store.Options{Sealer: testSealer(t, 9)})
	if err := src.SaveCAAccount(ctx, store.CAAccount{Account: "le", Endpoint: "e", KeyPEM: []byte("K")}); err != nil {
		t.Fatal(err)
	}
	dst, _ := openPG(t)
	if _, err := store.CopySQLiteToPostgres(ctx, src, dst); err != nil {
		t.Fatal(err)
	}
	a, err := dst.GetCAAccount(ctx, "le", "e")
	if err != nil || string(a.KeyPEM) != "K" {
		t.Fatalf("account: %+v %v", a, err)
	}
}
