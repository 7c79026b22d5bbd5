package config

import (
	"fmt"
	"net"
	"net/mail"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// checkSettings validates and defaults the daemon-wide settings of the
// main file.
func (l *loader) checkSettings(file string) {
	c := l.cfg
	if c.Schedule == "" {
		c.Schedule = DefaultSchedule
	} else if _, err := cron.ParseStandard(c.Schedule); err != nil {
		l.errAt(file, "schedule", "invalid cron spec %q: %v", c.Schedule, err)
	}
	switch {
	case c.Workers == 0:
		c.Workers = DefaultWorkers
	case c.Workers < 1 || c.Workers > maxWorkers:
		l.errAt(file, "workers", "must be between 1 and %d, got %d", maxWorkers, c.Workers)
	}

	switch {
	case c.Store.Postgres.IsSet() && c.Store.SQLite != "":
		l.errAt(file, "store", "set either sqlite or postgres, not both")
	case c.Store.Postgres.IsSet():
		l.fleet(file, c)
	case c.Fleet != (Fleet{}):
		l.errAt(file, "fleet", "fleet settings need store.postgres (fleet mode shares one PostgreSQL between hosts)")
	case c.Store.SQLite == "":
		c.Store.SQLite = DefaultSQLitePath
	case !filepath.IsAbs(c.Store.SQLite):
		c.Store.SQLite = filepath.Join(filepath.Dir(file), c.Store.SQLite)
	}

	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	} else if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		l.errAt(file, "log.level", "unknown level %q (one of: debug, info, warn, error)", c.Log.Level)
	}
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	} else if c.Log.Format != "json" && c.Log.Format != "console" {
		l.errAt(file, "log.format", "unknown format %q (json or console)", c.Log.Format)
	}

	l.checkNotify(file)

	if c.PendingGrace == 0 {
		c.PendingGrace = DefaultPendingGrace
	}

	if c.Metrics.Listen != "" {
		if err := checkHostPort(c.Metrics.Listen); err != nil {
			l.errAt(file, "metrics.listen", "%v", err)
		}
	}

}

// checkDefaults validates the defaults section once all files are read, so
// that it may name providers defined in conf.d.
func (l *loader) checkDefaults() {
	file := l.mainFile
	if d := l.defaults; d != nil {
		if d.KeyType != "" && !slices.Contains(KeyTypes, d.KeyType) {
			l.errAt(file, "defaults.key_type", "unknown key type %q (one of: %s)", d.KeyType, strings.Join(KeyTypes, ", "))
		}
		if d.DCV != nil {
			l.checkDCV(file, "defaults.dcv", d.DCV)
		}
		if d.Renew != nil {
			l.checkRenew(file, "defaults.renew", d.Renew)
		}
		if d.Deploy != nil {
			l.checkDeploy(d.Deploy, under(file, "defaults.deploy"))
		}
		for i, r := range d.PostHook {
			if len(r) == 0 {
				l.errAt(file, fmt.Sprintf("defaults.post_hook[%d]", i), "a command needs at least the program to run")
			}
		}
		l.cfg.PostHook = d.PostHook
	}
}

// checkNotify validates and defaults the notify section.
func (l *loader) checkNotify(file string) {
	n := &l.cfg.Notify
	switch {
	case n.AfterFailures < 0:
		l.errAt(file, "notify.after_failures", "must be 1 or more")
	case n.AfterFailures == 0:
		n.AfterFailures = 3
	}
	if n.ExpiryWarning == 0 {
		n.ExpiryWarning = Duration(14 * 24 * time.Hour)
	}
	if n.MinInterval == 0 {
		n.MinInterval = Duration(6 * time.Hour)
	}
	switch {
	case n.MaxPerHour < 0:
		l.errAt(file, "notify.max_per_hour", "must be 1 or more")
	case n.MaxPerHour == 0:
		n.MaxPerHour = 20
	}
	if w := n.Webhook; w != nil && !w.URL.IsSet() {
		l.errAt(file, "notify.webhook.url", "url is required (a secret reference: webhook URLs carry tokens)")
	}
	if e := n.Email; e != nil {
		if err := checkHostPort(e.SMTP); err != nil {
			l.errAt(file, "notify.email.smtp", "%v", err)
		}
		if a, err := mail.ParseAddress(e.From); err != nil || a.Address != e.From {
			l.errAt(file, "notify.email.from", "invalid address %q", e.From)
		}
		if len(e.To) == 0 {
			l.errAt(file, "notify.email.to", "at least one recipient is required")
		}
		for i, to := range e.To {
			if a, err := mail.ParseAddress(to); err != nil || a.Address != to {
				l.errAt(file, fmt.Sprintf("notify.email.to[%d]", i), "invalid address %q", to)
			}
		}
		if e.Insecure && e.Username != "" {
			l.errAt(file, "notify.email.insecure", "a relay without TLS cannot be given a password")
		}
		if e.Username != "" && !e.Password.IsSet() {
			l.errAt(file, "notify.email.password", "password is required with a username")
		}
	}
}

