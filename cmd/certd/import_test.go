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
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// importCA issues the certificates another client would have left behind.
type importCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newImportCA(t *testing.T) *importCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Other ACME CA"}, NotBefore: time.Now().Add(-48 * time.Hour),
		NotAfter: time.Now().Add(365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &importCA{cert: c, key: key}
}

// issue returns a leaf for names with key, valid from nb to na, as PEM.
func (ca *importCA) issue(t *testing.T, serial int64, key crypto.Signer, nb, na time.Time, names ...string) (leafPEM, keyPEM []byte) {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	kp, err := pemutil.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemutil.EncodeCertificates(leaf), kp
}

// certbotLineage writes DIR/archive/NAME/*N.pem and the live/NAME
// symlinks certbot makes.
func certbotLineage(t *testing.T, dir, name string, leafPEM, chainPEM, keyPEM []byte) {
	t.Helper()
	arch, live := filepath.Join(dir, "archive", name), filepath.Join(dir, "live", name)
	for _, d := range []string{arch, live} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string][]byte{"cert": leafPEM, "chain": chainPEM, "fullchain": append(append([]byte{}, leafPEM...), chainPEM...), "privkey": keyPEM}
	for base, data := range files {
		if err := os.WriteFile(filepath.Join(arch, base+"1.pem"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..", "..", "archive", name, base+"1.pem"), filepath.Join(live, base+".pem")); err != nil {
			t.Fatal(err)
		}
	}
}

