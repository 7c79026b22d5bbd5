package deploy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certd/certd/deploy"
)

// subCA is an intermediate named cn, signed by ca.
func (ca *testCA) subCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key}
}

// TestRefusesAChainThatDoesNotLinkUp: every link of the chain must carry
// the signature of the next certificate, not only its name. The impostors
// have the same subjects as the real CAs (a re-keyed intermediate, a
// cross-signed root picked by name), so a check by names alone would let
// them through and nginx would serve a chain no client can verify.
func TestRefusesAChainThatDoesNotLinkUp(t *testing.T) {
	root := newCA(t)
	inter := root.subCA(t, "test intermediate")
	otherRoot := newCA(t) // also "test CA", another key
	otherInter := otherRoot.subCA(t, "test intermediate")
	cases := []struct {
		name  string
		chain []*x509.Certificate
		bad   string // what the error must name; "" deploys
	}{
		{"intermediate and root that signed it", []*x509.Certificate{inter.cert, root.cert}, ""},
		{"intermediate that did not sign the leaf", []*x509.Certificate{otherInter.cert, root.cert}, "CN=www.example.com is not signed by CN=test intermediate"},
		{"root that did not sign the intermediate", []*x509.Certificate{inter.cert, otherRoot.cert}, "CN=test intermediate is not signed by CN=test CA"},
		{"root in the intermediate's place", []*x509.Certificate{root.cert}, "CN=www.example.com is not signed by CN=test CA"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			b := inter.bundle(t, 7, "www.example.com")
			b.Chain = c.chain
			_, err := (&deploy.Deployer{}).Deploy(ctx, spec(dir), b)
			if c.bad == "" {
				if err != nil {
					t.Fatalf("a good chain was refused: %v", err)
				}
				return
			}
			var f *deploy.Failure
			if err == nil || !errors.As(err, &f) || f.Step != "bundle" || !strings.Contains(err.Error(), c.bad) {
				t.Fatalf("deploy: %v, want a bundle failure naming %q", err, c.bad)
			}
			if _, err := os.Lstat(filepath.Join(dir, "www")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a refused bundle left a live path: %v", err)
			}
			if _, err := os.Lstat(filepath.Join(dir, ".certd-versions")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a refused bundle was written: %v", err)
			}
		})
	}
}