// checkDCVSettings validates the dcv section once every provider is known.
func (l *loader) checkDCVSettings() {
	file, d := l.mainFile, &l.cfg.DCV
	for i, r := range d.Resolvers {
		if err := checkHostPort(r); err != nil {
			l.errAt(file, fmt.Sprintf("dcv.resolvers[%d]", i), "%v", err)
		}
	}
	for name, servers := range d.CheckServers {
		p := joinPath("dcv.check_servers", name)
		if _, ok := l.blocks[1][name]; !ok {
			l.errAt(file, p, "unknown DNS provider %q (defined: %s)", name, strings.Join(sortedKeys(l.blocks[1]), ", "))
		}
		for i, s := range servers {
			if err := checkHostPort(s); err != nil {
				l.errAt(file, fmt.Sprintf("%s[%d]", p, i), "%v", err)
			}
		}
	}
	if d.HTTPCheckAddress != "" {
		if err := checkHostPort(d.HTTPCheckAddress); err != nil {
			l.errAt(file, "dcv.http_check_address", "%v", err)
		}
	}
}

var certName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)

// checkCertificates validates every certificate, applies defaults and
// normalises names. It runs after all files are read, so references across
// files resolve.
func (l *loader) checkCertificates() {
	byName := map[string]*Certificate{}
	defaults := l.defaults
	if defaults == nil {
		defaults = &Defaults{}
	}
	for _, c := range l.cfg.Certificates {
		file, base := c.Pos.File, c.Pos.Path
		at := func(sub string) string { return base + sub }

		switch {
		case c.Name == "":
			l.errAt(file, at(".name"), "name is required")
		case len(c.Name) > maxCertificateName || !certName.MatchString(c.Name):
			l.errAt(file, at(".name"), "invalid name %q: use letters, digits, '.', '_' and '-' (it names a directory), at most %d characters", c.Name, maxCertificateName)
		default:
			if prev, ok := byName[c.Name]; ok {
				l.errAt(file, at(".name"), "duplicate certificate name %q (first defined at %s)", c.Name, prev.Pos)
			}
			byName[c.Name] = c
		}

		if len(c.Domains) == 0 {
			l.errAt(file, at(".domains"), "at least one domain is required")
		}
		if len(c.Domains) > maxDomainsPerCert {
			l.errAt(file, at(".domains"), "%d domains; at most %d fit in one certificate", len(c.Domains), maxDomainsPerCert)
		}
		seen := map[string]int{}
		for i, d := range c.Domains {
			p := at(fmt.Sprintf(".domains[%d]", i))
			n, _, err := NormalizeIdentifier(d)
			if err != nil {
				l.errAt(file, p, "%v", err)
				continue
			}
			if j, dup := seen[n]; dup {
				l.errAt(file, p, "%s is listed twice (also domains[%d])", n, j)
			}
			seen[n] = i
			c.Domains[i] = n
		}

		if c.Account == "" {
			c.Account = defaults.Account
		}
		if c.Account == "" {
			l.errAt(file, at(".account"), "account is required (here or in defaults)")
		} else if _, ok := l.blocks[0][c.Account]; !ok {
			l.errAt(file, at(".account"), "unknown account %q (defined: %s)", c.Account, strings.Join(sortedKeys(l.blocks[0]), ", "))
		}

		if c.KeyType != "" && !slices.Contains(KeyTypes, c.KeyType) {
			l.errAt(file, at(".key_type"), "unknown key type %q (one of: %s)", c.KeyType, strings.Join(KeyTypes, ", "))
		}
		if c.KeyType == "" {
			c.KeyType = defaults.KeyType
		}
		if c.KeyType == "" {
			c.KeyType = DefaultKeyType
		}

		if c.DCV != nil {
			l.checkDCV(file, at(".dcv"), c.DCV)
		} else {
			c.DCV = defaults.DCV
		}
		normDCV := map[string]*DCV{}
		for key, d := range c.DomainDCV {
			p := joinPath(at(".domain_dcv"), key)
			n, _, err := NormalizeIdentifier(key)
			if err != nil {
				l.errAt(file, p, "%v", err)
				continue
			}
			if _, ok := seen[n]; !ok {
				l.errAt(file, p, "%s is not one of this certificate's domains", n)
				continue
			}
			if d == nil {
				l.errAt(file, p, "a DCV method is required")
				continue
			}
			l.checkDCV(file, p, d)
			normDCV[n] = d
		}
		c.DomainDCV = normDCV
		for i, d := range c.Domains {
			m := c.DCVFor(d)
			p := at(fmt.Sprintf(".domains[%d]", i))
			if m == nil {
				l.errAt(file, p, "no DCV method for %s: set dcv (here or in defaults) or domain_dcv", d)
				continue
			}
			if m.Method == MethodHTTP && strings.HasPrefix(d, "*.") {
				l.errAt(file, p, "wildcard %s cannot be validated over HTTP; CAs require dns or dns-delegated (or email) for wildcards", d)
			}
			if b, ok := l.blocks[0][c.Account]; ok && b.Type == "acme" && m.Method == MethodEmail {
				l.errAt(file, p, "%s: ACME proves domains by dns, dns-delegated or http, not email (account %s)", d, c.Account)
			}
			if IsIPAddress(d) {
				l.checkIPIdentifier(file, p, d, m, c.Account)
			}
		}

		switch b, ok := l.blocks[0][c.Account]; {
		case c.Profile != "" && ok && b.Type != "acme":
			l.errAt(file, at(".profile"), "profiles are an ACME feature; account %s is %s", c.Account, b.Type)
		case c.Profile != "" && !profileNameRE.MatchString(c.Profile):
			l.errAt(file, at(".profile"), "invalid profile name %q (letters, digits, '.', '_', '-')", c.Profile)
		case c.Profile == "" && c.ProfileRequired != nil:
			l.errAt(file, at(".profile_required"), "profile_required without a profile")
		}

		if a := c.Adopt; a != nil {
			for _, f := range []struct {
				key  string
				path *string
				need bool
			}{{"cert", &a.Cert, true}, {"chain", &a.Chain, false}, {"key", &a.Key, true}} {
				switch {
				case *f.path == "" && f.need:
					l.errAt(file, at(".adopt."+f.key), "%s is required (a PEM file)", f.key)
				case *f.path != "" && !filepath.IsAbs(*f.path):
					*f.path = filepath.Join(filepath.Dir(file), *f.path)
				}
			}
		}

		if c.Renew != nil {
			l.checkRenew(file, at(".renew"), c.Renew)
		} else if defaults.Renew != nil {
			c.Renew = defaults.Renew
		} else {
			c.Renew = &Renew{RemainingFraction: DefaultRemaining}
		}

		switch {
		case c.Deploy != nil:
			// Merged with the defaults key by key: a certificate that sets
			// only its directory keeps the default check and reload hooks.
			c.Deploy = l.mergeDeploy(file, at(".deploy"), c.Deploy, defaults.Deploy)
			l.checkDeploy(c.Deploy, l.deployWhere(file, at(".deploy"), defaults.Deploy != nil))
		case defaults.Deploy != nil:
			d := *defaults.Deploy
			c.Deploy = &d
		}
		if c.Deploy == nil {
			l.errAt(file, at(".deploy"), "deploy is required (here or in defaults): certd needs to know where to put the certificate")
		} else if c.Deploy.Verify != nil && c.Deploy.Verify.ServerName == "" {
			v := *c.Deploy.Verify
			for _, d := range c.Domains {
				if !strings.HasPrefix(d, "*.") {
					v.ServerName = d
					break
				}
			}
			c.Deploy.Verify = &v
		}
	}
}

