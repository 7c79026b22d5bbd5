package scheduler_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// paidCA is a per-order CA that charges at submit (as Sectigo,
// Markmonitor and the reseller API do): its proof is known before the
// order (a TXT derived from the CSR), and its check is answered by a
// script. It checks for real that the proof is in DNS when the order is
// placed.
type paidCA struct {
	dns string

	mu       sync.Mutex
	orders   int      // the ledger: orders charged
	checks   []string // scripted answers to Respond: valid, invalid, pending
	rechecks int
	caKey    *ecdsa.PrivateKey
	caCert   *x509.Certificate
	// loseAnswer: the next Submit commits nothing but reports the answer
	// lost; the CA has no lookup that can prove absence.
	loseAnswer bool
	sends      int
}

var (
	_ ca.Issuer              = (*paidCA)(nil)
	_ ca.PreSubmitChallenger = (*paidCA)(nil)
	_ ca.OrderAuthorizer     = (*paidCA)(nil)
)

func newPaidCA(t *testing.T, dnsAddr string, checks ...string) *paidCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "paid root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &paidCA{dns: dnsAddr, checks: checks, caKey: key, caCert: cert}
}

func (p *paidCA) proof(req ca.Request) dcv.Challenge {
	return dcv.Challenge{Domain: req.Domains[0], Method: dcv.DNSTXT, RecordName: "_paid." + req.Domains[0], Value: fmt.Sprintf("paid-%x", req.CSR[len(req.CSR)-8:])}
}

func (p *paidCA) ChallengesBefore(req ca.Request, _ map[string]ca.Proof) ([]dcv.Challenge, error) {
	return []dcv.Challenge{p.proof(req)}, nil
}

func (p *paidCA) Submit(ctx context.Context, req ca.Request) (ca.Order, error) {
	ch := p.proof(req)
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(ch.RecordName), dns.TypeTXT)
	r, err := dns.ExchangeContext(ctx, m, p.dns)
	if err != nil || len(r.Answer) == 0 || strings.Join(r.Answer[0].(*dns.TXT).Txt, "") != ch.Value {
		return ca.Order{}, &ca.Error{CA: "paid", Op: "submit", Detail: "the proof was not published before the order"}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sends++
	if p.loseAnswer {
		p.loseAnswer = false
		return ca.Order{}, &ca.Error{CA: "paid", Op: "submit", Detail: "connection reset", Ambiguous: true}
	}
	p.orders++
	return ca.Order{Ref: fmt.Sprintf("order-%d", p.orders)}, nil
}

func (p *paidCA) Reconcile(_ context.Context, req ca.Request) (ca.Order, bool, error) {
	if req.SentAt.IsZero() {
		return ca.Order{}, false, nil
	}
	return ca.Order{}, false, &ca.Error{CA: "paid", Op: "reconcile", Detail: "no lookup can prove absence", Permanent: true, Err: ca.ErrUndetermined}
}

func (p *paidCA) Authorizations(_ context.Context, _ ca.Order, req ca.Request) ([]ca.OrderAuthorization, error) {
	return []ca.OrderAuthorization{{Ref: "a", Domain: req.Domains[0], Status: ca.AuthPending, Challenges: []dcv.Challenge{p.proof(req)}}}, nil
}

func (p *paidCA) Respond(_ context.Context, a ca.OrderAuthorization, _ dcv.Challenge) (ca.OrderAuthorization, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rechecks++
	a.Status = ca.AuthValid
	if len(p.checks) > 0 {
		a.Status = map[string]ca.AuthStatus{"valid": ca.AuthValid, "invalid": ca.AuthInvalid, "pending": ca.AuthPending}[p.checks[0]]
		p.checks = p.checks[1:]
	}
	if a.Status == ca.AuthInvalid {
		a.Detail = "TXT not found"
	}
	return a, nil
}

func (p *paidCA) Fetch(_ context.Context, _ ca.Order, req ca.Request) (*ca.Result, error) {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), DNSNames: req.Domains, NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(12 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, req.Key.Public(), p.caKey)
	if err != nil {
		return nil, err
	}
	leaf, _ := x509.ParseCertificate(der)
	return &ca.Result{Leaf: leaf, Roots: []*x509.Certificate{p.caCert}}, nil
}

func (w *world) paidPlan(iss ca.Issuer) func(string) (scheduler.Plan, error) {
	return func(string) (scheduler.Plan, error) {
		pl := w.plan()
		pl.Issuer = iss
		return pl, nil
	}
}

func liveOwned(t *testing.T, st *store.SQLite) int {
	t.Helper()
	live, err := st.LiveArtefacts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range live {
		if strings.HasPrefix(a.Owner, "order:") {
			n++
		}
	}
	return n
}

