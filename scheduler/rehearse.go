package scheduler

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/store"
)

// Rehearsal is what a dry run found, step by step.
type Rehearsal struct {
	Steps []ca.ProbeStep
	// OK: no step failed (steps that could not be checked do not count).
	OK bool
}

// Failed names the steps that failed.
func (r Rehearsal) Failed() []string {
	var out []string
	for _, s := range r.Steps {
		if s.Result == ca.ProbeFailed {
			out = append(out, s.Name)
		}
	}
	return out
}

// Unchecked are the steps a dry run could not check.
func (r Rehearsal) Unchecked() []ca.ProbeStep {
	var out []ca.ProbeStep
	for _, s := range r.Steps {
		if s.Result == ca.ProbeUnchecked {
			out = append(out, s)
		}
	}
	return out
}

// RehearseOptions are what a rehearsal needs beyond the plan.
type RehearseOptions struct {
	// Claims is the store's view of the account's claims: a claim the
	// store holds as verified and the CA no longer does fails the
	// rehearsal (the real renewal would first have to prove it again).
	Claims interface {
		GetClaim(ctx context.Context, account, domain string) (store.Claim, error)
	}
	// Report, when set, is told of every step as it is made.
	Report func(ca.ProbeStep)
	// SkipTarget, when set, returns why a proof through target cannot be
	// published by this process (a built-in responder whose address the
	// running daemon holds), or "" when it can.
	SkipTarget func(target dcv.Target) string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Rehearse does everything a renewal of plan does short of a purchase:
//
//   - the CA, when its issuer is a ca.Prober: the account's credentials,
//     what the CA will check (a validation policy, the quota, the
//     authorizations it would ask for), with read-only calls;
//   - the account-level claims (a ca.DomainAuthorizer), read at the CA and
//     compared with the store;
//   - every domain's proof, published with a throwaway value (a TXT value,
//     or a certd-dry-run-*.txt file beside, never over, a real token),
//     checked where the CA would look, and removed;
//   - a self-signed set deployed into a scratch directory with the
//     configured modes and owner, and the check command run on it.
//
// Each step is reported as it is made; what cannot be checked without an
// order or a change (the reload hooks, the live endpoint, an approval
// email) is reported as such. No order is paid for and nothing live
// changes.
func Rehearse(ctx context.Context, plan Plan, opts RehearseOptions) Rehearsal {
	r := Rehearsal{OK: true}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	add := func(s ca.ProbeStep) {
		r.Steps = append(r.Steps, s)
		if s.Result == ca.ProbeFailed {
			r.OK = false
		}
		if opts.Report != nil {
			opts.Report(s)
		}
	}
	step := func(name string, res ca.ProbeResult, format string, args ...any) {
		add(ca.ProbeStep{Name: name, Result: res, Detail: fmt.Sprintf(format, args...)})
	}

	// 1. The CA account and what the CA will check.
	reachable := true
	if p, ok := plan.Issuer.(ca.Prober); ok {
		proofs := make(map[string]ca.Proof, len(plan.Proofs))
		for d, p := range plan.Proofs {
			proofs[d] = p.CA
		}
		err := p.Probe(ctx, ca.ProbeRequest{Domains: plan.Spec.Domains, KeyType: plan.Spec.KeyType, Lifetime: plan.Lifetime, Proofs: proofs},
			func(s ca.ProbeStep) {
				s.Name = "CA " + s.Name
				add(s)
			})
		reachable = err == nil
	} else {
		step("CA", ca.ProbeUnchecked, "certd has no read-only check for this CA: its credentials and what it checks are first tried by the real order")
	}

	// 2. Account-level claims, at the CA and in the store.
	if da, ok := plan.Issuer.(ca.DomainAuthorizer); ok {
		seen := map[string]bool{}
		for _, d := range plan.Spec.Domains {
			cd := plan.claimDomain(d)
			if seen[cd] {
				continue
			}
			seen[cd] = true
			rehearseClaim(ctx, plan, da, cd, d, reachable, opts, now(), step)
		}
	}

	// 3. The proofs: published with throwaway values where the CA looks.
	var published []*dcv.Published
	for _, d := range plan.Spec.Domains {
		proof := plan.Proofs[d]
		name := "publish " + d
		suffix := make([]byte, 8)
		_, _ = rand.Read(suffix)
		tok := "certd-dry-run-" + hex.EncodeToString(suffix)
		loc, ok := plan.Issuer.(ca.ChallengeLocator)
		if !ok {
			step(name, ca.ProbeUnchecked, "this CA does not say where it looks for a proof; nothing to publish ahead of the order")
			continue
		}
		ch, ok := loc.Locate(plan.claimDomain(d), proof.CA, tok)
		if !ok {
			what := string(proof.CA.Method)
			if proof.CA.Method == dcv.Email {
				what = "an approval email to " + proof.CA.Email
			}
			step(name, ca.ProbeUnchecked, "proved by %s: nothing to publish, and the approval itself cannot be rehearsed", what)
			continue
		}
		if opts.SkipTarget != nil {
			if why := opts.SkipTarget(proof.Target); why != "" {
				step(name, ca.ProbeUnchecked, "%s", why)
				continue
			}
		}
		pub, err := plan.Engine.Present(ctx, "dry-run:"+plan.Spec.Name, ch, proof.Target)
		if pub != nil {
			published = append(published, pub)
		}
		if err != nil {
			step(name, ca.ProbeFailed, "%v", err)
			continue
		}
		step(name, ca.ProbeOK, "published %s at %s", proof.CA.Method, pub.Where())
	}
	if len(published) > 0 {
		start := time.Now()
		if err := plan.Engine.Wait(ctx, published); err != nil {
			step("visibility", ca.ProbeFailed, "%v", err)
		} else {
			step("visibility", ca.ProbeOK, "every challenge visible where the CA looks (%s)", time.Since(start).Round(time.Millisecond))
		}
		if err := plan.Engine.CleanUp(ctx, published); err != nil {
			step("cleanup", ca.ProbeFailed, "removing the throwaway challenges (the daemon retries it): %v", err)
		} else {
			step("cleanup", ca.ProbeOK, "challenges removed")
		}
	}

	// 4. The deploy, in a scratch directory.
	rehearseDeploy(ctx, plan, step)

	// 5. What only the real renewal does.
	step("order", ca.ProbeUnchecked, "not placed: a dry run buys nothing, so what the CA checks when it issues is first tried by the real order")
	return r
}

// rehearseClaim compares the account's claim on cd at the CA with the
// store's record of it.
func rehearseClaim(ctx context.Context, plan Plan, da ca.DomainAuthorizer, cd, name string, reachable bool, opts RehearseOptions, now time.Time,
	step func(name string, res ca.ProbeResult, format string, args ...any)) {
	label := "claim " + cd
	if !reachable {
		step(label, ca.ProbeUnchecked, "the CA could not be asked (see above)")
		return
	}
	var stored store.Claim
	haveStored := false
	if opts.Claims != nil {
		c, err := opts.Claims.GetClaim(ctx, plan.Spec.Account, cd)
		switch {
		case err == nil:
			stored, haveStored = c, true
		case !errors.Is(err, store.ErrNotFound):
			step(label, ca.ProbeFailed, "reading the stored claim: %v", err)
			return
		}
	}
	storedValid := haveStored && stored.Status == string(ca.AuthValid) && (stored.ExpiresAt.IsZero() || stored.ExpiresAt.After(now))
	auth, found, err := da.Authorization(ctx, stored.CAClaimID, cd)
	if err != nil {
		step(label, ca.ProbeFailed, "reading the claim at the CA: %v", err)
		return
	}
	caValid := found && auth.Status == ca.AuthValid && (auth.ExpiresAt.IsZero() || auth.ExpiresAt.After(now))
	method := plan.Proofs[name].CA.Method
	switch {
	case caValid:
		detail := "verified at the CA"
		if !auth.ExpiresAt.IsZero() {
			detail += " until " + auth.ExpiresAt.UTC().Format(time.RFC3339)
			if margin := plan.reassertBefore(); margin > 0 && auth.ExpiresAt.Sub(now) < margin {
				detail += fmt.Sprintf(" (inside the %s reassertion margin: it is proved again by %s first)", margin, method)
			}
		}
		if !storedValid {
			detail += "; certd adopts it"
		}
		step(label, ca.ProbeOK, "%s", detail)
	case storedValid:
		atCA := "has no such claim (deleted in the portal?)"
		switch {
		case found && auth.Status != ca.AuthValid:
			atCA = fmt.Sprintf("holds it as %s", auth.Status)
			if auth.Detail != "" {
				atCA += " (" + auth.Detail + ")"
			}
		case found:
			atCA = "says it lapsed at " + auth.ExpiresAt.UTC().Format(time.RFC3339)
		}
		step(label, ca.ProbeFailed, "the store holds the claim as verified until %s, but the CA %s: a renewal must prove it again first; "+
			"run `certd claims reassert -account %s %s` and dry-run again", stored.ExpiresAt.UTC().Format(time.RFC3339), atCA, plan.Spec.Account, cd)
	default:
		step(label, ca.ProbeUnchecked, "not verified at the CA yet: a renewal proves it first by %s (its publication is rehearsed below, the CA's own check of it is not)", method)
	}
}

// rehearseDeploy deploys a self-signed set into a scratch directory with
// the configured modes, owner and check command.
func rehearseDeploy(ctx context.Context, plan Plan, step func(name string, res ca.ProbeResult, format string, args ...any)) {
	scratch, err := os.MkdirTemp("", "certd-dry-run-")
	if err != nil {
		step("deploy", ca.ProbeFailed, "scratch directory: %v", err)
		return
	}
	defer os.RemoveAll(scratch)
	bundle, err := selfSigned(plan.Spec.Domains, plan.Spec.KeyType)
	if err != nil {
		step("deploy", ca.ProbeFailed, "test certificate: %v", err)
		return
	}
	spec := plan.Deploy
	spec.Dir, spec.Reload, spec.Verify = scratch, nil, nil
	res, err := (&deploy.Deployer{}).Deploy(ctx, spec, bundle)
	for _, h := range res.Hooks {
		if h.Err != nil {
			step("check hook", ca.ProbeFailed, "%v: %v", h.Argv, h.Err)
		} else {
			step("check hook", ca.ProbeOK, "%v ran on the scratch set", h.Argv)
		}
	}
	if err != nil {
		step("deploy", ca.ProbeFailed, "%v", err)
	} else {
		step("deploy", ca.ProbeOK, "built and checked in a scratch directory (modes %04o/%04o, owner %q, group %q)", spec.CertMode, spec.KeyMode, spec.Owner, spec.Group)
	}
	if len(plan.Deploy.Reload) > 0 {
		var hooks []string
		for _, r := range plan.Deploy.Reload {
			hooks = append(hooks, strings.Join(r, " "))
		}
		step("reload hooks", ca.ProbeUnchecked, "not run (a dry run reloads nothing): %s", strings.Join(hooks, "; "))
	} else {
		step("reload hooks", ca.ProbeUnchecked, "none configured: nothing is reloaded after a deploy")
	}
	if v := plan.Deploy.Verify; v != nil {
		step("live verification", ca.ProbeUnchecked, "%s (SNI %s) can only be checked against the new certificate", v.Address, v.ServerName)
	}
}

// selfSigned makes a throwaway bundle with the configured key type.
func selfSigned(domains []string, keyType string) (deploy.Bundle, error) {
	key, err := newKey(keyType)
	if err != nil {
		return deploy.Bundle{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: domains[0] + " (certd dry run)"},
		DNSNames: domains, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return deploy.Bundle{}, err
	}
	leaf, _ := x509.ParseCertificate(der)
	keyPEM, err := pemutil.EncodeKey(key)
	if err != nil {
		return deploy.Bundle{}, err
	}
	return deploy.Bundle{Domains: domains, Serial: "dry-run", Leaf: leaf, KeyPEM: keyPEM}, nil
}
