package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certd/certd/ca/atlas"
	"github.com/certd/certd/internal/testenv"
)

func TestSimAtlasStandalone(t *testing.T) {
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd := exec.Command(binary(t), "sim", "atlas", "-listen", addr, "-dir", dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if !strings.Contains(line, addr) {
		t.Fatalf("banner: %q", line)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pair, err := tls.X509KeyPair(read("client.pem"), read("client.key"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(read("api-ca.pem"))
	c, err := atlas.NewClient(atlas.ClientOptions{URL: "https://" + addr + "/v2", APIKey: strings.TrimSpace(string(read("api-key"))),
		APISecret: strings.TrimSpace(string(read("api-secret"))), Certificate: pair, RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ValidationPolicy(context.Background()); err != nil {
		t.Fatalf("a client with the written credentials: %v", err)
	}
}

// Every simulator prints an account block that certd takes as it is:
// check-config accepts it with its files and secrets, and the dry run's
// CA probe logs in to the running simulator.
func TestSimPrintsAWorkingAccountBlock(t *testing.T) {
	for _, kind := range []string{"atlas", "sectigo", "reseller", "markmonitor"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			cmd := exec.Command(binary(t), "sim", kind, "-listen", addr, "-dir", filepath.Join(dir, "sim"))
			out, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			var block strings.Builder
			sc := bufio.NewScanner(out)
			in := false
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "Issued certificates") {
					break
				}
				if line == "accounts:" {
					in = true
				}
				if in {
					block.WriteString(line + "\n")
				}
			}
			account := strings.TrimSuffix(strings.Fields(strings.Split(block.String(), "\n")[1])[0], ":")
			cfg := block.String() + fmt.Sprintf(`dns:
  z: {type: rfc2136, server: "127.0.0.1:5353", key_name: k, key: file:%[1]s/tsig}
certificates:
  - {name: www, domains: [www.example.com], account: %[2]s, dcv: {method: dns, provider: z}, deploy: {dir: %[1]s/live}}
`, dir, account)
			if err := os.WriteFile(filepath.Join(dir, "tsig"), []byte("c2VjcmV0\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, "certd.yaml"), cfg)
			var o, e strings.Builder
			if code := run([]string{"check-config", filepath.Join(dir, "certd.yaml")}, &o, &e); code != exitOK {
				t.Fatalf("check-config of the printed block: %d\n%s\n%s\n%s", code, o.String(), e.String(), cfg)
			}
		})
	}
}