// checkIPIdentifier: an IP address (RFC 8738) is certified only through an
// ACME account (the CA must also offer it: Let's Encrypt asks for the
// shortlived profile) and proved only over http, fetched from the address
// itself; there is no DNS name to publish a record under.
func (l *loader) checkIPIdentifier(file, path, ip string, m *DCV, account string) {
	if b, ok := l.blocks[0][account]; ok && b.Type != "acme" && b.Type != "sectigo" {
		l.errAt(file, path, "%q is an IP address; only ACME and Sectigo accounts can certify IP addresses (account %s is %s)", ip, account, b.Type)
		return
	}
	if m.Method != MethodHTTP {
		l.errAt(file, path, "%q is an IP address: it can be proved only by method http (ACME http-01, RFC 8738; Sectigo's HTTP CSR-hash file), not %s", ip, m.Method)
	}
}

// profileNameRE is what an ACME profile name may be.
var profileNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (l *loader) checkDCV(file, path string, d *DCV) {
	unused := func(key, val string) {
		if val != "" {
			l.errAt(file, path+"."+key, "%s is not used with method %s", key, d.Method)
		}
	}
	dnsRef := func() {
		if d.Provider == "" {
			l.errAt(file, path+".provider", "method %s needs a DNS provider", d.Method)
		} else if _, ok := l.blocks[1][d.Provider]; !ok {
			l.errAt(file, path+".provider", "unknown DNS provider %q (defined: %s)", d.Provider, strings.Join(sortedKeys(l.blocks[1]), ", "))
		}
	}
	switch d.Method {
	case MethodDNS:
		dnsRef()
		unused("delegate", d.Delegate)
		unused("target", d.Target)
		unused("email", d.Email)
	case methodDNSCNAMEOld:
		l.errAt(file, path+".method", "method dns-cname was renamed dns-delegated (a TXT record published in the zone a CNAME delegates to); write method: dns-delegated")
	case MethodDNSDelegated:
		dnsRef()
		if d.Delegate == "" {
			l.errAt(file, path+".delegate", "method dns-delegated needs the delegated name the CNAME points to")
		} else if n, err := NormalizeDNSName(d.Delegate); err != nil {
			l.errAt(file, path+".delegate", "%v", err)
		} else {
			d.Delegate = n
		}
		unused("target", d.Target)
		unused("email", d.Email)
	case MethodHTTP:
		if d.Target == "" {
			l.errAt(file, path+".target", "method http needs an HTTP target")
		} else if _, ok := l.blocks[2][d.Target]; !ok {
			l.errAt(file, path+".target", "unknown HTTP target %q (defined: %s)", d.Target, strings.Join(sortedKeys(l.blocks[2]), ", "))
		}
		unused("provider", d.Provider)
		unused("delegate", d.Delegate)
		unused("email", d.Email)
	case MethodEmail:
		if a, err := mail.ParseAddress(d.Email); err != nil || a.Address != d.Email {
			l.errAt(file, path+".email", "method email needs a plain address such as admin@example.com, got %q", d.Email)
		}
		unused("provider", d.Provider)
		unused("delegate", d.Delegate)
		unused("target", d.Target)
	case "":
		l.errAt(file, path+".method", "method is required (dns, dns-delegated, http or email)")
	default:
		l.errAt(file, path+".method", "unknown method %q (dns, dns-delegated, http or email)", d.Method)
	}
}

