package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certd/certd/internal/pgtest"
	"github.com/certd/certd/store"
	"github.com/certd/certd/store/storetest"
)

// The PostgreSQL tests share one server per test binary (pgtest.Shared)
// and take a fresh database each.

func testSealer(t testing.TB, b byte) store.Sealer {
	t.Helper()
	s, err := store.NewAESGCM(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openPG opens a store on a fresh database of the shared server.
func openPG(t testing.TB) (*store.Postgres, string) {
	t.Helper()
	dsn := pgtest.Shared(t).NewDatabase(t)
	return openPGAt(t, dsn, store.Options{Sealer: testSealer(t, 1)}), dsn
}

func openPGAt(t testing.TB, dsn string, opts store.Options) *store.Postgres {
	t.Helper()
	s, err := store.OpenPostgres(ctx, dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sqlConn is a plain connection to dsn, to look at rows as they are stored.
func sqlConn(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(ctx) })
	return c
}

func TestPostgresConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openPG(t)
		return s
	})
}

func TestPostgresRefusesNewerSchema(t *testing.T) {
	s, dsn := openPG(t)
	s.Close()
	if _, err := sqlConn(t, dsn).Exec(ctx, "UPDATE schema_version SET version = version + 1"); err != nil {
		t.Fatal(err)
	}
	_, err := store.OpenPostgres(ctx, dsn, store.Options{Sealer: testSealer(t, 1)})
	if !errors.Is(err, store.ErrSchemaNewer) {
		t.Fatalf("newer schema: %v, want ErrSchemaNewer", err)
	}
	want := fmt.Sprintf("schema version %d, this certd knows up to %d", store.PGSchemaVersion()+1, store.PGSchemaVersion())
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name the versions (%q)", err, want)
	}
	if strings.Contains(err.Error(), pgtest.Shared(t).Password()) {
		t.Fatalf("the error holds the password: %v", err)
	}
}

func TestPostgresNeedsASealer(t *testing.T) {
	dsn := pgtest.Shared(t).NewDatabase(t)
	_, err := store.OpenPostgres(ctx, dsn, store.Options{})
	if err == nil || !strings.Contains(err.Error(), "encryption key is required") {
		t.Fatalf("open without a sealer: %v", err)
	}
	// Nothing was created either.
	var n int
	if err := sqlConn(t, dsn).QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d tables after a refused open (%v)", n, err)
	}
}

func TestPostgresRefusesAnotherKey(t *testing.T) {
	s, dsn := openPG(t)
	s.Close()
	_, err := store.OpenPostgres(ctx, dsn, store.Options{Sealer: testSealer(t, 2)})
	if !errors.Is(err, store.ErrSealed) || !strings.Contains(err.Error(), "not the one this database was written with") {
		t.Fatalf("another key: %v", err)
	}
	// The right key still opens it.
	openPGAt(t, dsn, store.Options{Sealer: testSealer(t, 1)})
}

