package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// PebbleOptions configure a Pebble run.
type PebbleOptions struct {
	// DNSServer (host:port) is where Pebble's VA looks names up: Knot.
	DNSServer string
	// EAB, when set, makes External Account Binding required, with these
	// key ids and base64url HMAC keys.
	EAB map[string]string
	// Validity is certificateValidityPeriod (default Pebble's, 5 years).
	Validity time.Duration
	// HTTPPort is the port Pebble's VA fetches http-01 tokens from
	// (default: a free one).
	HTTPPort int
	// Env adds PEBBLE_* settings (PEBBLE_VA_NOSLEEP=1, ...). Nothing is
	// set by default: Pebble's nonce rejection, authorization reuse and
	// validation sleeps stay on.
	Env []string
	// Profiles is the profiles block (Pebble 2.10+: StartPebble210);
	// Debian's Pebble 2.4 ignores it.
	Profiles map[string]PebbleProfile

	bin string // default: Debian's pebble
}

// Pebble is a running Pebble ACME test server.
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// Management is the management API's base URL (roots, intermediates).
	Management string
	// TLSCA is a PEM file with the certificate Pebble serves its API with.
	TLSCA    string
	HTTPPort int
	// Client trusts Pebble's API certificate.
	Client *http.Client
	Dir    string
}

// StartPebble runs Debian's pebble on loopback ports and stops it (by
// PID) when the test ends.
func StartPebble(t testing.TB, o PebbleOptions) *Pebble {
	t.Helper()
	bin := o.bin
	if bin == "" {
		bin = Need(t, "pebble")
	}
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	if o.HTTPPort == 0 {
		o.HTTPPort = FreePort(t)
	}
	// A free port may be taken by another process before Pebble binds it
	// (tests run in parallel): Pebble then exits at once, and is started
	// again on other ports.
	for attempt := 1; ; attempt++ {
		if p, retry := startPebbleOnce(t, o, bin, dir, certFile, keyFile, pool, attempt < 3); !retry {
			return p
		}
	}
}

func startPebbleOnce(t testing.TB, o PebbleOptions, bin, dir, certFile, keyFile string, pool *x509.CertPool, mayRetry bool) (*Pebble, bool) {
	t.Helper()
	port, mport := FreePort(t), FreePort(t)
	cfg := map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", port),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mport),
		"certificate":             certFile,
		"privateKey":              keyFile,
		"httpPort":                o.HTTPPort,
		"tlsPort":                 FreePort(t),
		"ocspResponderURL":        "",
	}
	if len(o.EAB) > 0 {
		cfg["externalAccountBindingRequired"] = true
		cfg["externalAccountMACKeys"] = o.EAB
	}
	if o.Validity > 0 {
		cfg["certificateValidityPeriod"] = int(o.Validity / time.Second)
	}
	if len(o.Profiles) > 0 {
		cfg["profiles"] = o.Profiles
	}
	body, _ := json.Marshal(map[string]any{"pebble": cfg})
	confPath := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(confPath, body, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-config", confPath}
	if o.DNSServer != "" {
		args = append(args, "-dnsserver", o.DNSServer)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), o.Env...)
	exited, stop := startLogged(t, cmd, filepath.Join(dir, "pebble.log"))
	p := &Pebble{
		Directory:  fmt.Sprintf("https://127.0.0.1:%d/dir", port),
		Management: fmt.Sprintf("https://127.0.0.1:%d", mport),
		TLSCA:      certFile, HTTPPort: o.HTTPPort, Dir: dir,
		Client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := p.Client.Get(p.Directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "pebble.log"))
			if mayRetry && strings.Contains(string(b), "address already in use") {
				stop()
				return nil, true
			}
			t.Fatalf("pebble exited:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			stop()
			b, _ := os.ReadFile(filepath.Join(dir, "pebble.log"))
			t.Fatalf("pebble not serving %s: %v\n%s", p.Directory, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(stop)
	return p, false
}

// Log is what Pebble has printed so far.
func (p *Pebble) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "pebble.log"))
	return string(b)
}

// RootsFile writes Pebble's issuing root (it makes a new one per run) to
// a PEM file and returns its path.
func (p *Pebble) RootsFile(t testing.TB) string {
	t.Helper()
	resp, err := p.Client.Get(p.Management + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble roots: %d %v", resp.StatusCode, err)
	}
	path := filepath.Join(p.Dir, "roots.pem")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// selfSigned writes a loopback certificate and key for Pebble's API.
func selfSigned(t testing.TB, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "pebble test API"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "api-cert.pem"), filepath.Join(dir, "api-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
