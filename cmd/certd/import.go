package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/certd/certd/config"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

const importUsage = `usage: certd import certbot [-config FILE] [-dry-run] [DIR]   (DIR: /etc/letsencrypt)
       certd import lego    [-config FILE] [-dry-run] [DIR]   (DIR: ./.lego, or its certificates folder)

Adopts certificates another ACME client issued as the current versions of
the configured certificates with the same names and key type (the key must
match, the chain must link up, the certificate must still be valid): they
are stored, deployed in certd's layout with the certificate's hooks, and
renewed on the normal schedule, so nothing is ordered on the first run.
Stop the daemon first (the store is opened exclusively). -dry-run only
says what would be adopted.
`

// foreign is one certificate found in another client's tree.
type foreign struct {
	from  string // where it was read (for messages)
	leaf  *x509.Certificate
	chain []*x509.Certificate
	key   crypto.Signer
	err   error // why it cannot be read (the rest is then empty)
}

func cmdImport(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "certbot" && args[0] != "lego") {
		fmt.Fprint(stderr, importUsage)
		return exitUsage
	}
	tool := args[0]
	fs := newFlags("import "+tool, stderr)
	path := fs.String("config", DefaultConfig, "configuration file")
	dry := fs.Bool("dry-run", false, "say what would be adopted; change nothing")
	fs.Usage = func() { fmt.Fprint(stderr, importUsage); fs.PrintDefaults() }
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	dir := map[string]string{"certbot": "/etc/letsencrypt", "lego": ".lego"}[tool]
	switch fs.NArg() {
	case 0:
	case 1:
		dir = fs.Arg(0)
	default:
		fmt.Fprint(stderr, importUsage)
		return exitUsage
	}
	cfg, ok := loadOrReport(*path, stderr)
	if !ok {
		return exitUsage
	}
	var found []foreign
	var err error
	if tool == "certbot" {
		found, err = readCertbot(dir)
	} else {
		found, err = readLego(dir)
	}
	if err != nil {
		fmt.Fprintf(stderr, "certd import %s: %v\n", tool, err)
		return exitUsage
	}
	for _, f := range found {
		if f.err != nil {
			fmt.Fprintf(stderr, "certd import: %s: skipped: %v\n", f.from, f.err)
		}
	}
	plans, problems := matchImports(cfg, found, time.Now())
	for _, p := range problems {
		fmt.Fprintf(stderr, "certd import: %s\n", p)
	}
	if len(plans) == 0 {
		fmt.Fprintf(stderr, "certd import %s: nothing in %s matches a configured certificate\n", tool, dir)
		return exitFailure
	}
	if *dry {
		for _, p := range plans {
			fmt.Fprintf(stdout, "%s: would adopt serial %X from %s (valid until %s)\n", p.cert.Name, p.f.leaf.SerialNumber, p.f.from,
				p.f.leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		return exitOK
	}
	ctx := context.Background()
	st, err := openConfiguredStore(ctx, cfg, true)
	if err != nil {
		fmt.Fprintf(stderr, "certd import: %v (stop the daemon while importing)\n", err)
		if errors.Is(err, store.ErrLocked) || errors.Is(err, store.ErrSchemaNewer) {
			return exitStore
		}
		return exitFailure
	}
	defer st.Close()
	// The certificates get their records as a start would make them.
	sched, err := scheduler.New(scheduler.Options{Store: st, Work: func(context.Context, store.Certificate) error { return nil }, Schedule: "@every 24h",
		Fleet: fleetOf(cfg, st)})
	if err == nil {
		err = sched.Apply(ctx, certSpecs(cfg))
	}
	if err != nil {
		fmt.Fprintf(stderr, "certd import: %v\n", err)
		return exitFailure
	}
	d := &deploy.Deployer{Redact: secretValues(cfg)}
	code := exitOK
	for _, p := range plans {
		msg, err := adopt(ctx, st, d, tool, p)
		if err != nil {
			fmt.Fprintf(stderr, "certd import: %s: %v\n", p.cert.Name, err)
			code = exitFailure
			continue
		}
		fmt.Fprintln(stdout, msg)
	}
	return code
}

type importPlan struct {
	cert *config.Certificate
	f    foreign
}

// matchImports pairs each configured certificate with the newest found
// certificate for exactly its names, with its key type, whose key matches,
// whose chain links up and which is still valid. What cannot be adopted is
// said in problems.
func matchImports(cfg *config.Config, found []foreign, now time.Time) ([]importPlan, []string) {
	var plans []importPlan
	var problems []string
	for _, c := range cfg.Certificates {
		want := slices.Clone(c.Domains)
		sort.Strings(want)
		var best *foreign
		for i := range found {
			f := &found[i]
			if f.err != nil || !slices.Equal(leafNames(f.leaf), want) {
				continue
			}
			if kt := keyType(f.key); kt != c.KeyType {
				problems = append(problems, fmt.Sprintf("%s: %s has the names of %s but a %s key (configured: %s): not adopted", c.Name, f.from, c.Name, kt, c.KeyType))
				continue
			}
			if err := checkForeign(*f, now); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %s: %v: not adopted", c.Name, f.from, err))
				continue
			}
			if best == nil || f.leaf.NotAfter.After(best.leaf.NotAfter) {
				best = f
			}
		}
		if best == nil {
			continue
		}
		if a, ok := cfg.Accounts[c.Account]; ok && a.Type != "acme" {
			problems = append(problems, fmt.Sprintf("%s: %s comes from an ACME client, but %s is a %s account: not adopted (its renewals are orders of that CA)",
				c.Name, best.from, c.Account, a.Type))
			continue
		}
		plans = append(plans, importPlan{cert: c, f: *best})
	}
	return plans, problems
}

