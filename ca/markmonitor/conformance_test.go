package markmonitor_test

import (
	"sync"
	"testing"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/catest"
	"github.com/certd/certd/ca/markmonitor/mmsim"
)

// The Markmonitor issuer passes the CA conformance suite against the
// simulator, with every fault hook: a lost answer is found by the order
// search (orders show in it after a lag, so Reconcile first answers
// "cannot tell yet"), issuance slowed, an order rejected, a rate limit
// on the order, a failed DigiCert check asked again in the same paid
// order. Prove publishes what Authorizations returns (DNS TXT records in
// a real DNS server) and answers it, as the scheduler does.
func TestConformance(t *testing.T) {
	var (
		mu sync.Mutex
		// proveDropped: the next order committed whose answer is lost is
		// proved by the harness, standing in for the scheduler (which
		// proves an order Reconcile found): catest calls Prove only after
		// a Submit that answered.
		proveDropped bool
		wg           sync.WaitGroup
		e            *env
		prover       ca.Issuer
	)
	e = newEnv(t, func(o *mmsim.Options) {
		o.SearchLag = 500 * time.Millisecond
		o.OnCreate = func(id string, names []string) {
			mu.Lock()
			do := proveDropped
			proveDropped = false
			mu.Unlock()
			if !do {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := e.proveErr(prover, ca.Order{Ref: id}, ca.Request{Domains: names}); err != nil {
					t.Errorf("proving the order whose answer was lost: %v", err)
				}
			}()
		}
	})
	prover = e.issuer(t, nil)
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { e.logsClean(t) })
	catest.Run(t, catest.Harness{
		New:    func(t *testing.T) ca.Issuer { return e.issuer(t, nil) },
		Names:  func(*testing.T) []string { return freshNames() },
		Prove:  e.prove,
		Ledger: e.sim.OrdersFor,
		Wait:   15 * time.Second,
		DropNextSubmitAnswer: func() {
			mu.Lock()
			proveDropped = true
			mu.Unlock()
			e.sim.InjectFault(mmsim.RouteCreateOrder, mmsim.Fault{DropAfterCommit: true})
		},
		SlowIssuance: e.sim.SetIssueDelay,
		RejectOrder: func(t *testing.T, o ca.Order) {
			if err := e.sim.Reject(o.Ref); err != nil {
				t.Fatal(err)
			}
		},
		RateLimitNextSubmit: func(d time.Duration) {
			e.sim.InjectFault(mmsim.RouteCreateOrder, mmsim.Fault{Status: 429, RetryAfter: d})
		},
		FailNextCheck: func(t *testing.T, o ca.Order) {
			if err := e.sim.FailNextCheck(o.Ref); err != nil {
				t.Fatal(err)
			}
		},
	})
}
