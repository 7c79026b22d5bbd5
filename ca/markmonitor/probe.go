package markmonitor

import (
	"context"
	"fmt"

	"github.com/certd/certd/ca"
)

var _ ca.Prober = (*Issuer)(nil)

// Probe implements ca.Prober with read-only calls: it logs in (the API key
// and the JWT login) and looks the declared organisation up by name (an
// order would create it when absent, which a dry run does not). Nothing is
// ordered or created.
func (is *Issuer) Probe(ctx context.Context, req ca.ProbeRequest, report func(ca.ProbeStep)) error {
	step := func(name string, r ca.ProbeResult, format string, args ...any) {
		report(ca.ProbeStep{Name: name, Result: r, Detail: fmt.Sprintf(format, args...)})
	}
	if err := is.c.Login(ctx); err != nil {
		step("log in", ca.ProbeFailed, "%v", err)
		return err
	}
	step("log in", ca.ProbeOK, "the API key and the login were accepted")
	switch {
	case is.opts.OrganizationID != "":
		if _, err := is.c.Organization(ctx, is.opts.OrganizationID); err != nil {
			step("organisation", ca.ProbeFailed, "%v", err)
		} else {
			step("organisation", ca.ProbeOK, "organisation %s exists", is.opts.OrganizationID)
		}
	case is.opts.Organization != nil:
		orgs, err := is.c.FindOrganizations(ctx, is.opts.Organization.Name)
		switch {
		case err != nil:
			step("organisation", ca.ProbeFailed, "%v", err)
		case len(orgs) == 0:
			step("organisation", ca.ProbeOK, "%q does not exist yet: the first order creates it (and OV/EV orders wait for its validation)", is.opts.Organization.Name)
		default:
			step("organisation", ca.ProbeOK, "%q exists", is.opts.Organization.Name)
		}
	}
	step("proofs", ca.ProbeUnchecked, "DigiCert's tokens exist only once an order is placed")
	return nil
}
