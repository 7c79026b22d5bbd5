// Package catest is the conformance suite every ca.Issuer runs against its
// CA's simulator (or a real test CA): the promises the order lifecycle
// relies on, checked the same way for every CA, in the shape of libdns's
// libdnstest and certd's storetest.
//
// What it checks:
//   - an order is placed, collected and delivered for the request's key
//     and names, with a chain that verifies;
//   - Fetch says "still working" with ca.ErrPending, never anything that
//     would end the order;
//   - an answer lost after the CA committed the order is ambiguous, and
//     Reconcile never reads "still issuing" as "not found": it finds the
//     order or says it cannot tell yet (ca.ErrUndetermined), and the
//     CA's ledger holds one order;
//   - an order never sent is absent at once;
//   - a rejection is ca.ErrRejected;
//   - a rate limit comes back at once as a *ca.Error with its Retry-After
//     (never slept through inside the call), and commits nothing;
//   - a new issuer over the same account (a restart between any two
//     steps) carries an order on;
//   - for paid per-order CAs, a failed check is asked again within the
//     same order.
//
// A harness leaves a fault hook nil when its CA cannot be made to show
// that behaviour; the case is then skipped, saying why. Tests import
// catest; nothing else may.
package catest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certd/certd/ca"
)

// Harness is one CA under test.
type Harness struct {
	// New returns an issuer for the test account. Each call is a fresh
	// issuer over the same account, as after a restart.
	New func(t *testing.T) ca.Issuer
	// Names returns a fresh set of names the account may be issued for
	// (claims already verified for account-level CAs); each call returns
	// names no earlier call returned.
	Names func(t *testing.T) []string
	// Prove, for per-order CAs, makes the order's proofs pass: it is
	// called after Submit (and before, for ca.PreSubmitChallengers, with
	// a zero order) and must leave the CA able to issue. Nil for CAs that
	// validate per account.
	Prove func(t *testing.T, iss ca.Issuer, order ca.Order, req ca.Request)
	// Ledger counts the orders the CA committed (charged) for names.
	Ledger func(names []string) int
	// Roots verify issued chains when the result carries none.
	Roots []*x509.Certificate
	// Wait bounds how long an order may take to issue (default 30s).
	Wait time.Duration

	// Fault hooks; nil skips the cases that need them.

	// DropNextSubmitAnswer makes the CA commit the next order and lose
	// its answer.
	DropNextSubmitAnswer func()
	// SlowIssuance makes orders placed from now on take d to issue (0:
	// back to normal).
	SlowIssuance func(d time.Duration)
	// RejectOrder makes the CA refuse to issue order.
	RejectOrder func(t *testing.T, order ca.Order)
	// RateLimitNextSubmit answers the next order with the CA's rate-limit
	// answer carrying retryAfter.
	RateLimitNextSubmit func(retryAfter time.Duration)
	// FailNextCheck, for paid per-order CAs, makes the CA's next check of
	// the order's proofs fail.
	FailNextCheck func(t *testing.T, order ca.Order)
}

// Run runs every case.
func Run(t *testing.T, h Harness) {
	if h.Wait == 0 {
		h.Wait = 30 * time.Second
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"SubmitFetch", submitFetch},
		{"NeverSentIsAbsent", neverSentIsAbsent},
		{"RestartBetweenSteps", restartBetweenSteps},
		{"FetchPendingIsErrPending", fetchPending},
		{"AmbiguousSubmitThenReconcile", ambiguousThenReconcile},
		{"StillIssuingIsNeverNotFound", stillIssuingNeverNotFound},
		{"Rejection", rejection},
		{"RetryAfterComesBackAtOnce", retryAfter},
		{"PaidCheckAskedAgainInTheSameOrder", paidRecheck},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, h) })
	}
}

var ctx = context.Background()

// Request builds a request for names with a fresh key, as the scheduler
// does (the key and CSR are stored before any call).
func Request(t *testing.T, names []string) ca.Request {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: names[0]}, DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	return ca.Request{CertName: names[0], Domains: names, Key: key, CSR: csr, ClientRef: fmt.Sprintf("catest-%d", refs.Add(1)), Since: time.Now()}
}

var refs atomic.Int64

