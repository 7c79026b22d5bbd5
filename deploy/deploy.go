package deploy

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/certd/certd/internal/pemutil"
	"go.uber.org/zap"
)

// Spec is where and how one certificate is deployed (from configuration).
type Spec struct {
	Name     string // the certificate's name: <Dir>/<Name> is the live path
	Dir      string
	Owner    string // user name or id; empty: certd's own
	Group    string // group name or id; empty: certd's own
	CertMode os.FileMode
	KeyMode  os.FileMode
	Combined bool // also combined.pem: key then fullchain (HAProxy)
	Keep     int  // earlier versions kept for rollback
	Check    []string
	Reload   [][]string
	Timeout  time.Duration // per hook
	Verify   *Verify
}

// Verify is the live check after a reload.
type Verify struct {
	Address    string
	ServerName string
	Timeout    time.Duration
}

// Bundle is a verified certificate ready to deploy.
type Bundle struct {
	Domains []string
	Serial  string
	Leaf    *x509.Certificate
	Chain   []*x509.Certificate // intermediates, leaf's issuer first
	KeyPEM  []byte
}

// Files in every version directory.
const (
	CertFile      = "cert.pem"
	ChainFile     = "chain.pem"
	FullchainFile = "fullchain.pem"
	KeyFile       = "privkey.pem"
	CombinedFile  = "combined.pem"
)

// versionsDir holds the versions of every certificate under Dir.
const versionsDir = ".certd-versions"

// Failure is a deploy that did not go through, naming the step that
// failed: "bundle", "write", "switch", "check", "reload" or "live
// verification".
type Failure struct {
	Step string
	Err  error
}

func (f *Failure) Error() string { return f.Err.Error() }
func (f *Failure) Unwrap() error { return f.Err }

// Deployer puts bundles in place. It holds no state between calls: the
// live symlink is the truth.
type Deployer struct {
	Log *zap.Logger
	Now func() time.Time
}

// Result says what a deploy did.
type Result struct {
	Path     string // the live path (a symlink)
	Version  string // the version directory it points to
	Previous string // the version it replaced ("" on first deploy)
	Hooks    []HookRun
}

func (d *Deployer) log() *zap.Logger {
	if d.Log == nil {
		return zap.NewNop()
	}
	return d.Log
}

func (d *Deployer) now() time.Time {
	if d.Now == nil {
		return time.Now()
	}
	return d.Now()
}

// LivePath is <Dir>/<Name>.
func (s Spec) LivePath() string { return filepath.Join(s.Dir, s.Name) }

// Deploy writes b into a new version directory, checks it, switches the
// live path to it with one rename(2), runs the check and reload hooks and
// verifies the live endpoint. If any of those fails, the previous version
// is switched back and reloaded, and the error returned: certd never
// leaves a service on a set it could not verify, and never stops one.
func (d *Deployer) Deploy(ctx context.Context, s Spec, b Bundle) (Result, error) {
	res, step, err := d.deploy(ctx, s, b)
	if err != nil {
		return res, &Failure{Step: step, Err: err}
	}
	return res, nil
}