func (l *loader) checkRenew(file, path string, r *Renew) {
	switch {
	case r.RemainingFraction != 0 && r.Before != 0:
		l.errAt(file, path, "set remaining_fraction or before, not both")
	case r.RemainingFraction == 0 && r.Before == 0:
		r.RemainingFraction = DefaultRemaining
	case r.Before == 0 && (r.RemainingFraction <= emergencyFraction || r.RemainingFraction >= 1):
		l.errAt(file, path+".remaining_fraction", "%v is out of range: renew with between 1/20 and all of the lifetime remaining (default 1/3 ≈ 0.333)", r.RemainingFraction)
	}
}

// under places every key of a block at path in file.
func under(file, path string) func(key string) (string, string) {
	return func(key string) (string, string) { return file, path + "." + key }
}

// deployWhere places a key of a certificate's merged deploy block: where
// the certificate wrote it, else where defaults.deploy did, else (a key
// written nowhere) at the certificate's block.
func (l *loader) deployWhere(file, path string, hasDefaults bool) func(key string) (string, string) {
	return func(key string) (string, string) {
		if _, ok := l.pos[file][path+"."+key]; ok || !hasDefaults {
			return file, path + "." + key
		}
		if _, ok := l.pos[l.mainFile]["defaults.deploy."+key]; ok {
			return l.mainFile, "defaults.deploy." + key
		}
		return file, path + "." + key
	}
}

// mergeDeploy is a certificate's deploy block over the defaults': every
// key the certificate wrote replaces the default's; the others are
// inherited (hooks included, so a certificate that names only its own
// directory is still reloaded as the defaults say).
func (l *loader) mergeDeploy(file, path string, own, def *Deploy) *Deploy {
	if def == nil {
		return own
	}
	merged := *def
	mv, ov := reflect.ValueOf(&merged).Elem(), reflect.ValueOf(own).Elem()
	fields, _ := yamlFields(mv.Type())
	for name, i := range fields {
		if _, written := l.pos[file][path+"."+name]; written {
			mv.Field(i).Set(ov.Field(i))
		}
	}
	return &merged
}

