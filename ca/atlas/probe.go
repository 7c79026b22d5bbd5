package atlas

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/certd/certd/ca"
)

var _ ca.Prober = (*Issuer)(nil)

// Probe implements ca.Prober with read-only calls: it logs in (the mTLS
// client certificate, the API key and secret), reads the validation policy
// and checks against it the request a renewal would send (key type and
// size, subject, lifetime, the number of names), says which names no
// verified claim covers yet, and reads the issuance quota. Nothing is
// ordered and no claim is touched.
func (is *Issuer) Probe(ctx context.Context, req ca.ProbeRequest, report func(ca.ProbeStep)) error {
	step := func(name string, r ca.ProbeResult, format string, args ...any) {
		report(ca.ProbeStep{Name: name, Result: r, Detail: fmt.Sprintf(format, args...)})
	}
	if err := is.c.Login(ctx); err != nil {
		err = classify("logging in", err)
		step("log in", ca.ProbeFailed, "%v", err)
		return err
	}
	step("log in", ca.ProbeOK, "%s accepted the client certificate, the API key and the API secret", is.c.base.Host)

	pol, err := is.c.ValidationPolicy(ctx)
	if err != nil {
		err = classify("reading the validation policy", err)
		step("validation policy", ca.ProbeFailed, "%v", err)
		return err
	}
	if err := checkAgainstPolicy(pol, req, is.now()); err != nil {
		step("validation policy", ca.ProbeFailed, "the account's policy refuses what certd would request: %v", err)
	} else {
		names := fmt.Sprintf("%d names", len(req.Domains))
		if len(req.Domains) == 1 {
			names = "1 name"
		}
		detail := fmt.Sprintf("the request a renewal sends (%s key, %s) meets the account's policy", keyTypeOr(req.KeyType), names)
		if refused := policyRefused(pol, req.Domains); len(refused) > 0 {
			// The policy lists verified claims: these names are proved
			// (a claim verified) before the order, as a renewal does.
			detail += fmt.Sprintf("; no verified claim covers %s yet (see the claim checks)", strings.Join(refused, ", "))
		}
		step("validation policy", ca.ProbeOK, "%s", detail)
	}

	n, err := is.c.Quota(ctx)
	switch {
	case err != nil:
		step("quota", ca.ProbeFailed, "%v", classify("reading the issuance quota", err))
	case n <= 0:
		step("quota", ca.ProbeFailed, "the account has no issuance left (quota %d): the order would be refused with 402", n)
	default:
		step("quota", ca.ProbeOK, "%d issuances left", n)
	}
	return nil
}

// checkAgainstPolicy builds the request a renewal would send, with a
// throwaway key of the configured type, against pol with its name rules
// relaxed: which names are covered depends on claims, checked apart.
func checkAgainstPolicy(pol *Policy, req ca.ProbeRequest, now time.Time) error {
	key, err := probeKey(req.KeyType)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: req.Domains[0]}, DNSNames: req.Domains}, key)
	if err != nil {
		return err
	}
	relaxed := *pol
	relaxed.SAN.DNSNames.List = nil
	relaxed.SubjectDN = maps.Clone(pol.SubjectDN)
	if raw, ok := relaxed.SubjectDN["common_name"]; ok {
		var sp StringPolicy
		if json.Unmarshal(raw, &sp) == nil && sp.Presence != "" {
			sp.Format = ""
			relaxed.SubjectDN["common_name"], _ = json.Marshal(sp)
		}
	}
	spec := RequestSpec{Domains: req.Domains, Key: key, CSR: csr, NotBefore: now}
	if req.Lifetime > 0 {
		spec.NotAfter = now.Add(req.Lifetime)
	}
	_, err = BuildRequest(&relaxed, spec)
	var pe *PolicyError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %s", pe.Field, pe.Msg)
	}
	return err
}

func keyTypeOr(t string) string {
	if t == "" {
		return "ecdsa-p256"
	}
	return t
}

// probeKey is a throwaway key of the configured type.
func probeKey(keyType string) (crypto.Signer, error) {
	switch keyTypeOr(keyType) {
	case "ecdsa-p256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ecdsa-p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa-2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "rsa-3072":
		return rsa.GenerateKey(rand.Reader, 3072)
	case "rsa-4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("unknown key type %q", keyType)
}
