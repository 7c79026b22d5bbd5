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
	"strconv"
	"strings"
	"time"

	"github.com/certd/certd/internal/pemutil"
	"go.uber.org/zap"

	"github.com/certd/certd/internal/failpoint"
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
	// Redact, when set, returns the secret values (the configuration's
	// resolved secrets) to replace in hooks' captured output.
	Redact func() []string
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
	if err := checkName(s.Name); err != nil {
		return res, "write", fmt.Errorf("deploy %s: %w", s.Name, err)
	}
	if err := checkBundle(b); err != nil {
		return res, "bundle", fmt.Errorf("deploy %s: refusing an inconsistent bundle: %w", s.Name, err)
	}
	uid, gid, err := owner(s)
	if err != nil {
		return res, "write", fmt.Errorf("deploy %s: %w", s.Name, err)
	}
	t, err := openTree(s, true)
	if err != nil {
		return res, "write", fmt.Errorf("deploy %s: %w", s.Name, err)
	}
	defer t.Close()
	prev, err := t.current()
	if err != nil {
		return res, "write", fmt.Errorf("deploy %s: %w", s.Name, err)
	}
	// Any link among the versions stops the deploy before anything is
	// written: certd made none, so someone else is at work in the tree.
	if _, err := t.versions(); err != nil {
		return res, "write", fmt.Errorf("deploy %s: %w", s.Name, err)
	}
	res.Previous = t.target(prev)
	var prevLeaf *x509.Certificate
	if prev != "" {
		prevLeaf, _ = t.versionLeaf(prev)
	}
	version, err := d.writeVersion(t, b, uid, gid)
	if err != nil {
		return res, "write", fmt.Errorf("deploy %s: %w", s.Name, err)
	}
	res.Version = t.target(version)
	if err := t.swap(version); err != nil {
		return res, "switch", fmt.Errorf("deploy %s: switching to %s: %w", s.Name, res.Version, err)
	}
	d.log().Info("deployed files switched", zap.String("cert", s.Name), zap.String("version", res.Version), zap.String("serial", b.Serial))
	env := hookEnvFor(s, ActionDeploy, b.Domains, b.Leaf, res.Version, prevLeaf)
	failed := func(step string, err error) (Result, string, error) {
		if prev == "" {
			return res, step, fmt.Errorf("deploy %s: %s: %w (no earlier version to roll back to)", s.Name, step, err)
		}
		if rerr := t.swap(prev); rerr != nil {
			return res, step, fmt.Errorf("deploy %s: %s: %w; and rolling back failed: %v", s.Name, step, err, rerr)
		}
		d.log().Warn("deploy failed; rolled back", zap.String("cert", s.Name), zap.String("step", step), zap.Error(err), zap.String("version", res.Previous))
		// The reload after a rollback sees the version live again, and
		// the one that failed as the previous.
		renv := hookEnvFor(s, ActionRollback, nil, prevLeaf, res.Previous, b.Leaf)
		for _, argv := range s.Reload {
			res.Hooks = append(res.Hooks, d.runHook(ctx, argv, renv, s.Timeout))
		}
		return res, step, fmt.Errorf("deploy %s: %s: %w (rolled back to the previous version)", s.Name, step, err)
	}
	if len(s.Check) > 0 {
		run := d.runHook(ctx, s.Check, env, s.Timeout)
		res.Hooks = append(res.Hooks, run)
		if run.Err != nil {
			return failed("check", run.Err)
		}
	}
	for _, argv := range s.Reload {
		run := d.runHook(ctx, argv, env, s.Timeout)
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
	d.prune(t, version, prev)
	return res, "", nil
}

