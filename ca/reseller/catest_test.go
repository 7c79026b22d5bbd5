package reseller_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/catest"
	"github.com/certd/certd/ca/reseller"
	"github.com/certd/certd/ca/reseller/resellersim"
)

// The reseller issuer passes the CA conformance suite against the
// simulator, for each upstream CA shape of the validation details and
// for DNS and file proofs: the proofs are read from the order and checked
// for real by the simulator over DNS and HTTP.
func TestConformance(t *testing.T) {
	for _, c := range []struct {
		name, plan, dcvType string
	}{
		{"sectigo-cname", resellersim.SectigoDVPlan, reseller.DCVDNS},
		{"sectigo-file", resellersim.SectigoDVPlan, reseller.DCVFile},
		{"digicert-txt", resellersim.DigiCertDVPlan, reseller.DCVDNS},
		{"digicert-fileauth", resellersim.DigiCertDVPlan, reseller.DCVFile},
	} {
		t.Run(c.name, func(t *testing.T) { conformance(t, c.plan, c.dcvType) })
	}
}

func conformance(t *testing.T, plan, dcvType string) {
	var (
		n       atomic.Int64
		proveMu sync.Mutex
		// proveDropped: the next order committed whose answer is lost is
		// proved by the harness, standing in for the scheduler (which
		// proves an order found by Reconcile): catest calls Prove only
		// after a Submit that answered.
		proveDropped bool
		wg           sync.WaitGroup
		e            *env
	)
	newIssuer := func(t *testing.T) *reseller.Issuer {
		return e.issuer(t, reseller.IssuerOptions{Plan: plan, DCVType: dcvType, PollInterval: time.Second, Logger: zaptest.NewLogger(t)})
	}
	e = newEnv(t, func(o *resellersim.Options) {
		o.OnCreate = func(id string, names []string) {
			proveMu.Lock()
			do := proveDropped
			proveDropped = false
			proveMu.Unlock()
			if !do {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := e.prove(newIssuer(t), ca.Order{Ref: id}, names); err != nil {
					t.Errorf("proving the order whose answer was lost: %v", err)
				}
			}()
		}
	})
	t.Cleanup(wg.Wait)
	catest.Run(t, catest.Harness{
		New: func(t *testing.T) ca.Issuer { return newIssuer(t) },
		Names: func(*testing.T) []string {
			return []string{fmt.Sprintf("n%d.example.com", n.Add(1))}
		},
		// Prove publishes what the validation details ask for and does not
		// ask the CA to check (Respond): the simulator checks a pending
		// order by itself whenever it is looked at, as the CAs behind the
		// plans do, so a failed check (FailNextCheck) must be asked again
		// by the case itself for the order to issue.
		Prove: func(t *testing.T, iss ca.Issuer, o ca.Order, req ca.Request) {
			if o.Ref == "" {
				return
			}
			if err := e.prove(iss, o, req.Domains); err != nil {
				t.Fatal(err)
			}
		},
		Ledger: e.sim.OrdersFor,
		Roots:  e.roots,
		Wait:   20 * time.Second,
		DropNextSubmitAnswer: func() {
			proveMu.Lock()
			proveDropped = true
			proveMu.Unlock()
			e.sim.InjectFault("POST /ssl-certificate", resellersim.Fault{DropAfterCommit: true})
		},
		SlowIssuance: e.sim.SetIssueDelay,
		RejectOrder: func(t *testing.T, o ca.Order) {
			if err := e.sim.Reject(o.Ref); err != nil {
				t.Fatal(err)
			}
		},
		RateLimitNextSubmit: func(d time.Duration) {
			e.sim.InjectFault("POST /ssl-certificate", resellersim.Fault{Status: 429, RetryAfter: d})
		},
		FailNextCheck: func(t *testing.T, o ca.Order) {
			if err := e.sim.FailNextCheck(o.Ref); err != nil {
				t.Fatal(err)
			}
		},
	})
}
