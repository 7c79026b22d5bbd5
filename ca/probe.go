package ca

import (
	"context"
	"time"
)

// Prober is implemented by CAs that can check, without placing a paid
// order, what an order would need: that the account's credentials are
// accepted and what the CA will check (a validation policy, the quota, the
// authorizations it would ask for). `certd renew -dry-run` calls it, so a
// dry run is never more optimistic than the real renewal.
type Prober interface {
	// Probe checks what an order for req would need, reporting every check
	// through report as it is made (report is called from Probe's
	// goroutine). It MUST NOT place a paid order, finalize anything,
	// register an account or change one (claims, keys, revocations); it MAY
	// create what costs nothing and lapses on its own (an ACME order that
	// is never finalized), and says so in a step. It MUST honour ctx.
	//
	// A failed check is reported as a ProbeFailed step and Probe goes on
	// with what does not depend on it. Probe returns an error only when
	// the CA cannot be used at all for the rest of the rehearsal (it did
	// not answer, the login was refused): the caller then skips the checks
	// that need the CA.
	Probe(ctx context.Context, req ProbeRequest, report func(ProbeStep)) error
}

// ProbeRequest is the order a dry run rehearses.
type ProbeRequest struct {
	// Domains are the certificate's names, as in Request.
	Domains []string
	// KeyType is the configured key type ("ecdsa-p256", "rsa-2048", ...).
	KeyType string
	// Lifetime, when set, is the validity that would be asked for.
	Lifetime time.Duration
	// Proofs says how each of Domains is to be proved.
	Proofs map[string]Proof
}

// ProbeStep is one check of a probe.
type ProbeStep struct {
	// Name is what was checked, for operators ("log in", "quota").
	Name   string
	Result ProbeResult
	// Detail is what was found, or why the check failed or was not made.
	Detail string
}

// ProbeResult is the outcome of one check.
type ProbeResult int

// Probe results.
const (
	ProbeOK        ProbeResult = iota // checked, and it would work
	ProbeFailed                       // checked, and the renewal would fail here
	ProbeUnchecked                    // could not be checked without an order or a change
)

func (r ProbeResult) String() string {
	switch r {
	case ProbeOK:
		return "ok"
	case ProbeFailed:
		return "FAILED"
	}
	return "not checked"
}
