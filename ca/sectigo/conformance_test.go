package sectigo_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/catest"
	"github.com/certd/certd/ca/sectigo"
	"github.com/certd/certd/ca/sectigo/sectigosim"
	"github.com/certd/certd/internal/pemutil"
)

// The Sectigo issuer passes the CA conformance suite against the
// simulator. The lost-answer cases end in "needs an operator": the
// reseller API cannot look an order up.
func TestConformance(t *testing.T) {
	e := newEnv(t, nil)
	roots, err := pemutil.Certificates(e.sim.RootPEM())
	if err != nil {
		t.Fatal(err)
	}
	const limitRetry = 5 * time.Minute
	var n atomic.Int64
	number := func(t *testing.T, o ca.Order) string {
		num, _, err := sectigo.ParseRef(o.Ref)
		if err != nil {
			t.Fatal(err)
		}
		return num
	}
	catest.Run(t, catest.Harness{
		New: func(t *testing.T) ca.Issuer {
			c := e.client(t, password, func(o *sectigo.ClientOptions) { o.CallLimitRetry = limitRetry })
			is, err := sectigo.NewIssuer(c, sectigo.IssuerOptions{Product: 488, DCVMethod: sectigo.MethodCNAME,
				PollInterval: time.Nanosecond, RecheckInterval: time.Nanosecond})
			if err != nil {
				t.Fatal(err)
			}
			return is
		},
		Names: func(*testing.T) []string { return []string{fmt.Sprintf("c%d.example.com", n.Add(1))} },
		Prove: func(t *testing.T, iss ca.Issuer, _ ca.Order, req ca.Request) {
			chs, err := iss.(ca.PreSubmitChallenger).ChallengesBefore(req, nil)
			if err != nil {
				t.Fatal(err)
			}
			e.publish(t, chs)
		},
		Ledger:               e.sim.OrdersFor,
		Roots:                roots,
		Wait:                 15 * time.Second,
		DropNextSubmitAnswer: func() { e.sim.InjectFault("AutoApplySSL", sectigosim.Fault{DropAfterCommit: true}) },
		SlowIssuance:         e.sim.SetIssueDelay,
		RejectOrder: func(t *testing.T, o ca.Order) {
			if err := e.sim.Reject(number(t, o)); err != nil {
				t.Fatal(err)
			}
		},
		RateLimitNextSubmit: func(d time.Duration) {
			if d > limitRetry {
				t.Fatalf("the harness pauses %s after -42, the suite wants %s", limitRetry, d)
			}
			e.sim.InjectFault("AutoApplySSL", sectigosim.Fault{CallLimit: true})
		},
		FailNextCheck: func(t *testing.T, o ca.Order) {
			if err := e.sim.FailNextCheck(number(t, o)); err != nil {
				t.Fatal(err)
			}
		},
	})
}