// Rollback switches the live path to the version before the current one
// and runs the reload hooks.
func (d *Deployer) Rollback(ctx context.Context, s Spec) (Result, error) {
	res := Result{Path: s.LivePath()}
	if err := checkName(s.Name); err != nil {
		return res, fmt.Errorf("rollback %s: %w", s.Name, err)
	}
	t, err := openTree(s, false)
	if errors.Is(err, os.ErrNotExist) {
		return res, fmt.Errorf("rollback %s: nothing deployed: %w", s.Name, err)
	}
	if err != nil {
		return res, fmt.Errorf("rollback %s: %w", s.Name, err)
	}
	defer t.Close()
	cur, err := t.current()
	if err != nil {
		return res, fmt.Errorf("rollback %s: %w", s.Name, err)
	}
	if cur == "" {
		return res, fmt.Errorf("rollback %s: nothing deployed", s.Name)
	}
	versions, err := t.versions()
	if err != nil {
		return res, fmt.Errorf("rollback %s: %w", s.Name, err)
	}
	i := slices.Index(versions, cur)
	if i <= 0 {
		return res, fmt.Errorf("rollback %s: no version older than %s is kept", s.Name, t.target(cur))
	}
	res.Previous, res.Version = t.target(cur), t.target(versions[i-1])
	if err := t.swap(versions[i-1]); err != nil {
		return res, fmt.Errorf("rollback %s: %w", s.Name, err)
	}
	to, _ := t.versionLeaf(versions[i-1])
	from, _ := t.versionLeaf(cur)
	env := hookEnvFor(s, ActionRollback, nil, to, res.Version, from)
	for _, argv := range s.Reload {
		run := d.runHook(ctx, argv, env, s.Timeout)
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

// writeVersion writes the PEM set into a fresh version directory of t,
// every file with its exact mode and owner whatever the umask, synced, and
// returns the version's name.
func (d *Deployer) writeVersion(t *tree, b Bundle, uid, gid int) (string, error) {
	s := t.s
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	// Nanoseconds, fixed width: names sort in deploy order, which rollback
	// and pruning rely on (two deploys within a second happen).
	name := fmt.Sprintf("%s-%s-%s", d.now().UTC().Format("20060102T150405.000000000Z"), shortSerial(b.Serial), hex.EncodeToString(suffix))
	dir, err := t.certs.newDir(name)
	if err != nil {
		// A version made but not opened or synced (ENOSPC after the
		// entry was made) leaves nothing either; one that was already
		// there is not certd's to remove.
		if !errors.Is(err, os.ErrExist) {
			_ = t.certs.removeAll(name)
		}
		return "", err
	}
	defer dir.Close()
	// A version that could not be written whole (ENOSPC, EFBIG, EIO) is
	// removed at once: left among the versions, it would be what a
	// rollback switches the live path to after the next deploy.
	ok := false
	defer func() {
		if !ok {
			if rerr := t.certs.removeAll(name); rerr != nil {
				d.log().Warn("removing a version that could not be written failed", zap.String("version", t.target(name)), zap.Error(rerr))
			}
		}
	}()
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
		if err := dir.writeFile(f.name, f.data, f.mode, uid, gid); err != nil {
			return "", err
		}
	}
	if err := dir.sync(); err != nil {
		return "", err
	}
	ok = true
	return name, nil
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

// checkName: a certificate's name is one file name in the deploy
// directory, and not certd's own.
func checkName(name string) error {
	if !oneName(name) || name == versionsDir {
		return fmt.Errorf("the certificate name %q cannot be the name of its live path (one file name, not %s)", name, versionsDir)
	}
	return nil
}

// oneName: name is a single path element.
func oneName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// tree is one certificate's place in its deploy directory, opened: the
// deploy directory (where the live link is) and the certificate's
// directory of versions, both held as directory handles so that nothing
// is looked up again by path (see dirHandle).
type tree struct {
	s     Spec
	root  *dirHandle // s.Dir
	certs *dirHandle // s.Dir/.certd-versions/s.Name
}

// openTree opens s's tree, made first when create is set. A live path
// certd does not own stops it before anything is made.
func openTree(s Spec, create bool) (*tree, error) {
	root, err := openDirPath(s.Dir, create)
	if err != nil {
		return nil, err
	}
	t := &tree{s: s, root: root}
	if _, err := t.liveVersion(); err != nil {
		root.Close()
		return nil, err
	}
	vers, err := root.subDir(versionsDir, create)
	if err != nil {
		root.Close()
		return nil, err
	}
	defer vers.Close()
	if t.certs, err = vers.subDir(s.Name, create); err != nil {
		root.Close()
		return nil, err
	}
	return t, nil
}

func (t *tree) Close() {
	t.root.Close()
	if t.certs != nil {
		t.certs.Close()
	}
}

// target is what the live link holds to point at version ("" for "").
func (t *tree) target(version string) string {
	if version == "" {
		return ""
	}
	return filepath.Join(versionsDir, t.s.Name, version)
}

// liveVersion is the version the live link names ("" when there is no
// live path). A live path that exists but is not certd's symlink is an
// error: certd does not take over files it did not write. A link that
// points anywhere but at one version of this certificate, by the one
// relative path certd writes, is a planted link.
func (t *tree) liveVersion() (string, error) {
	k, err := t.root.kind(t.s.Name)
	switch {
	case err != nil:
		return "", err
	case k == kindMissing:
		return "", nil
	case k != kindLink:
		return "", fmt.Errorf("%s exists and is not a symlink certd made; move it away to let certd manage it", t.s.LivePath())
	}
	target, err := t.root.readlink(t.s.Name)
	if err != nil {
		return "", err
	}
	v, ok := strings.CutPrefix(target, versionsDir+"/"+t.s.Name+"/")
	if !ok || !oneName(v) {
		return "", fmt.Errorf("%w: %s points to %s, not to one of the versions in %s; refusing to switch a link certd did not make: "+
			"remove it to let certd manage the path", ErrPlantedLink, t.s.LivePath(), target, t.certsPath())
	}
	return v, nil
}

func (t *tree) certsPath() string { return filepath.Join(t.s.Dir, versionsDir, t.s.Name) }

// current is the version the live path points to: "" if none, or if the
// version it names is gone (there is nothing to roll back to). A version
// that is not a directory (a symlink planted in its place) is an error.
func (t *tree) current() (string, error) {
	v, err := t.liveVersion()
	if err != nil || v == "" {
		return "", err
	}
	k, err := t.certs.kind(v)
	switch {
	case err != nil:
		return "", err
	case k == kindMissing:
		return "", nil
	case k == kindLink:
		return "", t.certs.planted(v)
	case k != kindDir:
		return "", fmt.Errorf("%s, where %s points, is not a version directory certd made", t.certs.join(v), t.s.LivePath())
	}
	return v, nil
}

// versions lists the certificate's version directories, oldest first
// (names start with a UTC timestamp). A symlink among them is refused:
// certd makes none there.
func (t *tree) versions() ([]string, error) {
	names, err := t.certs.names()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		k, err := t.certs.kind(n)
		if err != nil {
			return nil, err
		}
		switch k {
		case kindDir:
			out = append(out, n)
		case kindLink:
			return nil, t.certs.planted(n)
		}
	}
	return out, nil
}

// swap points the live path at version with a single rename(2): a reader
// resolves the link to the old version or the new one, never neither.
func (t *tree) swap(version string) error {
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	tmp := fmt.Sprintf(".%s.certd-tmp-%s", t.s.Name, hex.EncodeToString(suffix))
	if err := t.root.symlink(t.target(version), tmp); err != nil {
		return err
	}
	failpoint.Hit(failpoint.DeployBeforeSwitch)
	if err := t.root.rename(tmp, t.s.Name); err != nil {
		_ = t.root.removeAll(tmp)
		return err
	}
	return t.root.sync()
}

// prune keeps the current version, the previous one and the Keep newest.
func (d *Deployer) prune(t *tree, cur, prev string) {
	versions, err := t.versions()
	if err != nil {
		d.log().Warn("listing versions to prune failed", zap.String("cert", t.s.Name), zap.Error(err))
		return
	}
	keep := max(t.s.Keep, 1)
	for i, v := range versions {
		if v == cur || v == prev || i >= len(versions)-keep-1 {
			continue
		}
		if err := t.certs.removeAll(v); err != nil {
			d.log().Warn("pruning an old version failed", zap.String("version", t.target(v)), zap.Error(err))
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

// Inspect reads the live set through one opened directory, so that a
// switch between two reads cannot mix versions.
func Inspect(s Spec) LiveState {
	var st LiveState
	dir, err := openDirPath(s.LivePath(), false)
	if err != nil {
		return LiveState{Missing: true}
	}
	defer dir.Close()
	certPEM, err1 := dir.readFile(CertFile)
	keyPEM, err2 := dir.readFile(KeyFile)
	_, err3 := dir.readFile(FullchainFile)
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