// TestPostgresSecretsAreSealed: the private key and CA account key rows
// hold sealed values, not the PEM, and each opens only as its own row.
func TestPostgresSecretsAreSealed(t *testing.T) {
	s, dsn := openPG(t)
	pem := []byte("-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n")
	if err := s.SaveCertificate(ctx, store.Certificate{Name: "www", Domains: []string{"a.example"}, State: store.StatePending}); err != nil {
		t.Fatal(err)
	}
	id, err := s.CreateOrder(ctx, store.Order{IdempotencyKey: "www-1", CertName: "www", Generation: 1, State: store.OrderIntent},
		store.PrivateKey{CertName: "www", KeyType: "ecdsa-p256", PEM: pem, PublicSHA: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCAAccount(ctx, store.CAAccount{Account: "le", Endpoint: "https://acme.example/dir", KeyPEM: pem}); err != nil {
		t.Fatal(err)
	}
	db := sqlConn(t, dsn)
	for _, q := range []string{"SELECT key_pem FROM private_keys", "SELECT key_pem FROM ca_accounts"} {
		var raw []byte
		if err := db.QueryRow(ctx, q).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte("secret")) || !store.IsSealed(raw) {
			t.Fatalf("%s: stored in the clear: %q", q, raw)
		}
	}
	o, err := s.GetOrder(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.GetKey(ctx, o.KeyID)
	if err != nil || !bytes.Equal(k.PEM, pem) {
		t.Fatalf("key read back: %q, %v", k.PEM, err)
	}
	// A sealed key moved to another certificate's row does not open.
	if _, err := db.Exec(ctx, "UPDATE private_keys SET public_sha = 'other'"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetKey(ctx, o.KeyID); !errors.Is(err, store.ErrSealed) {
		t.Fatalf("a key bound to another row opened: %v", err)
	}
}

// TestPostgresErrorsHideThePassword: no error holds the DSN's password,
// whatever fails.
func TestPostgresErrorsHideThePassword(t *testing.T) {
	srv := pgtest.Shared(t)
	pw := srv.Password()
	dsn := srv.NewDatabase(t)
	seal := store.Options{Sealer: testSealer(t, 1)}
	var errs []error
	// A port nobody listens on.
	_, err := store.OpenPostgres(ctx, strings.Replace(dsn, fmt.Sprintf(":%d/", srv.Port()), ":1/", 1), seal)
	errs = append(errs, err)
	// A wrong password (the real one as its prefix).
	_, err = store.OpenPostgres(ctx, strings.Replace(dsn, pw, pw+"x", 1), seal)
	errs = append(errs, err)
	// A database that does not exist.
	_, err = store.OpenPostgres(ctx, strings.Replace(dsn, "certd_test_", "nodb_", 1), seal)
	errs = append(errs, err)
	// A connection string that does not parse.
	_, err = store.OpenPostgres(ctx, dsn+"&connect_timeout=x"+pw, seal)
	errs = append(errs, err)
	_, err = store.OpenPostgres(ctx, "host=127.0.0.1 password="+pw+" port=notaport", seal)
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d: no error", i)
			continue
		}
		if strings.Contains(err.Error(), pw) || strings.Contains(fmt.Sprintf("%+v", err), pw) {
			t.Errorf("case %d: the error holds the password: %v", i, err)
		}
		t.Logf("case %d: %v", i, err)
	}
}

// TestPostgresConcurrentOpensMigrateOnce: three daemons starting at once
// on a new database.
func TestPostgresConcurrentOpensMigrateOnce(t *testing.T) {
	dsn := pgtest.Shared(t).NewDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := store.OpenPostgres(ctx, dsn, store.Options{Sealer: testSealer(t, 1)})
			if err == nil {
				err = s.SaveCertificate(ctx, store.Certificate{Name: fmt.Sprint("c", i), Domains: []string{"a.example"}, State: store.StatePending})
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("open %d: %v", i, err)
		}
	}
	var rows, version, checks int
	db := sqlConn(t, dsn)
	if err := db.QueryRow(ctx, "SELECT count(*), max(version) FROM schema_version").Scan(&rows, &version); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, "SELECT count(*) FROM store_meta WHERE name = 'seal_check'").Scan(&checks); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || version != store.PGSchemaVersion() || checks != 1 {
		t.Fatalf("schema_version: %d rows, version %d (want 1, %d); %d key checks", rows, version, store.PGSchemaVersion(), checks)
	}
}

