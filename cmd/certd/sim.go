package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/certd/certd/ca/atlas/atlassim"
	"github.com/certd/certd/ca/markmonitor/mmsim"
	"github.com/certd/certd/ca/reseller/resellersim"
	"github.com/certd/certd/ca/sectigo/sectigosim"
)

// simFlags are the settings every simulator takes.
type simFlags struct {
	dns, http string
	delay     time.Duration
}

// simKind is one simulator `certd sim` runs: its flags, how it is built,
// the files a client needs, and the account block that uses them.
type simKind struct {
	listen, dir, usage string
	// flags adds the simulator's own flags and returns the function that
	// builds it from them.
	flags func(fs *flag.FlagSet, common *simFlags) func() (demoSim, map[string][]byte, error)
	// account is the account block for certd, given the address and the
	// folder of the files.
	account func(addr, dir string) string
}

func simKinds() map[string]simKind {
	return map[string]simKind{
		"atlas": {listen: "127.0.0.1:8443", dir: "atlas-sim", usage: "[-rotate N] [-rate R]",
			flags: func(fs *flag.FlagSet, c *simFlags) func() (demoSim, map[string][]byte, error) {
				rotate := fs.Int("rotate", 0, "rotate the issuing CA every N issuances")
				rate := fs.Float64("rate", 0, "requests per second before 429 (0: no limit)")
				return func() (demoSim, map[string][]byte, error) {
					sim, err := atlassim.New(atlassim.Options{APIKey: "sim-api-key", APISecret: "sim-api-secret", DNSServer: c.dns, HTTPAddr: c.http,
						RotateEvery: *rotate, IssueDelay: c.delay, RateLimit: *rate})
					if err != nil {
						return nil, nil, err
					}
					certPEM, keyPEM, err := sim.ClientCredentials("certd-sim-client")
					return sim, map[string][]byte{"client.pem": certPEM, "client.key": keyPEM, "api-key": []byte("sim-api-key\n"),
						"api-secret": []byte("sim-api-secret\n")}, err
				}
			},
			account: func(addr, dir string) string {
				return fmt.Sprintf(`  atlas-sim:
    type: globalsign-atlas
    url: https://%[1]s/v2
    api_key: file:%[2]s/api-key
    api_secret: file:%[2]s/api-secret
    client_cert: %[2]s/client.pem
    client_key: file:%[2]s/client.key
    ca: %[2]s/api-ca.pem
`, addr, dir)
			}},
		"sectigo": {listen: "127.0.0.1:8444", dir: "sectigo-sim", usage: "[-call-limit N]",
			flags: func(fs *flag.FlagSet, c *simFlags) func() (demoSim, map[string][]byte, error) {
				limit := fs.Int("call-limit", 0, "calls per minute before -42 (0: no limit)")
				return func() (demoSim, map[string][]byte, error) {
					sim, err := sectigosim.New(sectigosim.Options{LoginName: "sim-login", LoginPassword: "sim-password", DNSServer: c.dns, HTTPAddr: c.http,
						IssueDelay: c.delay, CallLimit: *limit})
					return sim, map[string][]byte{"login-password": []byte("sim-password\n")}, err
				}
			},
			account: func(addr, dir string) string {
				return fmt.Sprintf(`  sectigo-sim:
    type: sectigo
    url: https://%[1]s
    login_name: sim-login
    login_password: file:%[2]s/login-password
    product: 488
    ca: %[2]s/api-ca.pem
    roots: %[2]s/root.pem
    poll_interval: 5s
`, addr, dir)
			}},
		"reseller": {listen: "127.0.0.1:8445", dir: "reseller-sim",
			flags: func(fs *flag.FlagSet, c *simFlags) func() (demoSim, map[string][]byte, error) {
				return func() (demoSim, map[string][]byte, error) {
					sim, err := resellersim.New(resellersim.Options{Username: "sim-user", APIKey: "sim-api-key", DNSServer: c.dns, HTTPAddr: c.http, IssueDelay: c.delay})
					return sim, map[string][]byte{"api-key": []byte("sim-api-key\n")}, err
				}
			},
			account: func(addr, dir string) string {
				return fmt.Sprintf(`  reseller-sim:    # plans: %[3]s DigiCert DV, %[4]s Sectigo DV
    type: reseller
    url: https://%[1]s
    username: sim-user
    api_key: file:%[2]s/api-key
    plan: %[3]s
    ca: %[2]s/api-ca.pem
    roots: %[2]s/root.pem
    poll_interval: 5s
`, addr, dir, resellersim.DigiCertDVPlan, resellersim.SectigoDVPlan)
			}},
		"markmonitor": {listen: "127.0.0.1:8446", dir: "markmonitor-sim", usage: "[-rate N]",
			flags: func(fs *flag.FlagSet, c *simFlags) func() (demoSim, map[string][]byte, error) {
				rate := fs.Int("rate", 100, "requests per minute before 429")
				return func() (demoSim, map[string][]byte, error) {
					sim, err := mmsim.New(mmsim.Options{APIKey: "sim-api-key", Username: "sim-user", Password: "sim-password", DNSServer: c.dns, HTTPAddr: c.http,
						IssueDelay: c.delay, RateLimit: *rate})
					return sim, map[string][]byte{"api-key": []byte("sim-api-key\n"), "password": []byte("sim-password\n")}, err
				}
			},
			account: func(addr, dir string) string {
				return fmt.Sprintf(`  markmonitor-sim:
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
`, addr, dir)
			}},
	}
}