// place submits req (publishing proofs first for PreSubmitChallengers),
// with SentAt set as the scheduler sets it.
func place(t *testing.T, h Harness, iss ca.Issuer, req *ca.Request) (ca.Order, error) {
	t.Helper()
	if _, ok := iss.(ca.PreSubmitChallenger); ok && h.Prove != nil {
		h.Prove(t, iss, ca.Order{}, *req)
	}
	req.SentAt = time.Now()
	o, err := iss.Submit(ctx, *req)
	if err == nil && h.Prove != nil {
		h.Prove(t, iss, o, *req)
	}
	return o, err
}

// collect fetches until issued, within h.Wait; every error but
// ErrPending fails.
func collect(t *testing.T, h Harness, iss ca.Issuer, o ca.Order, req ca.Request) *ca.Result {
	t.Helper()
	deadline := time.Now().Add(h.Wait)
	for pause := 50 * time.Millisecond; ; pause = min(pause*2, time.Second) {
		res, err := iss.Fetch(ctx, o, req)
		if err == nil {
			return res
		}
		if !errors.Is(err, ca.ErrPending) {
			t.Fatalf("fetching %s: %v", o.Ref, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s not issued within %s", o.Ref, h.Wait)
		}
		time.Sleep(pause)
	}
}

// checkResult: the certificate is for the request's key and names and
// its chain verifies.
func checkResult(t *testing.T, h Harness, res *ca.Result, req ca.Request) {
	t.Helper()
	pub, ok := res.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(req.Key.Public()) {
		t.Fatal("the certificate is not for the request's key")
	}
	got, want := slices.Clone(res.Leaf.DNSNames), slices.Clone(req.Domains)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("names %v, want %v", got, want)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range append(slices.Clone(res.Roots), h.Roots...) {
		roots.AddCert(r)
	}
	for _, c := range res.Chain {
		inter.AddCert(c)
	}
	if _, err := res.Leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
		t.Fatalf("the chain does not verify: %v", err)
	}
}

func ledger(t *testing.T, h Harness, names []string, want int) {
	t.Helper()
	if h.Ledger == nil {
		return
	}
	if n := h.Ledger(names); n != want {
		t.Fatalf("the CA's ledger holds %d orders for %v, want %d (N1)", n, names, want)
	}
}

func submitFetch(t *testing.T, h Harness) {
	iss := h.New(t)
	req := Request(t, h.Names(t))
	o, err := place(t, h, iss, &req)
	if err != nil {
		t.Fatal(err)
	}
	if o.Ref == "" {
		t.Fatal("Submit returned no reference")
	}
	checkResult(t, h, collect(t, h, iss, o, req), req)
	ledger(t, h, req.Domains, 1)
}

func neverSentIsAbsent(t *testing.T, h Harness) {
	iss := h.New(t)
	req := Request(t, h.Names(t))
	if _, found, err := iss.Reconcile(ctx, req); err != nil || found {
		t.Fatalf("an order never sent: found=%v err=%v, want a definite absence", found, err)
	}
}

func restartBetweenSteps(t *testing.T, h Harness) {
	req := Request(t, h.Names(t))
	o, err := place(t, h, h.New(t), &req)
	if err != nil {
		t.Fatal(err)
	}
	// The process died after storing the reference: a new issuer collects.
	checkResult(t, h, collect(t, h, h.New(t), o, req), req)
	ledger(t, h, req.Domains, 1)
}

func fetchPending(t *testing.T, h Harness) {
	if h.SlowIssuance == nil {
		t.Skip("the harness cannot slow issuance")
	}
	h.SlowIssuance(time.Hour)
	defer h.SlowIssuance(0)
	iss := h.New(t)
	req := Request(t, h.Names(t))
	o, err := place(t, h, iss, &req)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := iss.Fetch(ctx, o, req); !errors.Is(err, ca.ErrPending) {
			t.Fatalf("fetching an order still issuing: %v, want ca.ErrPending", err)
		}
	}
	if e, ok := ca.AsError(errFetch(iss, o, req)); ok && (e.Permanent || e.Ambiguous) {
		t.Fatalf("a pending order reads as permanent or ambiguous: %v", e)
	}
}

func errFetch(iss ca.Issuer, o ca.Order, req ca.Request) error {
	_, err := iss.Fetch(ctx, o, req)
	return err
}

