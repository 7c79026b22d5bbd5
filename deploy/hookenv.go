package deploy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certd/certd/internal/pemutil"
)

// Hook actions, in CERTD_ACTION: why a hook runs.
const (
	ActionDeploy   = "deploy"   // a new version was switched in
	ActionRollback = "rollback" // a previous version was switched back (failed deploy, or `certd rollback`)
	ActionTest     = "test"     // `certd hooks test`: the live version, nothing switched
)

// versionLeaf reads the leaf of one version directory of t.
func (t *tree) versionLeaf(version string) (*x509.Certificate, error) {
	if version == "" {
		return nil, errors.New("no version")
	}
	dir, err := t.certs.openDir(version)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	b, err := dir.readFile(CertFile)
	if err != nil {
		return nil, err
	}
	certs, err := pemutil.Certificates(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir.join(CertFile), err)
	}
	return certs[0], nil
}

// serialHex is a serial as certd writes it everywhere (upper-case hex).
func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%X", c.SerialNumber) }

// hookEnvFor is the full CERTD_* environment of a hook run because of
// action, for the version live now (leaf, in versionDir) and the one it
// replaced (prev, nil on a first deploy). The certbot and lego names of
// the same values are set too, so their hooks run unchanged.
func hookEnvFor(s Spec, action string, domains []string, leaf *x509.Certificate, versionDir string, prev *x509.Certificate) map[string]string {
	live := s.LivePath()
	env := map[string]string{
		"CERTD_ACTION":    action,
		"CERTD_NAME":      s.Name,
		"CERTD_LINEAGE":   live,
		"CERTD_DIR":       s.Dir,
		"CERTD_CERT":      filepath.Join(live, CertFile),
		"CERTD_CHAIN":     filepath.Join(live, ChainFile),
		"CERTD_FULLCHAIN": filepath.Join(live, FullchainFile),
		"CERTD_KEY":       filepath.Join(live, KeyFile),
		// certbot's deploy-hook variables.
		"RENEWED_LINEAGE": live,
		// lego's hook variables (its files are named differently; these
		// name certd's).
		"LEGO_CERT_PATH":     filepath.Join(live, FullchainFile),
		"LEGO_CERT_KEY_PATH": filepath.Join(live, KeyFile),
	}
	if s.Combined {
		env["CERTD_COMBINED"] = filepath.Join(live, CombinedFile)
	}
	if versionDir != "" {
		env["CERTD_VERSION_DIR"] = filepath.Join(s.Dir, versionDir)
	}
	if leaf != nil {
		if len(domains) == 0 {
			domains = leaf.DNSNames
			for _, ip := range leaf.IPAddresses {
				domains = append(domains, ip.String())
			}
		}
		env["CERTD_SERIAL"] = serialHex(leaf)
		env["CERTD_NOT_AFTER"] = leaf.NotAfter.UTC().Format(time.RFC3339)
		env["CERTD_FINGERPRINT"] = Fingerprint(leaf)
	}
	env["CERTD_DOMAINS"] = strings.Join(domains, " ")
	env["RENEWED_DOMAINS"] = env["CERTD_DOMAINS"]
	if len(domains) > 0 {
		env["LEGO_CERT_DOMAIN"] = domains[0]
	}
	if prev != nil {
		env["CERTD_PREVIOUS_SERIAL"] = serialHex(prev)
		env["CERTD_PREVIOUS_NOT_AFTER"] = prev.NotAfter.UTC().Format(time.RFC3339)
		env["CERTD_PREVIOUS_FINGERPRINT"] = Fingerprint(prev)
	}
	return env
}

// TestHooks runs s's check and reload hooks and its live verification
// against the version deployed now, with the environment a deploy of it
// would give them (CERTD_ACTION=test): nothing is written or switched. It
// returns every hook run and the first failure, naming its step.
func (d *Deployer) TestHooks(ctx context.Context, s Spec) (Result, error) {
	res := Result{Path: s.LivePath()}
	if err := checkName(s.Name); err != nil {
		return res, err
	}
	t, err := openTree(s, false)
	if errors.Is(err, os.ErrNotExist) {
		return res, fmt.Errorf("%s: nothing deployed yet", s.Name)
	}
	if err != nil {
		return res, err
	}
	defer t.Close()
	cur, err := t.current()
	if err != nil {
		return res, err
	}
	if cur == "" {
		return res, fmt.Errorf("%s: nothing deployed yet", s.Name)
	}
	res.Version = t.target(cur)
	leaf, err := t.versionLeaf(cur)
	if err != nil {
		return res, &Failure{Step: "bundle", Err: err}
	}
	var prev *x509.Certificate
	if vs, err := t.versions(); err == nil {
		for i, v := range vs {
			if v == cur && i > 0 {
				prev, _ = t.versionLeaf(vs[i-1])
				res.Previous = t.target(vs[i-1])
			}
		}
	}
	env := hookEnvFor(s, ActionTest, nil, leaf, res.Version, prev)
	if len(s.Check) > 0 {
		run := d.runHook(ctx, s.Check, env, s.Timeout)
		res.Hooks = append(res.Hooks, run)
		if run.Err != nil {
			return res, &Failure{Step: "check", Err: run.Err}
		}
	}
	for _, argv := range s.Reload {
		run := d.runHook(ctx, argv, env, s.Timeout)
		res.Hooks = append(res.Hooks, run)
		if run.Err != nil {
			return res, &Failure{Step: "reload", Err: run.Err}
		}
	}
	if s.Verify != nil {
		if err := VerifyLive(ctx, *s.Verify, leaf); err != nil {
			return res, &Failure{Step: "live verification", Err: err}
		}
	}
	return res, nil
}

// PostHooks runs hooks once, after a pass that deployed the certificates
// named in deployed (certbot's --post-hook: one reload of a server after
// twenty renewals, not twenty). Their environment: CERTD_ACTION=post,
// CERTD_DEPLOYED (the names, space-separated) and CERTD_DEPLOYED_COUNT.
// Every hook runs even if an earlier one failed.
func (d *Deployer) PostHooks(ctx context.Context, hooks [][]string, deployed []string, timeout time.Duration) []HookRun {
	env := map[string]string{
		"CERTD_ACTION":         "post",
		"CERTD_DEPLOYED":       strings.Join(deployed, " "),
		"CERTD_DEPLOYED_COUNT": fmt.Sprint(len(deployed)),
	}
	var runs []HookRun
	for _, argv := range hooks {
		runs = append(runs, d.runHook(ctx, argv, env, timeout))
	}
	return runs
}

// runHook is RunHook with the deployer's secrets redacted from the output.
func (d *Deployer) runHook(ctx context.Context, argv []string, env map[string]string, timeout time.Duration) HookRun {
	var secrets []string
	if d != nil && d.Redact != nil {
		secrets = d.Redact()
	}
	return RunHookRedacted(ctx, argv, env, timeout, secrets)
}