// checkForeign: the key is the leaf's, each certificate of the chain
// signed the one before, and now is inside the leaf's validity.
func checkForeign(f foreign, now time.Time) error {
	if eq, ok := f.leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(f.key.Public()) {
		return errors.New("the private key does not match the certificate")
	}
	if len(f.chain) == 0 {
		return errors.New("no chain (the issuer's certificate) found")
	}
	issuer := f.leaf
	for _, c := range f.chain {
		if err := issuer.CheckSignatureFrom(c); err != nil {
			return fmt.Errorf("chain: %s is not signed by %s: %w", issuer.Subject, c.Subject, err)
		}
		issuer = c
	}
	if now.Before(f.leaf.NotBefore) || !now.Before(f.leaf.NotAfter) {
		return fmt.Errorf("not valid now (valid %s to %s)", f.leaf.NotBefore.UTC().Format(time.RFC3339), f.leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// adopt stores f as the current version of p.cert (an order marked
// imported holds its key), deploys it and schedules its renewal.
func adopt(ctx context.Context, st store.Store, d *deploy.Deployer, tool string, p importPlan) (string, error) {
	c, err := st.GetCertificate(ctx, p.cert.Name)
	if err != nil {
		return "", err
	}
	leaf := p.f.leaf
	serial := fmt.Sprintf("%X", leaf.SerialNumber)
	if c.Current != nil {
		if c.Current.Fingerprint == deploy.Fingerprint(leaf) {
			return fmt.Sprintf("%s: serial %s is already its current version", c.Name, serial), nil
		}
		if !leaf.NotAfter.After(c.Current.NotAfter) {
			return fmt.Sprintf("%s: kept its current version (serial %s, valid until %s), which outlives %s", c.Name, c.Current.Serial,
				c.Current.NotAfter.UTC().Format(time.RFC3339), p.f.from), nil
		}
	}
	keyPEM, err := pemutil.EncodeKey(p.f.key)
	if err != nil {
		return "", err
	}
	publicSHA, err := pemutil.PublicSHA(p.f.key.Public())
	if err != nil {
		return "", err
	}
	gen := 1
	if prev, err := st.LatestOrder(ctx, c.Name); err == nil {
		gen = prev.Generation + 1
	}
	spec := scheduler.CertSpec{Name: p.cert.Name, Account: p.cert.Account, Domains: p.cert.Domains, KeyType: p.cert.KeyType}
	o := store.Order{IdempotencyKey: fmt.Sprintf("%s-import-%s", c.Name, shortHex(serial)), CertName: c.Name, Account: c.Account,
		Generation: gen, SpecHash: spec.Hash(), State: store.OrderIssued, CARef: "imported from " + tool + ": " + p.f.from}
	if o.ID, err = st.CreateOrder(ctx, o, store.PrivateKey{CertName: c.Name, KeyType: p.cert.KeyType, PEM: keyPEM, PublicSHA: publicSHA}); err != nil {
		return "", err
	}
	if o, err = st.GetOrder(ctx, o.ID); err != nil {
		return "", err
	}
	v := store.Version{CertName: c.Name, OrderID: o.ID, KeyID: o.KeyID, Serial: serial, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		Fingerprint: deploy.Fingerprint(leaf), CertPEM: pemutil.EncodeCertificates(leaf), ChainPEM: pemutil.EncodeCertificates(p.f.chain...)}
	if v.ID, err = st.AddVersion(ctx, v); err != nil {
		return "", err
	}
	dspec := deploySpec(p.cert)
	dep := store.Deployment{CertName: c.Name, VersionID: v.ID, Dir: dspec.LivePath(), State: "started", StartedAt: time.Now()}
	if dep.ID, err = st.AddDeployment(ctx, dep); err != nil {
		return "", err
	}
	res, err := d.Deploy(ctx, dspec, deploy.Bundle{Domains: p.cert.Domains, Serial: serial, Leaf: leaf, Chain: p.f.chain, KeyPEM: keyPEM})
	dep.FinishedAt = time.Now()
	for _, h := range res.Hooks {
		_, _ = st.AppendEvent(ctx, store.Event{Level: "info", Kind: "hook", CertName: c.Name, Account: c.Account,
			Message: fmt.Sprintf("hook %s: %s", strings.Join(h.Argv, " "), errOrOK(h.Err))})
	}
	if err != nil {
		dep.State, dep.Error = "failed", err.Error()
		_ = st.SaveDeployment(ctx, dep)
		return "", fmt.Errorf("stored, but not deployed: %w", err)
	}
	dep.State = "live"
	if err := st.SaveDeployment(ctx, dep); err != nil {
		return "", err
	}
	policy := scheduler.Policy{RemainingFraction: p.cert.Renew.RemainingFraction, Before: p.cert.Renew.Before.D()}
	if err := st.UpdateCertificate(ctx, c.Name, func(x *store.Certificate) error {
		x.CurrentVersion, x.State, x.Failures, x.LastError = v.ID, store.StateValid, 0, ""
		x.NextAction, x.NextActionAt, x.RetryAfter = scheduler.ActionRenew, scheduler.RenewalTime(leaf.NotBefore, leaf.NotAfter, policy, 0), time.Time{}
		c = *x
		return nil
	}); err != nil {
		return "", err
	}
	msg := fmt.Sprintf("%s: adopted serial %s from %s (valid until %s), deployed to %s; renewal at %s", c.Name, serial, p.f.from,
		leaf.NotAfter.UTC().Format(time.RFC3339), res.Path, c.NextActionAt.UTC().Format(time.RFC3339))
	_, _ = st.AppendEvent(ctx, store.Event{Level: "info", Kind: "imported", CertName: c.Name, Account: c.Account, Message: msg})
	return msg, nil
}

func shortHex(s string) string {
	if len(s) > 16 {
		return s[len(s)-16:]
	}
	return s
}

// leafNames are the certificate's DNS names and IP addresses, lower-case
// and sorted, as the configuration normalises them.
func leafNames(c *x509.Certificate) []string {
	var out []string
	for _, n := range c.DNSNames {
		out = append(out, strings.ToLower(strings.TrimSuffix(n, ".")))
	}
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	if len(out) == 0 && c.Subject.CommonName != "" && net.ParseIP(c.Subject.CommonName) == nil {
		out = append(out, strings.ToLower(c.Subject.CommonName))
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// keyType names k as the configuration does (ecdsa-p256, rsa-2048, ...).
func keyType(k crypto.Signer) string {
	switch k := k.Public().(type) {
	case *ecdsa.PublicKey:
		return "ecdsa-" + strings.ToLower(strings.ReplaceAll(k.Curve.Params().Name, "-", ""))
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", k.Public())
}

// readCertbot reads DIR/live/*/ (certbot's lineages: cert.pem, chain.pem,
// privkey.pem, symlinks into DIR/archive).
func readCertbot(dir string) ([]foreign, error) {
	live := filepath.Join(dir, "live")
	entries, err := os.ReadDir(live)
	if err != nil {
		return nil, fmt.Errorf("%w (is %s certbot's configuration folder?)", err, dir)
	}
	var out []foreign
	for _, e := range entries {
		lineage := filepath.Join(live, e.Name())
		if fi, err := os.Stat(lineage); err != nil || !fi.IsDir() {
			continue
		}
		f, err := readPEMSet(lineage, filepath.Join(lineage, "cert.pem"), filepath.Join(lineage, "chain.pem"), filepath.Join(lineage, "privkey.pem"))
		if err != nil {
			if fullchain := filepath.Join(lineage, "fullchain.pem"); exists(fullchain) {
				f, err = readPEMSet(lineage, fullchain, "", filepath.Join(lineage, "privkey.pem"))
			}
		}
		if err != nil {
			f = foreign{from: lineage, err: err}
		}
		out = append(out, f)
	}
	return out, nil
}

// readLego reads lego's certificates folder (DIR/certificates, or DIR
// itself): NAME.crt (the leaf, with its chain when lego bundled it),
// NAME.issuer.crt, NAME.key.
func readLego(dir string) ([]foreign, error) {
	certs := filepath.Join(dir, "certificates")
	if !exists(certs) {
		certs = dir
	}
	matches, err := filepath.Glob(filepath.Join(certs, "*.crt"))
	if err != nil {
		return nil, err
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("no certificate (*.crt) in %s (is it lego's .lego folder?)", certs)
	}
	var out []foreign
	for _, m := range matches {
		if strings.HasSuffix(m, ".issuer.crt") {
			continue
		}
		base := strings.TrimSuffix(m, ".crt")
		issuer := base + ".issuer.crt"
		if !exists(issuer) {
			issuer = ""
		}
		f, err := readPEMSet(m, m, issuer, base+".key")
		if err != nil {
			f = foreign{from: m, err: err}
		}
		out = append(out, f)
	}
	return out, nil
}

// readPEMSet reads a leaf (with any chain after it), an optional chain
// file (ignored when the first file carries the chain already) and a key.
func readPEMSet(from, certFile, chainFile, keyFile string) (foreign, error) {
	f := foreign{from: from}
	b, err := os.ReadFile(certFile)
	if err != nil {
		return f, err
	}
	certs, err := pemutil.Certificates(b)
	if err != nil {
		return f, fmt.Errorf("%s: %w", certFile, err)
	}
	f.leaf, f.chain = certs[0], certs[1:]
	if len(f.chain) == 0 && chainFile != "" {
		cb, err := os.ReadFile(chainFile)
		if err != nil {
			return f, err
		}
		if f.chain, err = pemutil.Certificates(cb); err != nil {
			return f, fmt.Errorf("%s: %w", chainFile, err)
		}
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return f, err
	}
	if f.key, err = pemutil.Key(kb); err != nil {
		return f, fmt.Errorf("%s: %w", keyFile, err)
	}
	return f, nil
}