func (d *Deployer) deploy(ctx context.Context, s Spec, b Bundle) (Result, string, error) {
	res := Result{Path: s.LivePath()}
	if err := checkBundle(b); err != nil {
		return res, "bundle", fmt.Errorf("deploy %s: refusing an inconsistent bundle: %w", s.Name, err)
	}
	uid, gid, err := owner(s)
	if err != nil {
		return res, "write", fmt.Errorf("deploy %s: %w", s.Name, err)
	}
	prev, err := current(s)
	if err != nil {
		return res, "write", fmt.Errorf("deploy %s: %w", s.Name, err)
	}
	res.Previous = prev
	version, err := d.writeVersion(s, b, uid, gid)
	if err != nil {
		return res, "write", fmt.Errorf("deploy %s: %w", s.Name, err)
	}
	res.Version = version
	if err := swap(s, version); err != nil {
		return res, "switch", fmt.Errorf("deploy %s: switching to %s: %w", s.Name, version, err)
	}
	d.log().Info("deployed files switched", zap.String("cert", s.Name), zap.String("version", version), zap.String("serial", b.Serial))
	env := hookEnv(s, b)
	failed := func(step string, err error) (Result, string, error) {
		if prev == "" {
			return res, step, fmt.Errorf("deploy %s: %s: %w (no earlier version to roll back to)", s.Name, step, err)
		}
		if rerr := swap(s, prev); rerr != nil {
			return res, step, fmt.Errorf("deploy %s: %s: %w; and rolling back failed: %v", s.Name, step, err, rerr)
		}
		d.log().Warn("deploy failed; rolled back", zap.String("cert", s.Name), zap.String("step", step), zap.Error(err), zap.String("version", prev))
		for _, argv := range s.Reload {
			res.Hooks = append(res.Hooks, RunHook(ctx, argv, env, s.Timeout))
		}
		return res, step, fmt.Errorf("deploy %s: %s: %w (rolled back to the previous version)", s.Name, step, err)
	}
	if len(s.Check) > 0 {
		run := RunHook(ctx, s.Check, env, s.Timeout)
		res.Hooks = append(res.Hooks, run)
		if run.Err != nil {
			return failed("check", run.Err)
		}
	}
	for _, argv := range s.Reload {
		run := RunHook(ctx, argv, env, s.Timeout)
		res.Hooks = append(res.Hooks, run)
		if run.Err != nil {
			return failed("reload", run.Err)
		}
	}
	if s.Verify != nil {
		if err := VerifyLive(ctx, *s.Verify, b.Leaf); err != nil {
			return failed("live verification", err)
		}
	}
	d.prune(s, version, prev)
	return res, "", nil
}

// Rollback switches the live path to the version before the current one
// and runs the reload hooks.
func (d *Deployer) Rollback(ctx context.Context, s Spec) (Result, error) {
	res := Result{Path: s.LivePath()}
	cur, err := current(s)
	if err != nil || cur == "" {
		return res, fmt.Errorf("rollback %s: nothing deployed: %v", s.Name, err)
	}
	versions, err := listVersions(s)
	if err != nil {
		return res, fmt.Errorf("rollback %s: %w", s.Name, err)
	}
	i := slices.Index(versions, cur)
	if i <= 0 {
		return res, fmt.Errorf("rollback %s: no version older than %s is kept", s.Name, cur)
	}
	res.Previous, res.Version = cur, versions[i-1]
	if err := swap(s, res.Version); err != nil {
		return res, fmt.Errorf("rollback %s: %w", s.Name, err)
	}
	for _, argv := range s.Reload {
		run := RunHook(ctx, argv, map[string]string{"CERTD_NAME": s.Name}, s.Timeout)
		res.Hooks = append(res.Hooks, run)
		if run.Err != nil {
			return res, fmt.Errorf("rollback %s: reload: %w", s.Name, run.Err)
		}
	}
	return res, nil
}

// checkBundle: the key matches the leaf and the chain links up.
func checkBundle(b Bundle) error {
	signer, err := pemutil.Key(b.KeyPEM)
	if err != nil {
		return err
	}
	if eq, ok := b.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(signer.Public()) {
		return errors.New("private key does not match the certificate")
	}
	issuer := b.Leaf
	for _, c := range b.Chain {
		if err := issuer.CheckSignatureFrom(c); err != nil {
			return fmt.Errorf("chain: %s is not signed by %s: %w", issuer.Subject, c.Subject, err)
		}
		issuer = c
	}
	return nil
}

