package sectigo_test

import (
	"context"
	"testing"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/sectigo"
	"github.com/certd/certd/dcv"
)

// The dry run's probe checks the login and the proofs, and orders nothing.
func TestProbe(t *testing.T) {
	e := newEnv(t, nil)
	var steps []ca.ProbeStep
	report := func(s ca.ProbeStep) { steps = append(steps, s) }
	req := ca.ProbeRequest{Domains: []string{"www.example.com"}, Proofs: map[string]ca.Proof{"www.example.com": {Method: dcv.DNSTXT}}}
	if err := e.issuer(t, 488, nil).Probe(context.Background(), req, report); err != nil {
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
	// A wrong password and a wildcard over HTTP are both named.
	steps = nil
	bad := e.client(t, "wrong-password", nil)
	is, err := sectigo.NewIssuer(bad, sectigo.IssuerOptions{Product: 488, Days: 365})
	if err != nil {
		t.Fatal(err)
	}
	wild := ca.ProbeRequest{Domains: []string{"*.example.com"}, Proofs: map[string]ca.Proof{"*.example.com": {Method: dcv.HTTPFile}}}
	if err := is.Probe(context.Background(), wild, report); err == nil {
		t.Fatal("a refused login probed fine")
	}
	failed := map[string]bool{}
	for _, s := range steps {
		failed[s.Name] = s.Result == ca.ProbeFailed
	}
	if !failed["log in"] || !failed["proofs"] {
		t.Fatalf("steps: %+v", steps)
	}
}