// A paid order's proof is published and visible before the order is
// placed; a failed check keeps the proof published and asks the CA again
// within the same order: one order charged, never a second generation.
func TestPaidOrderFailedCheckIsRecheckedNeverReordered(t *testing.T) {
	w := newWorld(t)
	c := w.due(t)
	paid := newPaidCA(t, w.dns, "invalid", "pending", "valid")
	x := w.issuing(w.st)
	x.Plans = w.paidPlan(paid)

	// 1. The check fails: the attempt fails loudly, the order stays open
	//    with its proof published.
	err := x.Work(ctx, c)
	if !errors.Is(err, ca.ErrDCVFailed) {
		t.Fatalf("first attempt: %v, want a DCV failure", err)
	}
	o, _ := w.st.LatestOrder(ctx, "www")
	if o.State != store.OrderPending || o.Generation != 1 || liveOwned(t, w.st) != 1 {
		t.Fatalf("after the failed check: order %+v, %d proofs live", o, liveOwned(t, w.st))
	}
	// 2. The CA is asked again and has not decided: a later look, no failure.
	c, _ = w.st.GetCertificate(ctx, "www")
	if err := x.Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c, _ = w.st.GetCertificate(ctx, "www"); c.State != store.StateIssuing || c.NextAction != scheduler.ActionPoll {
		t.Fatalf("while the CA decides: %+v", c)
	}
	// 3. Asked again, valid: issued, deployed, proof removed.
	if err := x.Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	c, _ = w.st.GetCertificate(ctx, "www")
	o, _ = w.st.LatestOrder(ctx, "www")
	if c.State != store.StateValid || o.Generation != 1 || o.State != store.OrderIssued {
		t.Fatalf("after the recheck: cert %+v order %+v", c, o)
	}
	if paid.orders != 1 || paid.rechecks != 3 {
		t.Fatalf("orders charged %d (want 1), checks asked %d (want 3)", paid.orders, paid.rechecks)
	}
	if n := liveOwned(t, w.st); n != 0 {
		t.Fatalf("%d proofs still live after issuance", n)
	}
}

// A restart keeps a paid order's proofs (owned by the order) and resumes
// the same order.
func TestPaidOrderProofsSurviveARestart(t *testing.T) {
	w := newWorld(t)
	c := w.due(t)
	paid := newPaidCA(t, w.dns, "invalid")
	x := w.issuing(w.st)
	x.Plans = w.paidPlan(paid)
	if err := x.Work(ctx, c); !errors.Is(err, ca.ErrDCVFailed) {
		t.Fatalf("first attempt: %v", err)
	}
	keep := scheduler.KeepOrderArtefacts(ctx, w.st)
	live, _ := w.st.LiveArtefacts(ctx)
	if len(live) != 1 || !keep(live[0].Owner) {
		t.Fatalf("the open order's proof is not kept: %+v", live)
	}
	x2 := w.issuing(w.st) // a restart
	x2.Plans = w.paidPlan(paid)
	c, _ = w.st.GetCertificate(ctx, "www")
	if err := x2.Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	if paid.orders != 1 {
		t.Fatalf("%d orders charged, want 1", paid.orders)
	}
	if keep(live[0].Owner) {
		t.Fatal("an issued order's proofs are still kept")
	}
}

// A lost answer at a CA that cannot be asked: certd never sends the order
// again on its own; it needs an operator, who says what happened.
func TestAmbiguousOrderAtACAWithoutLookupWaitsForAnOperator(t *testing.T) {
	w := newWorld(t)
	c := w.due(t)
	paid := newPaidCA(t, w.dns)
	paid.loseAnswer = true
	x := w.issuing(w.st)
	x.Plans = w.paidPlan(paid)
	for range 3 {
		err := x.Work(ctx, c)
		if !ca.IsPermanent(err) || !errors.Is(err, ca.ErrUndetermined) {
			t.Fatalf("after the lost answer: %v, want a permanent, undetermined failure", err)
		}
		c, _ = w.st.GetCertificate(ctx, "www")
	}
	if paid.sends != 1 {
		t.Fatalf("the order was sent %d times without an operator", paid.sends)
	}
	if _, err := scheduler.ResolveOrder(ctx, w.st, "www", scheduler.ResolveAbsent, ""); err != nil {
		t.Fatal(err)
	}
	c, _ = w.st.GetCertificate(ctx, "www")
	if err := x.Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c, _ = w.st.GetCertificate(ctx, "www"); c.State != store.StateValid || paid.sends != 2 || paid.orders != 1 {
		t.Fatalf("after the operator: %+v, %d sends, %d orders", c, paid.sends, paid.orders)
	}
	if _, err := scheduler.ResolveOrder(ctx, w.st, "www", scheduler.ResolveAbsent, ""); err == nil {
		t.Fatal("resolving with no open order succeeded")
	}
}