// writeVersion writes the PEM set into a fresh version directory, every
// file with its exact mode and owner whatever the umask, synced.
func (d *Deployer) writeVersion(s Spec, b Bundle, uid, gid int) (string, error) {
	base := filepath.Join(s.Dir, versionsDir, s.Name)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	// Nanoseconds, fixed width: names sort in deploy order, which rollback
	// and pruning rely on (two deploys within a second happen).
	name := fmt.Sprintf("%s-%s-%s", d.now().UTC().Format("20060102T150405.000000000Z"), shortSerial(b.Serial), hex.EncodeToString(suffix))
	dir := filepath.Join(base, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	cert := pemutil.EncodeCertificates(b.Leaf)
	chain := pemutil.EncodeCertificates(b.Chain...)
	full := append(append([]byte{}, cert...), chain...)
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{CertFile, cert, s.CertMode},
		{ChainFile, chain, s.CertMode},
		{FullchainFile, full, s.CertMode},
		{KeyFile, b.KeyPEM, s.KeyMode},
	}
	if s.Combined {
		files = append(files, struct {
			name string
			data []byte
			mode os.FileMode
		}{CombinedFile, append(append([]byte{}, b.KeyPEM...), full...), s.KeyMode})
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(dir, f.name), f.data, f.mode, uid, gid); err != nil {
			return "", err
		}
	}
	if err := syncDir(dir); err != nil {
		return "", err
	}
	return filepath.Join(versionsDir, s.Name, name), nil
}

func shortSerial(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	if s == "" {
		return "noserial"
	}
	return s
}

func writeFile(path string, data []byte, mode os.FileMode, uid, gid int) error {
	// Created 0600 first so no other user can open it before its final
	// mode and owner are in place.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && (uid >= 0 || gid >= 0) {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// current is the version the live path points to ("" if none). A live
// path that exists but is not certd's symlink is an error: certd does not
// take over files it did not write.
func current(s Spec) (string, error) {
	fi, err := os.Lstat(s.LivePath())
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		return "", fmt.Errorf("%s exists and is not a symlink certd made; move it away to let certd manage it", s.LivePath())
	}
	target, err := os.Readlink(s.LivePath())
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(target, filepath.Join(versionsDir, s.Name)+string(filepath.Separator)) {
		return "", fmt.Errorf("%s points to %s, outside certd's versions", s.LivePath(), target)
	}
	return target, nil
}

// swap points the live path at version with a single rename(2): a reader
// resolves the link to the old version or the new one, never neither.
func swap(s Spec, version string) error {
	tmp := filepath.Join(s.Dir, fmt.Sprintf(".%s.certd-tmp-%d", s.Name, time.Now().UnixNano()))
	if err := os.Symlink(version, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.LivePath()); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(s.Dir)
}

func listVersions(s Spec) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.Dir, versionsDir, s.Name))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join(versionsDir, s.Name, e.Name()))
		}
	}
	sort.Strings(out) // names start with a UTC timestamp
	return out, nil
}

// prune keeps the current version, the previous one and the Keep newest.
func (d *Deployer) prune(s Spec, cur, prev string) {
	versions, err := listVersions(s)
	if err != nil {
		return
	}
	keep := max(s.Keep, 1)
	for i, v := range versions {
		if v == cur || v == prev || i >= len(versions)-keep-1 {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.Dir, v)); err != nil {
			d.log().Warn("pruning an old version failed", zap.String("version", v), zap.Error(err))
		}
	}
}

