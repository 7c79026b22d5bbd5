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
