package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/config"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/providers"
)

// cmdCheckConfig validates a configuration the way `certd run` reads it:
// the file itself, then every secret it references and every file a CA
// account or provider reads, and every account, provider and notification
// channel built as the daemon builds them (nothing is sent). A
// configuration that passes starts.
func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check-config", stderr)
	cfgPath := fs.String("config", DefaultConfig, "configuration file (FILE, when given, wins)")
	skipCreds := fs.Bool("skip-credentials", false, "do not read credential: secrets (systemd credentials exist only inside the unit); everything else is checked")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	path := *cfgPath
	switch fs.NArg() {
	case 0:
	case 1:
		path = fs.Arg(0)
	default:
		fmt.Fprintln(stderr, "certd check-config: expected at most one file")
		return exitUsage
	}
	cfg, err := loadConfig(path)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitUsage
	}
	problems, skipped := checkStartable(cfg, *skipCreds)
	for _, p := range problems {
		fmt.Fprintln(stderr, p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "%s: %d problems: certd would not start with this configuration\n", path, len(problems))
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s: ok (%d files, %d certificates, %d accounts, %d DNS providers, %d HTTP targets)\n",
		path, len(cfg.Files), len(cfg.Certificates), len(cfg.Accounts), len(cfg.DNS), len(cfg.HTTP))
	for _, s := range skipped {
		fmt.Fprintf(stdout, "%s: not checked (-skip-credentials): %s\n", path, s)
	}
	return exitOK
}

// checkStartable does what a start does with a loaded configuration,
// without sending anything: it resolves every secret, reads every file a
// plug-in names, and builds every account, DNS provider, HTTP target and
// notification channel. With skipCreds, credential: secrets are not read,
// and what holds one is not built (it is listed in skipped).
func checkStartable(cfg *config.Config, skipCreds bool) (problems, skipped []string) {
	type part struct {
		kind   string
		plugin *config.Plugin
	}
	var parts []part
	for _, group := range []struct {
		kind string
		m    map[string]*config.Plugin
	}{{"account", cfg.Accounts}, {"DNS provider", cfg.DNS}, {"HTTP target", cfg.HTTP}} {
		names := make([]string, 0, len(group.m))
		for n := range group.m {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			parts = append(parts, part{group.kind, group.m[n]})
		}
	}
	// secretsOK resolves v's secrets; false when one is missing or skipped.
	secretsOK := func(what string, v any) bool {
		ok := true
		for _, s := range config.Secrets(v) {
			if skipCreds && s.Scheme == "credential" {
				skipped = append(skipped, fmt.Sprintf("%s at %s (%s): read only under systemd; %s is not built", s, s.Pos(), s.Pos().Path, what))
				ok = false
				continue
			}
			if _, err := s.Resolve(); err != nil {
				problems = append(problems, err.Error())
				ok = false
			}
		}
		return ok
	}
	kinds, dnsTable, httpTable := caKinds(), providers.DNSTypes(), providers.HTTPTypes()
	for _, p := range parts {
		what := fmt.Sprintf("%s %s", p.kind, p.plugin.Name)
		filesOK := true
		if fn, ok := p.plugin.Settings.(config.FileNamer); ok {
			keys := make([]string, 0)
			for k := range fn.Files() {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if f := fn.Files()[k]; f != "" {
					if err := readable(f); err != nil {
						pos := p.plugin.KeyPos(k)
						problems = append(problems, fmt.Sprintf("%s: %s: %v", pos, pos.Path, err))
						filesOK = false
					}
				}
			}
		}
		if !secretsOK(what, p.plugin.Settings) || !filesOK {
			continue
		}
		var err error
		switch p.kind {
		case "account":
			if k := kinds[p.plugin.Type]; k.New != nil {
				_, err = k.New(ca.Env{Name: p.plugin.Name, Settings: p.plugin.Settings, Limits: p.plugin.Limits, Keys: accountKeys{}, Logger: zap.NewNop()})
			}
		case "DNS provider":
			_, err = dnsTable[p.plugin.Type].New(p.plugin.Settings)
		case "HTTP target":
			_, err = httpTable[p.plugin.Type].New(p.plugin.Settings)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s: %v", p.plugin.Pos, p.plugin.Pos.Path, err))
		}
	}
	if secretsOK("the notify section", cfg.Notify) {
		if _, err := notifySenders(cfg.Notify); err != nil {
			problems = append(problems, err.Error())
		}
	} else if e := cfg.Notify.Email; e != nil && e.CA != "" {
		if err := readable(e.CA); err != nil {
			problems = append(problems, fmt.Sprintf("notify.email.ca: %v", err))
		}
	}
	// A start needs resolvers: the configuration's, or the system's.
	if len(cfg.DCV.Resolvers) == 0 {
		if _, err := dcv.SystemResolvers(); err != nil {
			problems = append(problems, fmt.Sprintf("dcv.resolvers: %v; set dcv.resolvers", err))
		}
	}
	// Fleet mode: the DSN and the encryption key resolve, and the key is
	// one (the database itself is not asked: check-config sends nothing).
	if fleetMode(cfg) {
		secretsOK("store.postgres", cfg.Store)
		if secretsOK("fleet.encryption_key", cfg.Fleet) {
			if _, err := fleetSealer(cfg); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	// Files to adopt are checked as a start adopts them (a start that
	// cannot adopt them orders instead: paid, on a commercial CA).
	for _, c := range cfg.Certificates {
		if c.Adopt == nil {
			continue
		}
		if _, err := adoptFiles(c, time.Now()); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s.adopt: %v", c.Pos, c.Pos.Path, err))
		}
	}
	return problems, skipped
}

// readable checks that path can be opened for reading.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}