// cmdSim runs a CA simulator standalone, for trying configurations and
// for other tools' tests: `certd sim atlas -listen 127.0.0.1:8443 -dir D`.
func cmdSim(args []string, stdout, stderr io.Writer) int {
	kinds := simKinds()
	var k simKind
	ok := len(args) > 0
	if ok {
		k, ok = kinds[args[0]]
	}
	if !ok {
		names := make([]string, 0, len(kinds))
		for n := range kinds {
			names = append(names, n)
		}
		sort.Strings(names)
		for i, n := range names {
			prefix := "usage:"
			if i > 0 {
				prefix = "      "
			}
			fmt.Fprintf(stderr, "%s certd sim %s [-listen ADDR] [-dir D] [-dns ADDR] [-http ADDR] [-issue-delay D] %s\n", prefix, n, kinds[n].usage)
		}
		return exitUsage
	}
	name := args[0]
	fs := newFlags("sim "+name, stderr)
	listen := fs.String("listen", k.listen, "address of the API (TLS)")
	dir := fs.String("dir", k.dir, "folder for the client's credentials, the API's CA and the root")
	var c simFlags
	fs.StringVar(&c.dns, "dns", "", "DNS server (host:port) the DNS checks query")
	fs.StringVar(&c.http, "http", "", "where HTTP checks connect (host:port; default: the name proved, port 80)")
	fs.DurationVar(&c.delay, "issue-delay", 0, "how long an accepted order takes to issue")
	build := k.flags(fs, &c)
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "certd sim: %v\n", err)
		return exitFailure
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fail(err)
	}
	sim, files, err := build()
	if err != nil {
		return fail(err)
	}
	files["api-ca.pem"], files["root.pem"] = sim.APICAPEM(), sim.RootPEM()
	abs, _ := filepath.Abs(*dir)
	for file, data := range files {
		if err := writePrivate(filepath.Join(abs, file), data); err != nil {
			return fail(err)
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "%s simulator on https://%s\nAn account block for certd:\n\naccounts:\n%s\nIssued certificates chain to %s/root.pem. Ctrl-C stops.\n",
		strings.ToUpper(name[:1])+name[1:], ln.Addr(), k.account(ln.Addr().String(), abs), abs)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if err := sim.Serve(ctx, ln); err != nil {
		return fail(err)
	}
	return exitOK
}
