package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/config"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/store"
)

// dryRun rehearses a renewal of name without any CA call: every domain's
// proof is published with a throwaway value and checked where the CA
// would look, then removed; a self-signed set is deployed into a scratch
// directory with the configured modes and the check command is run.
func dryRun(cfg *config.Config, st *store.SQLite, name string, stdout, stderr io.Writer) int {
	ctx := context.Background()
	lc := cfg.Log
	lc.Format = "console"
	log := newLogger(lc, zap.NewAtomicLevel(), stderr)
	p, err := build(cfg, st, log, observers{})
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitUsage
	}
	plan, err := p.plan(name)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	stopResponders, err := serveResponders(p.responders, log)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	defer stopResponders()
	step := func(format string, args ...any) { fmt.Fprintf(stdout, "dry run: "+format+"\n", args...) }
	ok := true

	// 1. DCV, with throwaway values.
	var published []*dcv.Published
	for _, d := range plan.Spec.Domains {
		proof := plan.Proofs[d]
		suffix := make([]byte, 8)
		_, _ = rand.Read(suffix)
		tok := "certd-dry-run-" + hex.EncodeToString(suffix)
		claim := plan.ClaimDomain(d)
		ch := dcv.Challenge{Domain: claim, Method: proof.CA.Method}
		switch proof.CA.Method {
		case dcv.DNSTXT:
			ch.RecordName, ch.Value = claim, tok
			if proof.CA.AuthorizationDomain != "" {
				ch.RecordName = proof.CA.AuthorizationDomain
			}
		case dcv.HTTPFile:
			ch.Path, ch.Content = "/.well-known/pki-validation/"+tok+".txt", tok
		default:
			step("%s: proved by %s; nothing to rehearse", d, proof.CA.Method)
			continue
		}
		pub, err := p.engine.Present(ctx, "dry-run:"+name, ch, proof.Target)
		if pub != nil {
			published = append(published, pub)
		}
		if err != nil {
			step("%s: publishing FAILED: %v", d, err)
			ok = false
			continue
		}
		step("%s: published %s at %s", d, proof.CA.Method, pub.Where())
	}
	if len(published) > 0 {
		start := time.Now()
		if err := p.engine.Wait(ctx, published); err != nil {
			step("visibility FAILED: %v", err)
			ok = false
		} else {
			step("every challenge visible where the CA looks (%s)", time.Since(start).Round(time.Millisecond))
		}
		if err := p.engine.CleanUp(ctx, published); err != nil {
			step("cleanup FAILED (will be retried by the daemon): %v", err)
			ok = false
		} else {
			step("challenges removed")
		}
	}

	// 2. Deploy into a scratch directory, then the check command.
	scratch, err := os.MkdirTemp("", "certd-dry-run-")
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	defer os.RemoveAll(scratch)
	bundle, err := selfSigned(plan.Spec.Domains, plan.Spec.KeyType)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	spec := plan.Deploy
	spec.Dir, spec.Reload, spec.Verify = scratch, nil, nil
	res, err := (&deploy.Deployer{}).Deploy(ctx, spec, bundle)
	for _, h := range res.Hooks {
		step("check %s: %s", strings.Join(h.Argv, " "), errOrOK(h.Err))
	}
	if err != nil {
		step("deploy FAILED: %v", err)
		ok = false
	} else {
		step("deploy built and checked in %s (modes %04o/%04o, owner %q, group %q)", scratch, spec.CertMode, spec.KeyMode, spec.Owner, spec.Group)
	}
	if !ok {
		step("%s would not renew cleanly; no order was placed", name)
		return exitFailure
	}
	step("%s would renew cleanly; no order was placed", name)
	return exitOK
}

// selfSigned makes a throwaway bundle for the dry-run deploy.
func selfSigned(domains []string, keyType string) (deploy.Bundle, error) {
	key, err := newDryRunKey(keyType)
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
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return deploy.Bundle{}, err
	}
	return deploy.Bundle{Domains: domains, Serial: "dry-run", Leaf: leaf, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}, nil
}

func newDryRunKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "ecdsa-p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa-2048", "rsa-3072", "rsa-4096":
		return rsa.GenerateKey(rand.Reader, 2048) // the size does not matter for a rehearsal
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}