func ambiguousThenReconcile(t *testing.T, h Harness) {
	if h.DropNextSubmitAnswer == nil {
		t.Skip("the harness cannot lose an answer")
	}
	iss := h.New(t)
	req := Request(t, h.Names(t))
	h.DropNextSubmitAnswer()
	_, err := place(t, h, iss, &req)
	if !errors.Is(err, ca.ErrAmbiguous) {
		t.Fatalf("a lost answer: %v, want ca.ErrAmbiguous", err)
	}
	o := reconcileUntilFound(t, h, h.New(t), req)
	if h.Prove != nil {
		h.Prove(t, iss, o, req)
	}
	checkResult(t, h, collect(t, h, iss, o, req), req)
	ledger(t, h, req.Domains, 1)
}

// reconcileUntilFound looks the order up until found; "not found" fails.
func reconcileUntilFound(t *testing.T, h Harness, iss ca.Issuer, req ca.Request) ca.Order {
	t.Helper()
	deadline := time.Now().Add(h.Wait)
	for {
		o, found, err := iss.Reconcile(ctx, req)
		switch {
		case found && err == nil:
			return o
		case err == nil:
			t.Fatal("Reconcile says a committed order does not exist: a caller would buy it twice")
		case !errors.Is(err, ca.ErrUndetermined):
			t.Fatalf("Reconcile: %v", err)
		case ca.IsPermanent(err):
			t.Skipf("the CA cannot look orders up; certd leaves them to an operator: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the committed order was not found within %s: %v", h.Wait, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func stillIssuingNeverNotFound(t *testing.T, h Harness) {
	if h.DropNextSubmitAnswer == nil || h.SlowIssuance == nil {
		t.Skip("the harness cannot lose an answer while issuing slowly")
	}
	h.SlowIssuance(3 * time.Second)
	defer h.SlowIssuance(0)
	iss := h.New(t)
	req := Request(t, h.Names(t))
	h.DropNextSubmitAnswer()
	if _, err := place(t, h, iss, &req); !errors.Is(err, ca.ErrAmbiguous) {
		t.Fatalf("a lost answer: %v", err)
	}
	o := reconcileUntilFound(t, h, iss, req)
	checkResult(t, h, collect(t, h, iss, o, req), req)
	ledger(t, h, req.Domains, 1)
}

func rejection(t *testing.T, h Harness) {
	if h.RejectOrder == nil {
		t.Skip("the harness cannot make the CA reject an order")
	}
	if h.SlowIssuance != nil {
		h.SlowIssuance(time.Hour)
		defer h.SlowIssuance(0)
	}
	iss := h.New(t)
	req := Request(t, h.Names(t))
	o, err := place(t, h, iss, &req)
	if err != nil {
		t.Fatal(err)
	}
	h.RejectOrder(t, o)
	if _, err := iss.Fetch(ctx, o, req); !errors.Is(err, ca.ErrRejected) {
		t.Fatalf("a rejected order: %v, want ca.ErrRejected", err)
	}
}

func retryAfter(t *testing.T, h Harness) {
	if h.RateLimitNextSubmit == nil {
		t.Skip("the harness cannot rate-limit the CA")
	}
	iss := h.New(t)
	req := Request(t, h.Names(t))
	h.RateLimitNextSubmit(300 * time.Second)
	start := time.Now()
	_, err := place(t, h, iss, &req)
	e, ok := ca.AsError(err)
	if !ok || e.RetryAfter() < 299*time.Second || e.Ambiguous {
		t.Fatalf("a rate-limited order: %v, want a *ca.Error with Retry-After 300s, not ambiguous", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("Submit slept %s through the Retry-After", took)
	}
	ledger(t, h, req.Domains, 0)
}

func paidRecheck(t *testing.T, h Harness) {
	if h.FailNextCheck == nil {
		t.Skip("the harness has no per-order check to fail")
	}
	iss := h.New(t)
	oa, ok := iss.(ca.OrderAuthorizer)
	if !ok || ca.CostOf(iss) != ca.PaidAtSubmit {
		t.Skip("not a paid per-order CA")
	}
	req := Request(t, h.Names(t))
	o, err := place(t, h, iss, &req)
	if err != nil {
		t.Fatal(err)
	}
	h.FailNextCheck(t, o)
	auths, err := oa.Authorizations(ctx, o, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range auths {
		if len(a.Challenges) == 0 {
			continue
		}
		if _, err := oa.Respond(ctx, a, a.Challenges[0]); err != nil {
			t.Fatalf("asking the CA to check again: %v", err)
		}
	}
	checkResult(t, h, collect(t, h, iss, o, req), req)
	ledger(t, h, req.Domains, 1)
}