// TestPostgresClaimRace: two claimers racing over 200 due certificates
// never both get one.
func TestPostgresClaimRace(t *testing.T) {
	s, _ := openPG(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	var names []string
	for i := range 200 {
		name := fmt.Sprintf("c%03d", i)
		names = append(names, name)
		if err := s.SaveCertificate(ctx, store.Certificate{Name: name, Domains: []string{"a.example"}, State: store.StatePending,
			NextAction: "issue", NextActionAt: now.Add(-time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	listed := map[string]string{}
	for _, n := range names {
		listed[n] = ""
	}
	if err := s.SetHostCertificates(ctx, "h", listed); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		holder := fmt.Sprint("holder-", w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				claimed, err := s.ClaimDueCertificates(ctx, "h", holder, now, time.Hour, 3)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, lc := range claimed {
					if other, ok := got[lc.Certificate.Name]; ok {
						errs <- fmt.Errorf("%s claimed by %s and %s", lc.Certificate.Name, other, holder)
					}
					got[lc.Certificate.Name] = holder
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(got) != 200 {
		t.Errorf("%d certificates claimed, want all 200", len(got))
	}
}

// TestPostgresStaleLeaseWritesNothing: a write carrying a lease that
// expired and was granted to another holder fails with ErrLeaseLost and
// changes nothing, whatever the write.
func TestPostgresStaleLeaseWritesNothing(t *testing.T) {
	s, dsn := openPG(t)
	c := store.Certificate{Name: "www", Domains: []string{"a.example"}, State: store.StatePending}
	if err := s.SaveCertificate(ctx, c); err != nil {
		t.Fatal(err)
	}
	res := store.CertificateResource("www")
	a, err := s.AcquireLease(ctx, res, "host-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// A's lease works while it is current.
	if err := s.UpdateCertificate(store.WithLease(ctx, a), "www", func(c *store.Certificate) error { c.Failures = 1; return nil }); err != nil {
		t.Fatalf("a fenced write under a current lease: %v", err)
	}
	// A is paused past its lease (the database's clock is moved on by
	// ageing the row), and B takes the certificate.
	if _, err := sqlConn(t, dsn).Exec(ctx, "UPDATE leases SET expires_at = expires_at - 3600000 WHERE resource = $1", res); err != nil {
		t.Fatal(err)
	}
	b, err := s.AcquireLease(ctx, res, "host-b", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if b.Token <= a.Token {
		t.Fatalf("token %d after %d: tokens must grow", b.Token, a.Token)
	}
	stale := store.WithLease(ctx, a)
	before := snapshot(t, s)
	writes := map[string]error{
		"SaveCertificate": s.SaveCertificate(stale, store.Certificate{Name: "www", Domains: []string{"a.example"}, State: store.StateFailing}),
		"UpdateCertificate": s.UpdateCertificate(stale, "www", func(c *store.Certificate) error {
			c.State = store.StateFailing
			return nil
		}),
		"AppendEvent": func() error {
			_, err := s.AppendEvent(stale, store.Event{Level: "info", Kind: "k", Message: "stale"})
			return err
		}(),
		"CreateOrder": func() error {
			_, err := s.CreateOrder(stale, store.Order{IdempotencyKey: "www-1", CertName: "www", Generation: 1, State: store.OrderIntent},
				store.PrivateKey{CertName: "www", KeyType: "k", PEM: []byte("k"), PublicSHA: "x"})
			return err
		}(),
		"JournalArtefact": func() error {
			_, err := s.JournalArtefact(stale, store.Artefact{Owner: "cert:www", Kind: "dns-txt", Name: "n"})
			return err
		}(),
		"SaveCAAccount":       s.SaveCAAccount(stale, store.CAAccount{Account: "le", Endpoint: "e", KeyPEM: []byte("k")}),
		"SetAccountHold":      s.SetAccountHold(stale, store.AccountHold{Account: "le", Until: time.Now()}),
		"RecordPass":          s.RecordPass(stale, store.Pass{Host: "host-a", PID: 1}),
		"SetHostCertificates": s.SetHostCertificates(stale, "host-a", map[string]string{"www": "h"}),
		"SaveClaim":           s.SaveClaim(stale, store.Claim{Account: "a", Domain: "d", Status: "PENDING"}),
	}
	for what, err := range writes {
		if !errors.Is(err, store.ErrLeaseLost) {
			t.Errorf("%s under a stale lease: %v, want ErrLeaseLost", what, err)
		}
	}
	if after := snapshot(t, s); after != before {
		t.Fatalf("stale writes changed the store:\nbefore %s\nafter  %s", before, after)
	}
	// Renewing or releasing the stale lease fails too; B's is untouched.
	if _, err := s.RenewLease(ctx, a, time.Minute); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("renewing a stale lease: %v", err)
	}
	if err := s.ReleaseLease(ctx, a); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("releasing a stale lease: %v", err)
	}
	if err := s.SaveCertificate(store.WithLease(ctx, b), c); err != nil {
		t.Errorf("B's write: %v", err)
	}
}

// snapshot renders what the stale writes could have touched.
func snapshot(t *testing.T, s store.Store) string {
	t.Helper()
	c, err := s.GetCertificate(ctx, "www")
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := s.ListEvents(ctx, store.EventFilter{})
	oo, _ := s.OpenOrders(ctx)
	aa, _ := s.LiveArtefacts(ctx)
	hh, _ := s.AccountHolds(ctx)
	pp, _ := s.ListPasses(ctx)
	hc, _ := s.HostCertificates(ctx)
	cl, _ := s.ListClaims(ctx)
	_, acct := s.GetCAAccount(ctx, "le", "e")
	return fmt.Sprintf("%s %s %d %d | %d %d %d %d %d %v %d %v", c.State, c.UpdatedAt, c.Failures, len(ev), len(oo), len(aa), len(hh), len(pp), len(hc), cl, len(ev), errors.Is(acct, store.ErrNotFound))
}

// TestPostgresTakeoverWaitsForFencedWrite: a write that passed its fence
// commits before anyone can take the lease over, even when the lease
// expires while the write is in flight.
func TestPostgresTakeoverWaitsForFencedWrite(t *testing.T) {
	s, _ := openPG(t)
	if err := s.SaveCertificate(ctx, store.Certificate{Name: "www", Domains: []string{"a.example"}, State: store.StatePending}); err != nil {
		t.Fatal(err)
	}
	res := store.CertificateResource("www")
	a, err := s.AcquireLease(ctx, res, "host-a", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	inWrite := make(chan struct{})
	var fnEnd time.Time
	done := make(chan error, 1)
	go func() {
		done <- s.UpdateCertificate(store.WithLease(ctx, a), "www", func(c *store.Certificate) error {
			close(inWrite)
			time.Sleep(600 * time.Millisecond) // the lease expires meanwhile
			c.State = store.StateIssuing
			fnEnd = time.Now()
			return nil
		})
	}()
	<-inWrite
	time.Sleep(400 * time.Millisecond)
	b, err := s.AcquireLease(ctx, res, "host-b", time.Minute)
	took := time.Now()
	if err != nil {
		t.Fatalf("takeover after expiry: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the fenced write: %v", err)
	}
	if took.Before(fnEnd) {
		t.Fatalf("lease %d taken over at %v, while the fenced write was in flight (until %v)", b.Token, took, fnEnd)
	}
	if c, err := s.GetCertificate(ctx, "www"); err != nil || c.State != store.StateIssuing {
		t.Fatalf("the fenced write did not land: %+v %v", c, err)
	}
}

// TestPostgresEventsCannotBeRewritten: the database itself refuses.
func TestPostgresEventsCannotBeRewritten(t *testing.T) {
	s, dsn := openPG(t)
	if _, err := s.AppendEvent(ctx, store.Event{Level: "info", Kind: "k", Message: "m"}); err != nil {
		t.Fatal(err)
	}
	db := sqlConn(t, dsn)
	for _, q := range []string{"UPDATE events SET message = 'x'", "DELETE FROM events", "TRUNCATE events"} {
		if _, err := db.Exec(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v", q, err)
		}
	}
}

// TestPostgresLeaseClockIsTheDatabases: a lease's expiry is the
// database's clock plus its time to live, whatever Options.Now says.
func TestPostgresLeaseClockIsTheDatabases(t *testing.T) {
	dsn := pgtest.Shared(t).NewDatabase(t)
	s := openPGAt(t, dsn, store.Options{Sealer: testSealer(t, 1), Now: func() time.Time { return time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC) }})
	var dbNow time.Time
	if err := sqlConn(t, dsn).QueryRow(ctx, "SELECT clock_timestamp()").Scan(&dbNow); err != nil {
		t.Fatal(err)
	}
	l, err := s.AcquireLease(ctx, "cert:x", "h", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if d := l.Expires.Sub(dbNow.Add(time.Minute)); d < -time.Second || d > 5*time.Second {
		t.Fatalf("expires %v, database clock %v + 1m", l.Expires, dbNow)
	}
	if l.Remaining < 59*time.Second || l.Remaining > time.Minute {
		t.Fatalf("remaining %v", l.Remaining)
	}
	if _, err := s.AcquireLease(ctx, "cert:x", "h", time.Minute); !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("a live lease was granted again to its holder: %v", err)
	}
	if err := s.ReleaseLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	l2, err := s.AcquireLease(ctx, "cert:x", "h2", time.Minute)
	if err != nil || l2.Token <= l.Token {
		t.Fatalf("after release: %+v, %v", l2, err)
	}
}

// TestPostgresSurvivesServerRestartAndCrash: the store reconnects after
// the server restarts, and a transaction in flight when the server
// crashes (SIGKILL) leaves the previous state.
func TestPostgresSurvivesServerRestartAndCrash(t *testing.T) {
	srv := pgtest.New(t)
	dsn := srv.NewDatabase(t)
	s := openPGAt(t, dsn, store.Options{Sealer: testSealer(t, 1)})
	save := func(state string) error {
		return s.SaveCertificate(ctx, store.Certificate{Name: "www", Domains: []string{"a.example"}, State: state})
	}
	if err := save(store.StatePending); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := save(store.StateIssuing); err == nil {
		t.Fatal("a write with the server stopped succeeded")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// The pool's old connections are dead: the first use of each may fail,
	// then it connects again.
	var err error
	for range 10 {
		if err = save(store.StateIssuing); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("after a restart: %v", err)
	}

	// A crash in the middle of an update: nothing of it is kept.
	err = s.UpdateCertificate(ctx, "www", func(c *store.Certificate) error {
		srv.Kill()
		c.State = store.StateFailing
		return nil
	})
	if err == nil {
		t.Fatal("an update cut by a crash reported success")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	var c store.Certificate
	for range 10 {
		if c, err = s.GetCertificate(ctx, "www"); err == nil {
			break
		}
	}
	if err != nil || c.State != store.StateIssuing {
		t.Fatalf("after the crash: %q, %v; want the state before the update (issuing)", c.State, err)
	}
}
