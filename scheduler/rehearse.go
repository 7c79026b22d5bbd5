package scheduler

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/pemutil"
)

// Rehearsal is what a dry run found, step by step.
type Rehearsal struct {
	Steps []string
	OK    bool
}

func (r *Rehearsal) step(ok bool, format string, args ...any) {
	r.Steps = append(r.Steps, fmt.Sprintf(format, args...))
	if !ok {
		r.OK = false
	}
}

// Rehearse does everything a renewal of plan does except asking the CA:
// every domain's proof is published with a throwaway value (a TXT value,
// or a certd-dry-run-*.txt file beside, never over, a real token), checked
// where the CA would look and removed; a self-signed set is deployed into
// a scratch directory with the configured modes and owner, and the check
// command is run on it. No order is placed and nothing live changes.
func Rehearse(ctx context.Context, plan Plan) Rehearsal {
	r := Rehearsal{OK: true}
	var published []*dcv.Published
	for _, d := range plan.Spec.Domains {
		proof := plan.Proofs[d]
		suffix := make([]byte, 8)
		_, _ = rand.Read(suffix)
		tok := "certd-dry-run-" + hex.EncodeToString(suffix)
		claim := plan.claimDomain(d)
		loc, ok := plan.Issuer.(ca.ChallengeLocator)
		if !ok {
			r.step(true, "%s: this CA does not say where it looks; nothing to rehearse", d)
			continue
		}
		ch, ok := loc.Locate(claim, proof.CA, tok)
		if !ok {
			r.step(true, "%s: proved by %s; nothing to rehearse", d, proof.CA.Method)
			continue
		}
		pub, err := plan.Engine.Present(ctx, "dry-run:"+plan.Spec.Name, ch, proof.Target)
		if pub != nil {
			published = append(published, pub)
		}
		if err != nil {
			r.step(false, "%s: publishing FAILED: %v", d, err)
			continue
		}
		r.step(true, "%s: published %s at %s", d, proof.CA.Method, pub.Where())
	}
	if len(published) > 0 {
		start := time.Now()
		if err := plan.Engine.Wait(ctx, published); err != nil {
			r.step(false, "visibility FAILED: %v", err)
		} else {
			r.step(true, "every challenge visible where the CA looks (%s)", time.Since(start).Round(time.Millisecond))
		}
		if err := plan.Engine.CleanUp(ctx, published); err != nil {
			r.step(false, "cleanup FAILED (the daemon retries it): %v", err)
		} else {
			r.step(true, "challenges removed")
		}
	}

	scratch, err := os.MkdirTemp("", "certd-dry-run-")
	if err != nil {
		r.step(false, "scratch directory: %v", err)
		return r
	}
	defer os.RemoveAll(scratch)
	bundle, err := selfSigned(plan.Spec.Domains, plan.Spec.KeyType)
	if err != nil {
		r.step(false, "test certificate: %v", err)
		return r
	}
	spec := plan.Deploy
	spec.Dir, spec.Reload, spec.Verify = scratch, nil, nil
	res, err := (&deploy.Deployer{}).Deploy(ctx, spec, bundle)
	for _, h := range res.Hooks {
		r.step(h.Err == nil, "check %v: %v", h.Argv, okOr(h.Err))
	}
	if err != nil {
		r.step(false, "deploy FAILED: %v", err)
	} else {
		r.step(true, "deploy built and checked in a scratch directory (modes %04o/%04o, owner %q, group %q)", spec.CertMode, spec.KeyMode, spec.Owner, spec.Group)
	}
	return r
}

func okOr(err error) string {
	if err != nil {
		return err.Error()
	}
	return "ok"
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
