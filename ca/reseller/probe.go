package reseller

import (
	"context"
	"fmt"
	"strings"

	"github.com/certd/certd/ca"
)

var _ ca.Prober = (*Issuer)(nil)

// Probe implements ca.Prober with what the API offers read-only: the
// dcv_type the order would carry is worked out from the proofs, and the
// account's certificates of the plan are listed, which checks the
// credentials and the plan filter. Nothing is ordered.
func (is *Issuer) Probe(ctx context.Context, req ca.ProbeRequest, report func(ca.ProbeStep)) error {
	step := func(name string, r ca.ProbeResult, format string, args ...any) {
		report(ca.ProbeStep{Name: name, Result: r, Detail: fmt.Sprintf(format, args...)})
	}
	typ, err := is.dcvTypeFor(ca.Request{Domains: req.Domains, Proofs: req.Proofs})
	if err != nil {
		step("proofs", ca.ProbeFailed, "%v", err)
	} else {
		step("proofs", ca.ProbeOK, "the order would be proved by %s for %s", typ, strings.Join(req.Domains, ", "))
	}
	certs, err := is.c.List(ctx, ListFilter{Plan: is.opts.Plan})
	if err != nil {
		step("log in", ca.ProbeFailed, "%v", err)
		return err
	}
	step("log in", ca.ProbeOK, "the credentials were accepted; %d certificate(s) of plan %s on the account", len(certs), is.opts.Plan)
	step("balance", ca.ProbeUnchecked, "the API says whether the balance pays for an order only when it is placed")
	return nil
}
