package sectigo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"

	"github.com/certd/certd/ca"
)

var _ ca.Prober = (*Issuer)(nil)

// Probe implements ca.Prober with what the Auto* API offers read-only:
// the proofs a renewal would publish are worked out (refused methods,
// wildcards over HTTP, several names on a single-domain product), and
// GetDCVEmailAddressList is asked for the first name, which checks the
// login and that Sectigo takes the domain. Nothing is ordered.
func (is *Issuer) Probe(ctx context.Context, req ca.ProbeRequest, report func(ca.ProbeStep)) error {
	step := func(name string, r ca.ProbeResult, format string, args ...any) {
		report(ca.ProbeStep{Name: name, Result: r, Detail: fmt.Sprintf(format, args...)})
	}
	if len(req.Domains) == 0 {
		step("proofs", ca.ProbeFailed, "no names")
		return nil
	}
	// The proofs, from a throwaway CSR (the real one is made at renewal).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: req.Domains[0]}, DNSNames: req.Domains}, key)
	if err != nil {
		return err
	}
	if _, err := is.ChallengesBefore(ca.Request{Domains: req.Domains, CSR: csr, ClientRef: "certd-dry-run"}, req.Proofs); err != nil {
		step("proofs", ca.ProbeFailed, "%v", err)
	} else {
		step("proofs", ca.ProbeOK, "product %d takes %d name(s) proved as configured", is.opts.Product, len(req.Domains))
	}
	domain := req.Domains[0]
	if len(domain) > 2 && domain[:2] == "*." {
		domain = domain[2:]
	}
	if _, err := is.c.DCVEmailAddresses(ctx, domain); err != nil {
		step("log in", ca.ProbeFailed, "%v", err)
		return err
	}
	step("log in", ca.ProbeOK, "the login was accepted, and Sectigo lists approver addresses for %s (GetDCVEmailAddressList)", domain)
	step("price", ca.ProbeUnchecked, "the API prices product %d for %d days only when it is ordered", is.opts.Product, is.opts.Days)
	return nil
}