// checkDeploy validates a deploy block and fills its defaults; where
// says where each key is reported.
func (l *loader) checkDeploy(d *Deploy, where func(key string) (string, string)) {
	errAt := func(key, format string, args ...any) {
		file, path := where(key)
		l.errAt(file, path, format, args...)
	}
	switch {
	case d.Dir == "":
		errAt("dir", "dir is required")
	case !filepath.IsAbs(d.Dir):
		errAt("dir", "dir must be an absolute path, got %q", d.Dir)
	}
	if d.Owner != "" {
		if _, err := lookupUser(d.Owner); err != nil {
			errAt("owner", "%v", err)
		}
	}
	if d.Group != "" {
		if _, err := lookupGroup(d.Group); err != nil {
			errAt("group", "%v", err)
		}
	}
	if d.CertMode == 0 {
		d.CertMode = DefaultCertMode
	}
	if d.KeyMode == 0 {
		d.KeyMode = DefaultKeyMode
	}
	switch {
	case d.KeyMode&0o007 != 0:
		errAt("key_mode", "private keys must not be readable by others (mode %04o); use 0600, or 0640 with a group", d.KeyMode)
	case d.KeyMode&0o070 != 0 && d.Group == "":
		errAt("key_mode", "mode %04o gives a group access to the private key, but no group is set", d.KeyMode)
	case d.KeyMode&0o400 == 0:
		errAt("key_mode", "mode %04o leaves the private key unreadable by its owner", d.KeyMode)
	}
	if d.Keep < 0 {
		errAt("keep", "keep must be 1 or more, got %d", d.Keep)
	} else if d.Keep == 0 {
		d.Keep = DefaultKeep
	}
	for i, r := range d.Reload {
		if len(r) == 0 {
			file, path := where("reload")
			l.errAt(file, fmt.Sprintf("%s[%d]", path, i), "a command needs at least the program to run")
		}
	}
	if d.HookTimeout == 0 {
		d.HookTimeout = DefaultHookTimeout
	}
	if v := d.Verify; v != nil {
		if err := checkHostPort(v.Address); err != nil {
			errAt("verify.address", "%v", err)
		}
		if v.ServerName != "" {
			if n, err := NormalizeDomain(v.ServerName); err != nil || strings.HasPrefix(n, "*.") {
				errAt("verify.server_name", "invalid server name %q", v.ServerName)
			} else {
				v.ServerName = n
			}
		}
		if v.Timeout == 0 {
			v.Timeout = DefaultVerifyWait
		}
	}
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("invalid address %q: expected host:port", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("invalid address %q: port must be 1-65535", s)
	}
	_ = host // an empty host means all interfaces, which is allowed
	return nil
}

func lookupUser(name string) (*user.User, error) {
	if _, err := strconv.Atoi(name); err == nil {
		return user.LookupId(name)
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("unknown user %q", name)
	}
	return u, nil
}

func lookupGroup(name string) (*user.Group, error) {
	if _, err := strconv.Atoi(name); err == nil {
		return user.LookupGroupId(name)
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return nil, fmt.Errorf("unknown group %q", name)
	}
	return g, nil
}

// Fleet defaults.
const (
	DefaultFleetLease        = 2 * time.Minute
	DefaultFleetSyncInterval = 30 * time.Second
	DefaultFleetKeyDir       = "/var/lib/certd/keys"
)

// fleet checks the fleet block of a configuration with store.postgres.
func (l *loader) fleet(file string, c *Config) {
	f := &c.Fleet
	if f.Host == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			l.errAt(file, "fleet.host", "is required: the hostname cannot be read (%v)", err)
		}
		f.Host = h
	} else if strings.ContainsAny(f.Host, " \t\n/") || len(f.Host) > 253 {
		l.errAt(file, "fleet.host", "%q is not a usable host name", f.Host)
	}
	if !f.EncryptionKey.IsSet() {
		l.errAt(file, "fleet.encryption_key", "is required with store.postgres: private keys are encrypted in the shared database with it (file:, env: or credential:; certd fleet keygen prints a key)")
	}
	switch {
	case f.Lease == 0:
		f.Lease = Duration(DefaultFleetLease)
	case f.Lease.D() < 10*time.Second || f.Lease.D() > time.Hour:
		l.errAt(file, "fleet.lease", "must be between 10s and 1h")
	}
	switch {
	case f.KeyDir == "":
		f.KeyDir = DefaultFleetKeyDir
	case !filepath.IsAbs(f.KeyDir):
		f.KeyDir = filepath.Join(filepath.Dir(file), f.KeyDir)
	}
	switch {
	case f.SyncInterval == 0:
		f.SyncInterval = Duration(DefaultFleetSyncInterval)
	case f.SyncInterval.D() < time.Second || f.SyncInterval.D() > 24*time.Hour:
		l.errAt(file, "fleet.sync_interval", "must be between 1s and 24h")
	}
}
