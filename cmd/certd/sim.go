package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/certd/certd/ca/atlas/atlassim"
	"github.com/certd/certd/ca/markmonitor/mmsim"
	"github.com/certd/certd/ca/reseller/resellersim"
	"github.com/certd/certd/ca/sectigo/sectigosim"
)

// cmdSim runs a CA simulator standalone, for trying configurations and
// for other tools' tests: `certd sim atlas -listen 127.0.0.1:8443 -dir D`.
func cmdSim(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "sectigo" {
		return simSectigo(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "reseller" {
		return simReseller(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "markmonitor" {
		return simMarkmonitor(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "atlas" {
		fmt.Fprintln(stderr, "usage: certd sim atlas [-listen ADDR] [-dir D] [-dns ADDR] [-http ADDR] [-rotate N] [-issue-delay D] [-rate R]")
		fmt.Fprintln(stderr, "       certd sim sectigo [-listen ADDR] [-dir D] [-dns ADDR] [-http ADDR] [-issue-delay D] [-call-limit N]")
		fmt.Fprintln(stderr, "       certd sim reseller [-listen ADDR] [-dir D] [-dns ADDR] [-http ADDR] [-issue-delay D]")
		fmt.Fprintln(stderr, "       certd sim markmonitor [-listen ADDR] [-dir D] [-dns ADDR] [-http ADDR] [-issue-delay D] [-rate N]")
		return exitUsage
	}
	fs := newFlags("sim atlas", stderr)
	listen := fs.String("listen", "127.0.0.1:8443", "address of the HVCA API (TLS, client certificate required)")
	dir := fs.String("dir", "atlas-sim", "folder for the client credentials, API CA and root")
	dnsAddr := fs.String("dns", "", "DNS server (host:port) the DNS DCV check queries")
	httpAddr := fs.String("http", "", "where gsdv.txt fetches go (host:port; default: the claimed domain, port 80)")
	rotate := fs.Int("rotate", 0, "rotate the issuing CA every N issuances")
	delay := fs.Duration("issue-delay", 0, "how long GET /certificates answers 202")
	rate := fs.Float64("rate", 0, "requests per second before 429 (0: no limit)")
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	sim, err := atlassim.New(atlassim.Options{APIKey: "sim-api-key", APISecret: "sim-api-secret", DNSServer: *dnsAddr, HTTPAddr: *httpAddr,
		RotateEvery: *rotate, IssueDelay: *delay, RateLimit: *rate})
	if err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	certPEM, keyPEM, err := sim.ClientCredentials("certd-sim-client")
	if err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	abs, _ := filepath.Abs(*dir)
	for name, data := range map[string][]byte{"client.pem": certPEM, "client.key": keyPEM, "api-key": []byte("sim-api-key\n"),
		"api-secret": []byte("sim-api-secret\n"), "api-ca.pem": sim.APICAPEM(), "root.pem": sim.RootPEM()} {
		if err := writePrivate(filepath.Join(abs, name), data); err != nil {
			fmt.Fprintf(stderr, "certd sim: %v\n", err)
			return exitFailure
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, `Atlas simulator on https://%[1]s/v2 (client certificate required)
An account block for certd:

accounts:
  atlas-sim:
    type: globalsign-atlas
    url: https://%[1]s/v2
    api_key: file:%[2]s/api-key
    api_secret: file:%[2]s/api-secret
    client_cert: %[2]s/client.pem
    client_key: file:%[2]s/client.key
    ca: %[2]s/api-ca.pem

Issued certificates chain to %[2]s/root.pem. Ctrl-C stops.
`, ln.Addr(), abs)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if err := sim.Serve(ctx, ln); err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// simSectigo runs the Sectigo reseller API simulator.
func simSectigo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("sim sectigo", stderr)
	listen := fs.String("listen", "127.0.0.1:8444", "address of the Auto* API (TLS)")
	dir := fs.String("dir", "sectigo-sim", "folder for the credentials, API CA and root")
	dnsAddr := fs.String("dns", "", "DNS server (host:port) CNAME_CSR_HASH is checked against")
	httpAddr := fs.String("http", "", "where HTTP_CSR_HASH fetches go (host:port; default: the domain, port 80)")
	delay := fs.Duration("issue-delay", 0, "how long after its DCV passed an order is issued")
	limit := fs.Int("call-limit", 0, "calls per minute before -42 (0: no limit)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	sim, err := sectigosim.New(sectigosim.Options{LoginName: "sim-login", LoginPassword: "sim-password", DNSServer: *dnsAddr, HTTPAddr: *httpAddr,
		IssueDelay: *delay, CallLimit: *limit})
	if err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	abs, _ := filepath.Abs(*dir)
	for name, data := range map[string][]byte{"login-password": []byte("sim-password\n"), "api-ca.pem": sim.APICAPEM(), "root.pem": sim.RootPEM()} {
		if err := writePrivate(filepath.Join(abs, name), data); err != nil {
			fmt.Fprintf(stderr, "certd sim: %v\n", err)
			return exitFailure
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, `Sectigo simulator on https://%[1]s
An account block for certd:

accounts:
  sectigo-sim:
    type: sectigo
    url: https://%[1]s
    login_name: sim-login
    login_password: file:%[2]s/login-password
    product: 488
    ca: %[2]s/api-ca.pem
    roots: %[2]s/root.pem
    poll_interval: 5s

Issued certificates chain to %[2]s/root.pem. Ctrl-C stops.
`, ln.Addr(), abs)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if err := sim.Serve(ctx, ln); err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// simReseller runs the reseller /ssl-certificate API simulator.
func simReseller(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("sim reseller", stderr)
	listen := fs.String("listen", "127.0.0.1:8445", "address of the API (TLS)")
	dir := fs.String("dir", "reseller-sim", "folder for the API key, API CA and root")
	dnsAddr := fs.String("dns", "", "DNS server (host:port) the DNS checks query")
	httpAddr := fs.String("http", "", "where FILE checks connect (host:port; default: the domain, port 80)")
	delay := fs.Duration("issue-delay", 0, "how long after every name is proved an order turns active")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	sim, err := resellersim.New(resellersim.Options{Username: "sim-user", APIKey: "sim-api-key", DNSServer: *dnsAddr, HTTPAddr: *httpAddr, IssueDelay: *delay})
	if err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	abs, _ := filepath.Abs(*dir)
	for name, data := range map[string][]byte{"api-key": []byte("sim-api-key\n"), "api-ca.pem": sim.APICAPEM(), "root.pem": sim.RootPEM()} {
		if err := writePrivate(filepath.Join(abs, name), data); err != nil {
			fmt.Fprintf(stderr, "certd sim: %v\n", err)
			return exitFailure
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, `Reseller /ssl-certificate simulator on https://%[1]s
An account block for certd (plans: %[3]s DigiCert DV, %[4]s Sectigo DV):

accounts:
  reseller-sim:
    type: reseller
    url: https://%[1]s
    username: sim-user
    api_key: file:%[2]s/api-key
    plan: %[3]s
    ca: %[2]s/api-ca.pem
    roots: %[2]s/root.pem
    poll_interval: 5s

Issued certificates chain to %[2]s/root.pem. Ctrl-C stops.
`, ln.Addr(), abs, resellersim.DigiCertDVPlan, resellersim.SectigoDVPlan)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if err := sim.Serve(ctx, ln); err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// simMarkmonitor runs the Markmonitor SSL Certs API simulator.
func simMarkmonitor(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("sim markmonitor", stderr)
	listen := fs.String("listen", "127.0.0.1:8446", "address of the API (TLS)")
	dir := fs.String("dir", "markmonitor-sim", "folder for the credentials, API CA and root")
	dnsAddr := fs.String("dns", "", "DNS server (host:port) the DNS token checks query")
	httpAddr := fs.String("http", "", "where fileauth.txt checks connect (host:port; default: the domain, port 80)")
	delay := fs.Duration("issue-delay", 0, "how long after its domains are validated an order is issued")
	rate := fs.Int("rate", 100, "requests per minute before 429")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	sim, err := mmsim.New(mmsim.Options{APIKey: "sim-api-key", Username: "sim-user", Password: "sim-password", DNSServer: *dnsAddr, HTTPAddr: *httpAddr,
		IssueDelay: *delay, RateLimit: *rate})
	if err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	abs, _ := filepath.Abs(*dir)
	for name, data := range map[string][]byte{"api-key": []byte("sim-api-key\n"), "password": []byte("sim-password\n"), "api-ca.pem": sim.APICAPEM(), "root.pem": sim.RootPEM()} {
		if err := writePrivate(filepath.Join(abs, name), data); err != nil {
			fmt.Fprintf(stderr, "certd sim: %v\n", err)
			return exitFailure
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, `Markmonitor simulator on https://%[1]s
An account block for certd:

accounts:
  markmonitor-sim:
    type: markmonitor
    url: https://%[1]s/cert/v1
    auth_url: https://%[1]s/auth/v1
    api_key: file:%[2]s/api-key
    username: sim-user
    password: file:%[2]s/password
    certificate_type: SSL_DV_GEOTRUST
    organization: {name: Example Corp, address: 1 Main Street, city: Boise, state: ID, country: US, zip: "83702", phone: "+1.2085550100",
      contacts: [{first_name: Jane, last_name: Doe, job_title: CTO, email: jane@example.com, phone: "+1.2085550101", types: [ORGANIZATION_CONTACT]}]}
    ca: %[2]s/api-ca.pem
    roots: %[2]s/root.pem
    poll_interval: 5s

Issued certificates chain to %[2]s/root.pem. Ctrl-C stops.
`, ln.Addr(), abs)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if err := sim.Serve(ctx, ln); err != nil {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	return exitOK
}
