package atlas_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/atlas"
	"github.com/certd/certd/ca/atlas/atlassim"
	"github.com/certd/certd/ca/catest"
	"github.com/certd/certd/internal/pemutil"
)

// The Atlas issuer passes the CA conformance suite against the simulator,
// which lists certificates in its reports only once issued.
func TestConformance(t *testing.T) {
	e := newEnv(t, nil)
	e.clk.real = true
	e.verifiedClaim(t, "example.com")
	var n atomic.Int64
	roots, err := pemutil.Certificates(e.sim.RootPEM())
	if err != nil {
		t.Fatal(err)
	}
	catest.Run(t, catest.Harness{
		New: func(t *testing.T) ca.Issuer {
			// A short issuance window: a lost order is found well inside it.
			return atlas.NewIssuer(e.newClient(t, "test-key", "test-secret"), atlas.IssuerOptions{IssuanceWindow: time.Minute})
		},
		Names: func(*testing.T) []string {
			return []string{fmt.Sprintf("n%d.example.com", n.Add(1))}
		},
		Ledger: e.sim.OrdersFor,
		Roots:  roots,
		Wait:   20 * time.Second,
		DropNextSubmitAnswer: func() {
			e.sim.InjectFault("POST /certificates", atlassim.Fault{DropAfterCommit: true})
		},
		SlowIssuance: e.sim.SetIssueDelay,
		RejectOrder: func(t *testing.T, o ca.Order) {
			if err := e.sim.Reject(o.Ref); err != nil {
				t.Fatal(err)
			}
		},
		RateLimitNextSubmit: func(d time.Duration) {
			e.sim.InjectFault("POST /certificates", atlassim.Fault{Status: 429, RetryAfter: d})
		},
	})
}
