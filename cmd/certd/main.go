// Command certd keeps TLS certificates valid with no person in the loop.
// See README.md for operators; `certd help` for the commands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// Exit codes, documented in README.md and `certd help`.
const (
	exitOK      = 0 // success; for status: every certificate healthy
	exitFailure = 1 // a runtime failure; for status: a certificate or the daemon needs attention
	exitUsage   = 2 // bad command line or invalid configuration
	exitStore   = 3 // the store is in use by another daemon, or newer than this binary
)

// DefaultConfig is where certd looks for its configuration.
const DefaultConfig = "/etc/certd/certd.yaml"

const usage = `certd keeps TLS certificates valid with no person in the loop.

Usage:
  certd run          [-config FILE] [-once]   run the daemon (systemd: Type=notify); -once works
                                              what is due, then exits (0: every certificate valid)
  certd check-config [-config FILE] [-skip-credentials] [FILE]
                                              validate a configuration as a start reads it: every
                                              error, every secret and file it names
  certd status       [-config FILE] [-json] [-no-daemon] [NAME]
                                              every configured certificate, the claims and the
                                              daemon; exit 1 when anything needs attention
  certd events       [-config FILE] [-since D] [-n N] [-json] [-f] [NAME]
                                              the event log; -f: follow it as it grows
  certd renew        [-config FILE] [-force] [-dry-run] NAME
                                              renew one certificate now (-force: a new order);
                                              -dry-run: everything short of the order
  certd rollback     [-config FILE] NAME      switch back to the previous deployed version (held
                                              until the next issuance)
  certd hooks test   [-config FILE] NAME      run NAME's check, reload and verify against the
                                              version deployed now; nothing is renewed
  certd import       certbot|lego [-config FILE] [-dry-run] [DIR]
                                              adopt certificates certbot (/etc/letsencrypt) or
                                              lego (./.lego) issued, for configured certificates
  certd claims       list|verify|reassert|delete [-config FILE] [-account A] [-json] [DOMAIN]
                                              account-level domain claims (Atlas)
  certd revoke       [-config FILE] [-reason R] NAME   revoke the deployed certificate at its CA;
                                              a new one is due at once
  certd delete       [-config FILE] NAME      remove the deployed files of a certificate no longer
                                              in the configuration (its history is kept)
  certd orders       list|found|absent|abandon [-config FILE] [NAME [REF]]
                                              open orders, and an operator's word on one certd
                                              cannot settle alone
  certd fleet        keygen                   print a new fleet.encryption_key for a fleet's hosts
  certd store        migrate [-config FILE] -from SQLITE
                                              copy a host's SQLite store into the fleet's
                                              PostgreSQL (store.postgres); nothing is bought again
  certd demo         [-dir D] [-once]         the whole lifecycle on loopback: the four CA
                                              simulators, DNS server, HTTP responder; nothing to install;
                                              run it again in the same folder: its state is kept
  certd sim          atlas|sectigo|reseller|markmonitor [-listen ADDR] [-dir D]
                                              run a CA simulator standalone
  certd completion   bash|zsh|fish            a shell completion script
  certd man                                   the manual page, certd(1), in roff
  certd version                               print the version

Flags may follow the arguments (certd renew www -dry-run); -h on any command
prints its flags without reading the configuration. FILE defaults to
$` + configEnv + `, or else ` + DefaultConfig + `.

Exit codes:
  0  success (status: every certificate is healthy and a daemon works the store)
  1  runtime failure (status: a certificate is failing, needs an operator, is inside its
     emergency window, is not issued within pending_grace, or is retired with its files
     still deployed; or no daemon runs, or it completes no pass)
  2  bad command line or invalid configuration
  3  the store is in use by another certd, or was written by a newer one
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	// Commands with subcommands print their own usage for -h, without a
	// configuration.
	if len(rest) > 0 && isHelp(rest[0]) {
		if u, ok := map[string]string{"claims": claimsUsage, "orders": ordersUsage, "hooks": hooksUsage, "import": importUsage, "completion": completionUsage,
			"fleet": fleetUsage, "store": storeUsage}[cmd]; ok {
			fmt.Fprint(stdout, u)
			return exitOK
		}
		if cmd == "sim" {
			cmdSim(nil, stdout, stdout)
			return exitOK
		}
	}
	switch cmd {
	case "run":
		return cmdRun(rest, stderr)
	case "check-config":
		return cmdCheckConfig(rest, stdout, stderr)
	case "status":
		return cmdStatus(rest, stdout, stderr)
	case "demo":
		return cmdDemo(rest, stdout, stderr)
	case "revoke":
		return cmdRevoke(rest, stdout, stderr)
	case "orders":
		return cmdOrders(rest, stdout, stderr)
	case "claims":
		return cmdClaims(rest, stdout, stderr)
	case "sim":
		return cmdSim(rest, stdout, stderr)
	case "renew":
		return cmdRenew(rest, stdout, stderr)
	case "events":
		return cmdEvents(rest, stdout, stderr)
	case "rollback":
		return cmdRollback(rest, stdout, stderr)
	case "hooks":
		return cmdHooks(rest, stdout, stderr)
	case "import":
		return cmdImport(rest, stdout, stderr)
	case "completion":
		return cmdCompletion(rest, stdout, stderr)
	case "man":
		return cmdMan(rest, stdout, stderr)
	case "delete":
		return cmdDelete(rest, stdout, stderr)
	case "fleet":
		return cmdFleet(rest, stdout, stderr)
	case "store":
		return cmdStore(rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "certd: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

// newFlags returns a flag set that reports errors to stderr and does not
// exit the process.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("certd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// configEnv names the variable that replaces DefaultConfig as the default
// of every command's -config (and check-config's FILE).
const configEnv = "CERTD_CONFIG"

// defaultConfig is DefaultConfig, or $CERTD_CONFIG when it is set.
func defaultConfig() string {
	if p := os.Getenv(configEnv); p != "" {
		return p
	}
	return DefaultConfig
}

// parseFlags parses args and maps flag errors to an exit code (0 for -h).
// Flags may come before or after the positional arguments
// (`certd renew www -dry-run`); everything after "--" is positional. A
// -config flag left unset takes $CERTD_CONFIG when that is set. Nothing
// here reads the configuration, so -h works without one.
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK, false
			}
			return exitUsage, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	// Leave exactly the positional arguments in fs.Args().
	_ = fs.Parse(append([]string{"--"}, pos...))
	if fs.Lookup("config") != nil && os.Getenv(configEnv) != "" {
		set := false
		fs.Visit(func(f *flag.Flag) { set = set || f.Name == "config" })
		if !set {
			_ = fs.Set("config", os.Getenv(configEnv))
		}
	}
	return 0, true
}
