package providers

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/libdns/cloudflare"
	"github.com/libdns/rfc2136"

	"github.com/certd/certd/config"
	"github.com/certd/certd/dcv"
)

var ctx = context.Background()

func TestWebrootWritesAtomicallyWithReadableModes(t *testing.T) {
	old := syscall.Umask(0o077) // the service's UMask; the web server must still read tokens
	defer syscall.Umask(old)
	root := t.TempDir()
	w := &Webroot{Root: root}
	path := "/.well-known/pki-validation/gsdv.txt"
	if err := w.Put(ctx, "a.example.com", path, []byte("token-1")); err != nil {
		t.Fatal(err)
	}
	if err := w.Put(ctx, "a.example.com", path, []byte("token-2")); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(root, ".well-known", "pki-validation", "gsdv.txt")
	b, err := os.ReadFile(full)
	if err != nil || string(b) != "token-2" {
		t.Fatalf("content %q %v", b, err)
	}
	for p, want := range map[string]os.FileMode{full: 0o644, filepath.Dir(full): 0o755, filepath.Join(root, ".well-known"): 0o755} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %04o (%v)", p, fi.Mode().Perm(), want, err)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(full))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	// Removal takes only the named file and tolerates it being gone.
	other := filepath.Join(filepath.Dir(full), "someone-elses.txt")
	if err := os.WriteFile(other, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.Remove(ctx, "a.example.com", path); err != nil {
		t.Fatal(err)
	}
	if err := w.Remove(ctx, "a.example.com", path); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file certd did not write was removed: %v", err)
	}
}

func TestTokenPathsStayUnderWellKnown(t *testing.T) {
	w := &Webroot{Root: t.TempDir()}
	r := NewResponder("")
	for _, p := range []string{
		"/etc/passwd",
		"/.well-known/pki-validation/../../x",
		"/.well-known/pki-validation/a/b.txt",
		"/.well-known/pki-validation/",
		"/.well-known/other/x",
		"/.well-known/acme-challenge/..",
	} {
		if err := w.Put(ctx, "example.com", p, []byte("x")); err == nil {
			t.Errorf("webroot accepted %q", p)
		}
		if err := r.Put(ctx, "example.com", p, []byte("x")); err == nil {
			t.Errorf("responder accepted %q", p)
		}
	}
}

func TestResponderServesOnlyTokens(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := NewResponder(ln.Addr().String())
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Serve(cctx, ln) }()
	defer func() { cancel(); <-done }()
	// The request's Host is 127.0.0.1:port; the port is not part of the key.
	if err := r.Put(ctx, "127.0.0.1", "/.well-known/acme-challenge/tok", []byte("tok.thumb")); err != nil {
		t.Fatal(err)
	}
	get := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+ln.Addr().String()+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("GET", "/.well-known/acme-challenge/tok"); code != 200 || body != "tok.thumb" {
		t.Errorf("token: %d %q", code, body)
	}
	if code, _ := get("GET", "/"); code != 404 {
		t.Errorf("root: %d", code)
	}
	if code, _ := get("POST", "/.well-known/acme-challenge/tok"); code != 405 {
		t.Errorf("POST: %d", code)
	}
	if err := r.Remove(ctx, "127.0.0.1", "/.well-known/acme-challenge/tok"); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("GET", "/.well-known/acme-challenge/tok"); code != 404 {
		t.Errorf("removed token still served: %d", code)
	}
}

func TestResponderServesByHost(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := NewResponder(ln.Addr().String())
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Serve(cctx, ln) }()
	defer func() { cancel(); <-done }()
	const path = "/.well-known/pki-validation/gsdv.txt"
	for host, tok := range map[string]string{"a.example.com": "token-a", "b.example.com": "token-b"} {
		if err := r.Put(ctx, host, path, []byte(tok)); err != nil {
			t.Fatal(err)
		}
	}
	get := func(host string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+path, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct{ host, want string }{
		{"a.example.com", "token-a"},
		{"b.example.com", "token-b"},
		{"B.Example.COM.:80", "token-b"}, // case, trailing dot and port do not matter
		{"c.example.com", ""},            // published for other hosts only
		{"127.0.0.1", ""},
	} {
		code, body := get(c.host)
		if c.want == "" && code != 404 || c.want != "" && (code != 200 || body != c.want) {
			t.Errorf("Host %s: %d %q, want %q", c.host, code, body, c.want)
		}
	}
	if err := r.Remove(ctx, "a.example.com", path); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("a.example.com"); code != 404 {
		t.Errorf("removed token still served for a: %d", code)
	}
	if code, body := get("b.example.com"); code != 200 || body != "token-b" {
		t.Errorf("removing a's token took b's: %d %q", code, body)
	}
	// A host is a name without a port: the key would never match.
	if err := r.Put(ctx, "a.example.com:80", path, []byte("x")); err == nil {
		t.Error("responder accepted a host with a port")
	}
}