func TestImportCertbotAdoptsWithoutOrdering(t *testing.T) {
	cfg := cliConfig(t) // www: [www.example.com], ecdsa-p256, ACME account at a port where nothing answers
	t.Setenv(configEnv, cfg)
	ca := newImportCA(t)
	chain := pemutil.EncodeCertificates(ca.cert)
	now := time.Now()
	bot := t.TempDir()
	good, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafPEM, keyPEM := ca.issue(t, 0xabc1, good, now.Add(-24*time.Hour), now.Add(89*24*time.Hour), "www.example.com")
	certbotLineage(t, bot, "www.example.com", leafPEM, chain, keyPEM)
	// Same names, but not adoptable: an older one, an RSA key, an expired
	// one, and one whose key is another's.
	older, olderKey := ca.issue(t, 0xabc0, good, now.Add(-60*24*time.Hour), now.Add(29*24*time.Hour), "www.example.com")
	certbotLineage(t, bot, "www.example.com-0001", older, chain, olderKey)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaLeaf, rsaPEM := ca.issue(t, 0xabc2, rsaKey, now.Add(-time.Hour), now.Add(90*24*time.Hour), "www.example.com")
	certbotLineage(t, bot, "www.example.com-0002", rsaLeaf, chain, rsaPEM)
	expired, expiredKey := ca.issue(t, 0xabc3, good, now.Add(-100*24*time.Hour), now.Add(-time.Hour), "www.example.com")
	certbotLineage(t, bot, "www.example.com-0003", expired, chain, expiredKey)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, otherKeyPEM := ca.issue(t, 0xabc4, other, now.Add(-time.Hour), now.Add(90*24*time.Hour), "www.example.com")
	mismatched, _ := ca.issue(t, 0xabc5, good, now.Add(-time.Hour), now.Add(91*24*time.Hour), "www.example.com")
	certbotLineage(t, bot, "www.example.com-0004", mismatched, chain, otherKeyPEM)
	// A lineage without its key is skipped, saying so.
	certbotLineage(t, bot, "broken", shopless(t, ca, good), chain, []byte("not a key"))
	// Another name set: not configured, ignored.
	shop, shopKey := ca.issue(t, 0xabc6, good, now.Add(-time.Hour), now.Add(90*24*time.Hour), "shop.example.com")
	certbotLineage(t, bot, "shop.example.com", shop, chain, shopKey)

	code, out, errs := inProcess("import", "certbot", bot, "-dry-run")
	if code != exitOK || !strings.Contains(out, "www: would adopt serial ABC1") {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{"live/broken: skipped", "rsa-2048 key (configured: ecdsa-p256)", "not valid now", "does not match the certificate"} {
		if !strings.Contains(errs, want) {
			t.Errorf("import does not say %q:\n%s", want, errs)
		}
	}
	// The store is held by a daemon: exit 3, nothing adopted.
	dbPath := filepath.Join(filepath.Dir(cfg), "state", "certd.db")
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
		t.Fatal(err)
	}
	held, err := store.Open(context.Background(), dbPath, store.Options{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errs := inProcess("import", "certbot", bot); code != exitStore {
		t.Errorf("import while a daemon holds the store: exit %d\n%s%s", code, out, errs)
	}
	held.Close()

	code, out, errs = inProcess("import", "certbot", bot)
	if code != exitOK || !strings.Contains(out, "www: adopted serial ABC1") {
		t.Fatalf("import: exit %d\n%s%s", code, out, errs)
	}
	st, err := store.Open(context.Background(), dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := st.GetCertificate(ctx, "www")
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := pemutil.Certificates(leafPEM)
	want := scheduler.RenewalTime(leaf[0].NotBefore, leaf[0].NotAfter, scheduler.Policy{RemainingFraction: 1.0 / 3}, 0)
	if c.State != store.StateValid || c.Current == nil || c.Current.Serial != "ABC1" || c.NextAction != scheduler.ActionRenew ||
		c.NextActionAt.Sub(want).Abs() > time.Minute {
		t.Errorf("after import: state %s, current %+v, next %s at %s (want renew at %s)", c.State, c.Current, c.NextAction, c.NextActionAt, want)
	}
	if open, _ := st.OpenOrders(ctx); len(open) != 0 {
		t.Errorf("open orders after import: %+v", open)
	}
	st.Close()
	// Deployed in certd's layout, with the adopted key.
	live := filepath.Join(filepath.Dir(cfg), "live", "www")
	state := deploy.Inspect(deploy.Spec{Name: "www", Dir: filepath.Join(filepath.Dir(cfg), "live")})
	if state.Missing || !state.KeyMatches || state.Fingerprint != deploy.Fingerprint(leaf[0]) {
		t.Errorf("deployed set at %s: %+v", live, state)
	}
	// The first run has nothing to do: the CA (nothing listens there) is
	// never asked, and every certificate is valid.
	if code, out, errs := inProcess("run", "-once"); code != exitOK {
		t.Errorf("run -once after import: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := inProcess("status", "www", "-no-daemon"); code != exitOK {
		t.Errorf("status after import: exit %d\n%s%s", code, out, errs)
	}
	// Importing again changes nothing.
	if code, out, _ := inProcess("import", "certbot", bot); code != exitOK || !strings.Contains(out, "already its current version") {
		t.Errorf("second import: exit %d: %s", code, out)
	}
}

func TestImportLego(t *testing.T) {
	cfg := cliConfig(t)
	t.Setenv(configEnv, cfg)
	ca := newImportCA(t)
	now := time.Now()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafPEM, keyPEM := ca.issue(t, 0x1e90, key, now.Add(-time.Hour), now.Add(90*24*time.Hour), "www.example.com")
	dir := filepath.Join(t.TempDir(), ".lego")
	certs := filepath.Join(dir, "certificates")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	chain := pemutil.EncodeCertificates(ca.cert)
	for name, data := range map[string][]byte{"www.example.com.crt": append(append([]byte{}, leafPEM...), chain...),
		"www.example.com.issuer.crt": chain, "www.example.com.key": keyPEM, "www.example.com.json": []byte("{}")} {
		if err := os.WriteFile(filepath.Join(certs, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if code, out, errs := inProcess("import", "lego", dir); code != exitOK || !strings.Contains(out, "www: adopted serial 1E90") {
		t.Fatalf("import lego: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := inProcess("import", "lego", t.TempDir()); code != exitUsage || !strings.Contains(errs, "no certificate") {
		t.Errorf("empty lego folder: exit %d: %s", code, errs)
	}
}

func shopless(t *testing.T, ca *importCA, key crypto.Signer) []byte {
	t.Helper()
	leaf, _ := ca.issue(t, 0xdead, key, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "broken.example.com")
	return leaf
}
