package reseller_test

import (
	"context"
	"testing"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/reseller"
	"github.com/certd/certd/ca/reseller/resellersim"
	"github.com/certd/certd/dcv"
	"go.uber.org/zap"
)

// The dry run's probe checks the credentials and the proofs' dcv_type,
// and orders nothing.
func TestProbe(t *testing.T) {
	e := newEnv(t, nil)
	var steps []ca.ProbeStep
	report := func(s ca.ProbeStep) { steps = append(steps, s) }
	req := ca.ProbeRequest{Domains: []string{"www.example.com"}, Proofs: map[string]ca.Proof{"www.example.com": {Method: dcv.DNSTXT}}}
	if err := e.issuer(t, reseller.IssuerOptions{}).Probe(context.Background(), req, report); err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if s.Result == ca.ProbeFailed {
			t.Fatalf("a failed step with everything right: %+v", steps)
		}
	}
	if len(e.sim.Ledger()) != 0 {
		t.Fatal("a probe placed an order")
	}
	steps = nil
	bad, err := reseller.NewIssuer(e.client(t, zap.NewNop(), func(o *reseller.ClientOptions) { o.APIKey = "wrong" }), reseller.IssuerOptions{Plan: resellersim.SectigoDVPlan})
	if err != nil {
		t.Fatal(err)
	}
	mixed := ca.ProbeRequest{Domains: []string{"a.example.com", "b.example.com"},
		Proofs: map[string]ca.Proof{"a.example.com": {Method: dcv.DNSTXT}, "b.example.com": {Method: dcv.HTTPFile}}}
	if err := bad.Probe(context.Background(), mixed, report); err == nil {
		t.Fatal("refused credentials probed fine")
	}
	failed := map[string]bool{}
	for _, s := range steps {
		failed[s.Name] = s.Result == ca.ProbeFailed
	}
	if !failed["log in"] || !failed["proofs"] {
		t.Fatalf("steps: %+v", steps)
	}
}