// owner resolves Owner and Group to ids (-1: leave as is).
func owner(s Spec) (int, int, error) {
	uid, gid := -1, -1
	if s.Owner != "" {
		u, err := user.Lookup(s.Owner)
		if err != nil {
			if u, err = user.LookupId(s.Owner); err != nil {
				return 0, 0, fmt.Errorf("unknown owner %q", s.Owner)
			}
		}
		uid, _ = strconv.Atoi(u.Uid)
	}
	if s.Group != "" {
		g, err := user.LookupGroup(s.Group)
		if err != nil {
			if g, err = user.LookupGroupId(s.Group); err != nil {
				return 0, 0, fmt.Errorf("unknown group %q", s.Group)
			}
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return uid, gid, nil
}

// Fingerprint is the hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// hookEnv is the CERTD_* environment of hooks.
func hookEnv(s Spec, b Bundle) map[string]string {
	live := s.LivePath()
	return map[string]string{
		"CERTD_NAME":        s.Name,
		"CERTD_DOMAINS":     strings.Join(b.Domains, " "),
		"CERTD_CERT":        filepath.Join(live, CertFile),
		"CERTD_CHAIN":       filepath.Join(live, ChainFile),
		"CERTD_FULLCHAIN":   filepath.Join(live, FullchainFile),
		"CERTD_KEY":         filepath.Join(live, KeyFile),
		"CERTD_SERIAL":      b.Serial,
		"CERTD_NOT_AFTER":   b.Leaf.NotAfter.UTC().Format(time.RFC3339),
		"CERTD_FINGERPRINT": Fingerprint(b.Leaf),
	}
}

// verifyStreak is how many handshakes in a row must serve the new leaf:
// right after a reload, a server's old workers may still take connections
// for a moment, so one good answer proves little.
const verifyStreak = 3

// VerifyLive dials v.Address with SNI v.ServerName until the served leaf
// is want on verifyStreak handshakes in a row, or v.Timeout passes.
func VerifyLive(ctx context.Context, v Verify, want *x509.Certificate) error {
	timeout := v.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := 100 * time.Millisecond
	var last error
	streak := 0
	for {
		last = func() error {
			d := tls.Dialer{Config: &tls.Config{ServerName: v.ServerName, InsecureSkipVerify: true}} //nolint:gosec // compared by bytes below
			conn, err := d.DialContext(ctx, "tcp", v.Address)
			if err != nil {
				return err
			}
			defer conn.Close()
			certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
			if len(certs) == 0 || !certs[0].Equal(want) {
				return fmt.Errorf("%s still serves another certificate for %s", v.Address, v.ServerName)
			}
			return nil
		}()
		pause := wait
		if last == nil {
			if streak++; streak >= verifyStreak {
				return nil
			}
			pause = 50 * time.Millisecond
		} else {
			streak = 0
			wait = min(wait*2, 2*time.Second)
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = fmt.Errorf("%s served the new certificate only intermittently", v.Address)
			}
			return fmt.Errorf("live verification: %w", last)
		case <-time.After(pause):
		}
	}
}

// LiveLeaf reads the certificate the live path serves now.
func LiveLeaf(s Spec) (*x509.Certificate, error) {
	b, err := os.ReadFile(filepath.Join(s.LivePath(), CertFile))
	if err != nil {
		return nil, err
	}
	certs, err := pemutil.Certificates(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(s.LivePath(), CertFile), err)
	}
	return certs[0], nil
}

// LiveState is what is on disk at a certificate's live path.
type LiveState struct {
	Missing     bool   // no live path, or a file of the set is gone
	Fingerprint string // SHA-256 of the live leaf
	KeyMatches  bool   // the live key is the live certificate's
}

// Inspect reads the live set through one opened directory.
func Inspect(s Spec) LiveState {
	var st LiveState
	dir, err := os.Open(s.LivePath())
	if err != nil {
		return LiveState{Missing: true}
	}
	defer dir.Close()
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(s.LivePath(), name)) }
	certPEM, err1 := read(CertFile)
	keyPEM, err2 := read(KeyFile)
	_, err3 := read(FullchainFile)
	if err1 != nil || err2 != nil || err3 != nil {
		return LiveState{Missing: true}
	}
	certs, err := pemutil.Certificates(certPEM)
	if err != nil {
		return st
	}
	leaf := certs[0]
	st.Fingerprint = Fingerprint(leaf)
	st.KeyMatches = checkBundle(Bundle{Leaf: leaf, KeyPEM: keyPEM}) == nil
	return st
}
