package markmonitor_test

import (
	"context"
	"testing"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/markmonitor"
	"github.com/certd/certd/config"
)

// The dry run's probe logs in and looks the organisation up, and creates
// nothing.
func TestProbe(t *testing.T) {
	e := newEnv(t, nil)
	var steps []ca.ProbeStep
	report := func(s ca.ProbeStep) { steps = append(steps, s) }
	if err := e.issuer(t, nil).Probe(context.Background(), ca.ProbeRequest{Domains: []string{"www.example.com"}}, report); err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if s.Result == ca.ProbeFailed {
			t.Fatalf("a failed step with everything right: %+v", steps)
		}
	}
	if len(e.sim.Ledger()) != 0 || len(e.sim.Organizations(orgName)) != 0 {
		t.Fatal("a probe ordered or created something")
	}
	steps = nil
	bad := e.issuerWith(t, func(o *markmonitor.ClientOptions) { o.Password = config.NewSecretValue("wrong") }, nil)
	if err := bad.Probe(context.Background(), ca.ProbeRequest{Domains: []string{"www.example.com"}}, report); err == nil {
		t.Fatal("a refused login probed fine")
	}
	if len(steps) == 0 || steps[0].Name != "log in" || steps[0].Result != ca.ProbeFailed {
		t.Fatalf("steps: %+v", steps)
	}
}
