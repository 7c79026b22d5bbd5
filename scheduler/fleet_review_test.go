package scheduler

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/store"
)

// reviewAuthorizer is a DomainAuthorizer whose Authorize runs a hook (the
// moment another host takes the claim over) and then fails.
type reviewAuthorizer struct {
	onAuthorize func(ctx context.Context)
}

func (r *reviewAuthorizer) Authorization(ctx context.Context, id, domain string) (ca.Authorization, bool, error) {
	return ca.Authorization{}, false, nil
}

func (r *reviewAuthorizer) Authorize(ctx context.Context, auth ca.Authorization, domain string, how ca.Proof) (ca.Authorization, dcv.Challenge, error) {
	if r.onAuthorize != nil {
		r.onAuthorize(ctx)
	}
	return auth, dcv.Challenge{}, errors.New("the CA is busy")
}

func (r *reviewAuthorizer) Challenge(auth ca.Authorization, how ca.Proof) (dcv.Challenge, error) {
	return dcv.Challenge{}, nil
}

func (r *reviewAuthorizer) Verify(ctx context.Context, auth ca.Authorization, how ca.Proof) (ca.Authorization, error) {
	return auth, nil
}

// TestReviewClaimLeaseFencesClaimWrites: a certificate job proving a claim
// takes the claim's fleet lease (claimLease), but the context that carries
// that lease is thrown away, so the claim's writes are fenced only by the
// certificate's lease. Once another host has taken the claim over (this
// host paused past the claim lease), this host must store nothing more on
// the claim; here its failure record overwrites what the new holder
// stored.
func TestReviewClaimLeaseFencesClaimWrites(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "certd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const ttl = 30 * time.Second
	f := &Fleet{Store: st, Host: "a", Holder: "a/1/x", TTL: ttl}

	// Host A works cert:www under its lease.
	certLease, err := st.AcquireLease(ctx, store.CertificateResource("www"), f.Holder, ttl)
	if err != nil {
		t.Fatal(err)
	}
	jctx := store.WithLease(ctx, certLease)

	res := store.ClaimResource("atlas", "example.com")
	takenOver := false
	da := &reviewAuthorizer{onAuthorize: func(context.Context) {
		// Host B takes the claim over (A's claim lease ended) and stores
		// the claim verified.
		ls, err := st.ListLeases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if l.Resource == res {
				if err := st.ReleaseLease(ctx, l); err != nil {
					t.Fatal(err)
				}
			}
		}
		bl, err := st.AcquireLease(ctx, res, "b/1/y", ttl)
		if err != nil {
			t.Fatalf("host B cannot take the claim over: %v", err)
		}
		if err := st.SaveClaim(store.WithLease(ctx, bl), store.Claim{Account: "atlas", Domain: "example.com", CAClaimID: "B-claim",
			Status: string(ca.AuthValid), ExpiresAt: time.Now().Add(300 * 24 * time.Hour), NextAction: "reassert",
			NextActionAt: time.Now().Add(270 * 24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		takenOver = true
	}}
	m := &Claims{Store: st, Fleet: f}
	err = m.Ensure(jctx, nil, "atlas", da, "example.com", Proof{CA: ca.Proof{Method: dcv.DNSTXT}}, 0, false)
	if err == nil {
		t.Fatal("Ensure succeeded although the CA failed")
	}
	if !takenOver {
		t.Fatal("the takeover hook did not run")
	}
	got, err := st.GetClaim(ctx, "atlas", "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got.CAClaimID != "B-claim" || got.Status != string(ca.AuthValid) || got.Failures != 0 {
		t.Fatalf("host A, no longer holding the claim's lease, overwrote host B's claim: %+v", got)
	}
}

// TestReviewClaimJobAndCertJobDeadlock: on one host, a pass's claim job
// takes the claim's lease before it takes Claims' in-process lock (in
// Ensure), while a certificate job needing the same claim takes the lock
// first and then waits for the lease (claimLease). Each waits for the
// other until claimLease gives up (PollTimeout + 1 minute): the pass
// stalls and the certificate is recorded as failing, "proved by another
// host", although no other host is involved.
func TestReviewClaimJobAndCertJobDeadlock(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "certd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const ttl = 30 * time.Second
	f := &Fleet{Store: st, Host: "a", Holder: "a/1/x", TTL: ttl}
	if err := st.SaveClaim(ctx, store.Claim{Account: "atlas", Domain: "example.com", CAClaimID: "c1", Status: string(ca.AuthValid),
		ExpiresAt: time.Now().Add(300 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	m := &Claims{Store: st, Fleet: f, PollTimeout: time.Millisecond}
	da := &reviewAuthorizer{}
	proof := Proof{CA: ca.Proof{Method: dcv.DNSTXT}}

	// The pass's claim loop leases the claim (scheduler.go, Pass).
	cl, err := st.AcquireLease(ctx, store.ClaimResource("atlas", "example.com"), f.Holder, ttl)
	if err != nil {
		t.Fatal(err)
	}
	// A certificate job launched earlier in the same pass reaches
	// ensureClaims.
	certLease, err := st.AcquireLease(ctx, store.CertificateResource("www"), f.Holder, ttl)
	if err != nil {
		t.Fatal(err)
	}
	certDone := make(chan error, 1)
	go func() {
		certDone <- m.Ensure(store.WithLease(ctx, certLease), nil, "atlas", da, "example.com", proof, 0, false)
	}()
	time.Sleep(300 * time.Millisecond)
	// The claim job starts (ClaimWork -> Ensure under the claim's lease).
	claimDone := make(chan error, 1)
	go func() {
		err := m.Ensure(store.WithLease(ctx, cl), nil, "atlas", da, "example.com", proof, 0, false)
		// The pass releases the claim job's lease when the job ends.
		_ = st.ReleaseLease(ctx, cl)
		claimDone <- err
	}()
	deadline := time.After(5 * time.Second)
	for i := 0; i < 2; i++ {
		select {
		case err := <-certDone:
			if err != nil {
				t.Fatalf("certificate job: %v", err)
			}
		case err := <-claimDone:
			if err != nil {
				t.Fatalf("claim job: %v", err)
			}
		case <-deadline:
			t.Fatal("the claim job and the certificate job of one host wait for each other (lease vs in-process lock); " +
				"they stay stuck until claimLease gives up after PollTimeout+1m and the certificate is failed")
		}
	}
}

// flakyLeases fails renewals (a store hiccup) while fail is set.
type flakyLeases struct {
	store.Leases
	fail bool
}

func (f *flakyLeases) RenewLease(ctx context.Context, l store.Lease, ttl time.Duration) (store.Lease, error) {
	if f.fail {
		return store.Lease{}, errors.New("store: renewing the lease: connection reset by peer")
	}
	return f.Leases.RenewLease(ctx, l, ttl)
}

// sectigoLike submits, and like Sectigo (and the reseller issuers) can
// never prove an order absent.
type sectigoLike struct{ submits, reconciles int }

func (s *sectigoLike) Submit(ctx context.Context, req ca.Request) (ca.Order, error) {
	s.submits++
	return ca.Order{Ref: "R1"}, nil
}

func (s *sectigoLike) Reconcile(ctx context.Context, req ca.Request) (ca.Order, bool, error) {
	s.reconciles++
	return ca.Order{}, false, &ca.Error{CA: "sectigo", Op: "reconcile", Permanent: true, Err: ca.ErrUndetermined}
}

func (s *sectigoLike) Fetch(ctx context.Context, o ca.Order, req ca.Request) (*ca.Result, error) {
	return nil, ca.ErrPending
}

// TestReviewUnsentOrderIsNotMarkedSent: send stores SentAt before
// forSubmit checks the lease, so when forSubmit refuses (here a single
// transient renewal error, with 30s of lease left) the order is journaled
// as sent although nothing went to the CA. The next attempt may then only
// look it up; at a CA that cannot prove absence (Sectigo, resellers) that
// makes the certificate need an operator (`certd orders absent`) for an
// order that was never placed.
func TestReviewUnsentOrderIsNotMarkedSent(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "certd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := store.Certificate{Name: "www", Account: "sectigo", Domains: []string{"www.example.com"}, State: store.StatePending, NextAction: ActionIssue}
	if err := st.SaveCertificate(ctx, c); err != nil {
		t.Fatal(err)
	}
	const ttl = 30 * time.Second
	fl := &flakyLeases{Leases: st}
	l, err := st.AcquireLease(ctx, store.CertificateResource("www"), "a/1/x", ttl)
	if err != nil {
		t.Fatal(err)
	}
	jctx, _, end := hold(ctx, fl, l, ttl, zap.NewNop())
	defer end()
	id, err := st.CreateOrder(jctx, store.Order{IdempotencyKey: "www-1-x", CertName: "www", Account: "sectigo", Generation: 1, State: store.OrderIntent},
		store.PrivateKey{CertName: "www", KeyType: "ecdsa-p256", PEM: []byte("key"), PublicSHA: "sha"})
	if err != nil {
		t.Fatal(err)
	}
	o, err := st.GetOrder(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	iss := &sectigoLike{}
	x := &Issuing{Store: st}
	// A request that may take longer than the lease has left is refused,
	// and the order is not journaled as sent: nothing went out.
	long := Plan{Issuer: iss, RequestTimeout: 2 * ttl}
	if _, _, err := x.send(jctx, zap.NewNop(), c, long, &o, ca.Request{}, &orderRun{}); err == nil {
		t.Fatal("send went ahead under a lease shorter than the request may take")
	}
	stored, err := st.GetOrder(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if iss.submits != 0 || !stored.SentAt.IsZero() {
		t.Fatalf("refused before sending, yet submits %d, SentAt %s", iss.submits, stored.SentAt)
	}
	// A renewal that fails once (a store hiccup) with most of the lease
	// left does not stop the request; it goes out once.
	plan := Plan{Issuer: iss, RequestTimeout: time.Second}
	fl.fail = true
	_, _, err = x.step(jctx, zap.NewNop(), c, plan, ca.CostOf(iss), &stored, ca.Request{}, &orderRun{})
	fl.fail = false
	if err != nil || iss.submits != 1 || iss.reconciles != 0 {
		t.Fatalf("retry: %v (submits %d, lookups %d)", err, iss.submits, iss.reconciles)
	}
}

// listThen runs between between Apply's listing and its writes.
type listThen struct {
	*store.SQLite
	between func()
}

func (l *listThen) ListCertificates(ctx context.Context) ([]store.Certificate, error) {
	cs, err := l.SQLite.ListCertificates(ctx)
	if l.between != nil {
		l.between()
		l.between = nil
	}
	return cs, err
}

// TestReviewApplyDoesNotClobberANewCertificateAnotherHostWorks: two hosts
// start with a certificate new to the fleet. Host B's Apply lists the
// store before host A has saved it, then "creates" it with
// SaveCertificate, an upsert with no lease: by then A has created it,
// claimed it and journaled its order, and B's write resets the row to
// pending/issue-now under A's live lease.
func TestReviewApplyDoesNotClobberANewCertificateAnotherHostWorks(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "certd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	spec := CertSpec{Name: "www", Account: "atlas", Domains: []string{"www.example.com"}, KeyType: "ecdsa-p256"}
	ls := &listThen{SQLite: st, between: func() {
		// Host A: Apply created it, A claimed it and moved it on.
		if err := st.SaveCertificate(ctx, store.Certificate{Name: "www", Account: "atlas", Domains: spec.Domains, KeyType: spec.KeyType,
			SpecHash: spec.Hash(), State: store.StatePending, NextAction: ActionIssue, NextActionAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		l, err := st.AcquireLease(ctx, store.CertificateResource("www"), "a/1/x", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.UpdateCertificate(store.WithLease(ctx, l), "www", func(c *store.Certificate) error {
			c.State, c.NextAction, c.NextActionAt = store.StateIssuing, ActionPoll, time.Now().Add(time.Hour)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}}
	s, err := New(Options{Store: ls, Work: func(context.Context, store.Certificate) error { return nil }, Schedule: "@every 1h",
		Fleet: &Fleet{Store: st, Host: "b", Holder: "b/1/y", TTL: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, []CertSpec{spec}); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetCertificate(ctx, "www")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.StateIssuing || got.NextAction != ActionPoll {
		t.Fatalf("host B's Apply overwrote, without a lease, the certificate host A holds: state %q next %q at %s",
			got.State, got.NextAction, got.NextActionAt)
	}
}