func TestHostAwareness(t *testing.T) {
	var _ dcv.HostBlind = (*Webroot)(nil)
	if !(&Webroot{}).HostBlind() {
		t.Error("a webroot serves one file for every host: it must declare itself host-blind")
	}
	if _, ok := any(NewResponder("")).(dcv.HostBlind); ok {
		t.Error("the responder serves by Host; it must not declare itself host-blind")
	}
}

func TestConstructorsResolveSecrets(t *testing.T) {
	t.Setenv("CERTD_TEST_TSIG", "c2VjcmV0")
	t.Setenv("CERTD_TEST_CF", "cf-token")
	data := `
dns:
  knot: {type: rfc2136, server: "127.0.0.1:5353", key_name: certd, key: env:CERTD_TEST_TSIG}
  cf: {type: cloudflare, api_token: env:CERTD_TEST_CF}
http:
  web: {type: webroot, root: ` + t.TempDir() + `}
`
	cfg, err := config.Parse("certd.yaml", []byte(data), config.Options{DNS: Decoders(DNSTypes()), HTTP: Decoders(HTTPTypes())})
	if err != nil {
		t.Fatal(err)
	}
	p, err := DNSTypes()["rfc2136"].New(cfg.DNS["knot"].Settings)
	if err != nil {
		t.Fatal(err)
	}
	if rp := p.(*rfc2136.Provider); rp.Key != "c2VjcmV0" || rp.KeyAlg != "hmac-sha256" || rp.Server != "127.0.0.1:5353" {
		t.Errorf("rfc2136 provider: %+v", rp)
	}
	p, err = DNSTypes()["cloudflare"].New(cfg.DNS["cf"].Settings)
	if err != nil {
		t.Fatal(err)
	}
	if cp := p.(*cloudflare.Provider); cp.APIToken != "cf-token" {
		t.Errorf("cloudflare token not resolved")
	}
	if _, err := HTTPTypes()["webroot"].New(cfg.HTTP["web"].Settings); err != nil {
		t.Error(err)
	}
	// Settings of the wrong type are an error, not a panic.
	if _, err := DNSTypes()["rfc2136"].New(&CloudflareConfig{}); err == nil {
		t.Error("wrong settings type accepted")
	}
	// An unset variable is an error naming where it was configured.
	os.Unsetenv("CERTD_TEST_CF")
	if _, err := DNSTypes()["cloudflare"].New(cfg.DNS["cf"].Settings); err == nil || !strings.Contains(err.Error(), "certd.yaml:4:") {
		t.Errorf("unset secret: %v", err)
	}
}

// parseDNSBlock decodes one DNS provider block through the real loader.
func parseDNSBlock(t *testing.T, typ, body string) (any, error) {
	t.Helper()
	indented := "    " + strings.ReplaceAll(strings.TrimSpace(body), "\n", "\n    ")
	data := "dns:\n  p:\n    type: " + typ + "\n" + indented + "\n"
	cfg, err := config.Parse("certd.yaml", []byte(data), config.Options{DNS: Decoders(DNSTypes())})
	if err != nil {
		return nil, err
	}
	return cfg.DNS["p"].Settings, nil
}

// A crash between Put's write and its rename leaves the temporary file:
// the journal's cleanup (Remove of the path) takes it away with the token.
func TestWebrootRemoveTakesTheTempLeftByACrash(t *testing.T) {
	root := t.TempDir()
	w := &Webroot{Root: root}
	path := "/.well-known/pki-validation/fileauth.txt"
	dir := filepath.Join(root, ".well-known", "pki-validation")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, ".certd-tmp-fileauth.txt")
	if err := os.WriteFile(stale, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.Remove(context.Background(), "www.example.com", path); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("left in the token directory: %v", left)
	}
}
