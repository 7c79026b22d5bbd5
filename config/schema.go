package config

// The schema of certd's configuration file. Field comments are the
// reference for operators; README.md and config.example.yaml repeat them.

// Defaults applied when a key is not written.
const (
	DefaultSchedule    = "*/5 * * * *"
	DefaultWorkers     = 8
	maxWorkers         = 1024
	DefaultSQLitePath  = "/var/lib/certd/certd.db"
	DefaultLogLevel    = "info"
	DefaultLogFormat   = "json"
	DefaultKeyType     = "ecdsa-p256"
	DefaultRemaining   = 1.0 / 3.0
	DefaultKeep        = 3
	DefaultHookTimeout = Duration(60e9)  // 60s
	DefaultVerifyWait  = Duration(30e9)  // 30s
	DefaultOrderWait   = Duration(30e9)  // 30s
	DefaultCertMode    = FileMode(0o644) //
	DefaultKeyMode     = FileMode(0o600) //
	DefaultDirMode     = FileMode(0o755) //
	emergencyFraction  = 1.0 / 20.0      // see scheduler; renew policies must leave room above it
	maxDomainsPerCert  = 100             // the most any supported CA accepts in one certificate
	maxCertificateName = 64              //
)

// DefaultPendingGrace is how long a configured certificate may go without
// a deployed certificate before `certd status` counts it unhealthy.
const DefaultPendingGrace = Duration(3600e9) // 1h

// KeyTypes are the private key algorithms certd generates.
var KeyTypes = []string{"ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"}

// DCV methods a certificate's domains can be proved by.
const (
	MethodDNS = "dns" // a TXT record published through a DNS provider
	// MethodDNSDelegated: the TXT record is published at a delegated name
	// that the name where the CA looks is CNAMEd to (once, by hand). Not
	// to be confused with a CNAME challenge, which certd publishes itself
	// when a CA asks for one.
	MethodDNSDelegated = "dns-delegated"
	// methodDNSCNAMEOld is the old name of dns-delegated, refused with a
	// message naming the new one.
	methodDNSCNAMEOld = "dns-cname"
	MethodHTTP        = "http"  // a token file served under /.well-known/ by an HTTP target
	MethodEmail       = "email" // an approval email to an address the CA allows
)

// Config is a loaded, validated configuration.
type Config struct {
	// Files are the files the configuration was read from: the main file
	// first, then conf.d/*.yaml in lexical order.
	Files []string

	Schedule string
	// AllowEmpty: the configuration may list no certificate at all. Without
	// it, such a configuration is refused when certd loads it (Options.
	// RequireCertificates), so that an empty or truncated file cannot
	// retire the whole fleet.
	AllowEmpty bool
	// PendingGrace is how long a configured certificate may go without a
	// deployed certificate (first issuance under way, a slow CA) before
	// `certd status` counts it unhealthy (default 1h).
	PendingGrace Duration
	// Workers bounds how many certificates are worked at once, over all
	// accounts (each account's max_concurrent bounds it further).
	Workers int
	Store   Store
	Fleet   Fleet
	Log     Log
	Metrics Metrics

	DCV    DCVSettings
	Notify Notify

	Accounts     map[string]*Plugin
	DNS          map[string]*Plugin
	HTTP         map[string]*Plugin
	Certificates []*Certificate

	// PostHook (defaults.post_hook) runs once after a pass that deployed
	// at least one certificate (one nginx reload after twenty renewals).
	PostHook []Argv
}

// AccountLimits bound how hard certd works one CA account.
type AccountLimits struct {
	// MaxConcurrent certificates of the account are worked at once
	// (default 4).
	MaxConcurrent int `yaml:"max_concurrent"`
	// RateLimit is requests per second to the CA (0: no limit), with
	// bursts of Burst (default 1 or the rate, whichever is larger).
	RateLimit float64 `yaml:"rate_limit"`
	Burst     int     `yaml:"burst"`
	// OrderWait bounds how long one pass waits for an order the CA is
	// still working on (issuing, or not yet showing in its reports)
	// before leaving it to a later pass (default 30s; 0: do not wait).
	OrderWait Duration `yaml:"order_wait"`
	// RequestTimeout bounds one HTTP exchange with the CA, from dial to
	// the last byte of the answer (default 60s, at most 10m). A CA that
	// accepts a request and never answers costs this long; the outcome is
	// then ambiguous and settled by a lookup, never by a second order.
	RequestTimeout Duration `yaml:"request_timeout"`
	// PerHostKeys (fleet mode, CAs that reissue for another key without a
	// purchase): every host of the fleet serves a certificate for a
	// private key of its own, which never leaves it; the fleet buys one
	// certificate and each host has it reissued for its key.
	PerHostKeys bool `yaml:"per_host_keys"`
}

// DCVSettings tune how certd checks that a challenge is visible.
type DCVSettings struct {
	// Resolvers (host:port) answer certd's own lookups: zones, name
	// servers, CNAMEs. Default: /etc/resolv.conf.
	Resolvers []string `yaml:"resolvers"`
	// CheckServers, per DNS provider, are the authoritative servers
	// (host:port) that must all serve a record before the CA is asked;
	// default: the zone's NS records. For split horizon and private zones.
	CheckServers map[string][]string `yaml:"check_servers"`
	// HTTPCheckAddress, when set, is where the HTTP self-check connects
	// (host:port) instead of the domain's own address.
	HTTPCheckAddress string `yaml:"http_check_address"`
	// Timeout bounds the wait for visibility (default 2m).
	Timeout Duration `yaml:"timeout"`
}

// Notify says when and how people are told that certd needs them.
type Notify struct {
	// AfterFailures: notify once a certificate has failed this many times
	// in a row (default 3).
	AfterFailures int `yaml:"after_failures"`
	// ExpiryWarning: notify when the deployed certificate expires within
	// this while renewals fail, whatever the count (default 14d).
	ExpiryWarning Duration `yaml:"expiry_warning"`
	// MinInterval: the same problem is not repeated sooner (default 6h).
	MinInterval Duration `yaml:"min_interval"`
	// MaxPerHour caps all messages together (default 20).
	MaxPerHour int `yaml:"max_per_hour"`
	// OnSuccess also reports every renewal.
	OnSuccess bool           `yaml:"on_success"`
	Webhook   *NotifyWebhook `yaml:"webhook"`
	Email     *NotifyEmail   `yaml:"email"`
}

// NotifyWebhook posts JSON to a URL. The URL is a secret reference:
// webhook URLs usually embed their token.
type NotifyWebhook struct {
	URL   Secret `yaml:"url"`
	Slack bool   `yaml:"slack"` // Slack-compatible body ({"text": ...})
}

// NotifyEmail sends mail through an SMTP relay with STARTTLS.
type NotifyEmail struct {
	SMTP     string   `yaml:"smtp"` // host:port
	From     string   `yaml:"from"`
	To       []string `yaml:"to"`
	Username string   `yaml:"username"`
	Password Secret   `yaml:"password"`
	// CA is a PEM file of roots for a private relay's certificate.
	CA string `yaml:"ca"`
	// Insecure allows a relay without STARTTLS (and then no login).
	Insecure bool `yaml:"insecure"`
}

// Plugin is a decoded account, DNS provider or HTTP target.
type Plugin struct {
	Name string
	Type string
	Pos  Pos
	// Limits apply to accounts of every type.
	Limits AccountLimits
	// Settings is what the plug-in's decoder returned: its own config
	// struct, validated.
	Settings any

	block *Block // for KeyPos
}

// Store selects the persistence backend.
type Store struct {
	// SQLite is the path of the embedded database (default
	// /var/lib/certd/certd.db). Relative paths are relative to the
	// configuration file.
	SQLite string `yaml:"sqlite"`
	// Postgres is a secret reference to the PostgreSQL DSN of a fleet
	// (file:, env: or credential:; the DSN holds a password). Setting it
	// turns fleet mode on (see Fleet).
	Postgres Secret `yaml:"postgres"`
}

// Fleet sets how this host works beside others on one PostgreSQL store.
type Fleet struct {
	// Host names this host in leases, deployments and status (default
	// the hostname). Each host of a fleet needs its own.
	Host string `yaml:"host"`
	// EncryptionKey is a secret reference to the 32-byte key (base64 or
	// hex; `certd fleet keygen` prints one) that encrypts private keys in
	// the shared database. Required with store.postgres; every host
	// needs the same key, and the database never sees it.
	EncryptionKey Secret `yaml:"encryption_key"`
	// Lease is how long a host holds a certificate, claim or order it
	// works before another may take it over (default 2m); it is renewed
	// every third of it while the work runs, and must exceed every
	// account's request_timeout.
	Lease Duration `yaml:"lease"`
	// SyncInterval is how often a host looks for versions another host
	// issued and deploys them on itself (default 30s).
	SyncInterval Duration `yaml:"sync_interval"`
	// KeyDir holds this host's own private keys of accounts with
	// per_host_keys (default /var/lib/certd/keys): they are never written
	// to the shared database.
	KeyDir string `yaml:"key_dir"`
}

// Log sets logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // json (default) or console
}

// Metrics sets the Prometheus endpoint.
type Metrics struct {
	Listen string `yaml:"listen"` // host:port; empty disables it
}

// Certificate is one certificate certd keeps valid.
type Certificate struct {
	Name    string   `yaml:"name"`
	Domains []string `yaml:"domains"`
	Account string   `yaml:"account"`
	KeyType string   `yaml:"key_type"`
	// DCV is the default proof method for every domain; DomainDCV
	// overrides it per domain.
	DCV       *DCV            `yaml:"dcv"`
	DomainDCV map[string]*DCV `yaml:"domain_dcv"`
	Renew     *Renew          `yaml:"renew"`
	Deploy    *Deploy         `yaml:"deploy"`
	// Lifetime asks for a shorter validity than the CA's maximum.
	Lifetime Duration `yaml:"lifetime"`
	// Profile names the certificate's ACME profile (draft-aaron-acme-
	// profiles), over its account's; ProfileRequired (default true): a CA
	// that does not offer it fails the order, else its default is used.
	Profile         string `yaml:"profile"`
	ProfileRequired *bool  `yaml:"profile_required"`
	// Adopt names existing PEM files (from another tool, or bought by
	// hand) that become the certificate's first version, so nothing is
	// ordered while they are valid. Used only while the certificate has
	// no version yet.
	Adopt *Adopt `yaml:"adopt"`

	Pos Pos `yaml:"-"`
}

// Adopt is a certificate's existing files: the certificate (a fullchain
// file, or the leaf with the chain in Chain) and its private key.
// Relative paths are relative to the configuration file.
type Adopt struct {
	Cert  string `yaml:"cert"`
	Chain string `yaml:"chain"`
	Key   string `yaml:"key"`
}

// ProfileIsRequired reports whether the certificate's profile must be
// offered by the CA (profile_required, default true).
func (c *Certificate) ProfileIsRequired() bool { return c.ProfileRequired == nil || *c.ProfileRequired }

// DCVFor returns the method that proves domain (normalised).
func (c *Certificate) DCVFor(domain string) *DCV {
	if d, ok := c.DomainDCV[domain]; ok {
		return d
	}
	return c.DCV
}

// DCV is how one domain is proved.
type DCV struct {
	Method string `yaml:"method"`
	// Provider names a DNS provider (dns, dns-delegated).
	Provider string `yaml:"provider"`
	// Delegate is the name the CA's record name is CNAMEd to (dns-delegated);
	// the record is published there, in the provider's zone.
	Delegate string `yaml:"delegate"`
	// Target names an HTTP target (http).
	Target string `yaml:"target"`
	// Email is the approver address (email).
	Email string `yaml:"email"`
}

// Renew is the renewal policy: renew when RemainingFraction of the lifetime
// is left (default 1/3), or Before the expiry; never both.
type Renew struct {
	RemainingFraction float64  `yaml:"remaining_fraction"`
	Before            Duration `yaml:"before"`
}

// Deploy says where and how the certificate is put in place. A
// certificate's own deploy block is merged with defaults.deploy key by
// key: the keys it writes replace the defaults' (an empty list, reload: []
// or check: [], turns a default hook off for it), the others are
// inherited, so a certificate that sets only its directory keeps the
// default check and reload hooks.
type Deploy struct {
	// Dir holds <name>/{cert,chain,fullchain,privkey}.pem.
	Dir      string   `yaml:"dir"`
	Owner    string   `yaml:"owner"`
	Group    string   `yaml:"group"`
	CertMode FileMode `yaml:"cert_mode"`
	KeyMode  FileMode `yaml:"key_mode"`
	// Combined also writes combined.pem (key then fullchain, for HAProxy).
	Combined bool `yaml:"combined"`
	// Keep is how many earlier versions stay on disk for rollback.
	Keep        int      `yaml:"keep"`
	Check       Argv     `yaml:"check"`
	Reload      []Argv   `yaml:"reload"`
	HookTimeout Duration `yaml:"hook_timeout"`
	Verify      *Verify  `yaml:"verify"`
}

// Verify is the live check after a reload: dial Address with SNI
// ServerName and expect the new leaf within Timeout.
type Verify struct {
	Address    string   `yaml:"address"`
	ServerName string   `yaml:"server_name"`
	Timeout    Duration `yaml:"timeout"`
}

// Defaults are applied to every certificate that does not set the key.
type Defaults struct {
	Account string  `yaml:"account"`
	KeyType string  `yaml:"key_type"`
	DCV     *DCV    `yaml:"dcv"`
	Renew   *Renew  `yaml:"renew"`
	Deploy  *Deploy `yaml:"deploy"`
	// PostHook: commands run once after a pass that deployed anything.
	PostHook []Argv `yaml:"post_hook"`
}

// mainFile is the shape of the main configuration file.
type mainFile struct {
	Schedule     string            `yaml:"schedule"`
	AllowEmpty   bool              `yaml:"allow_empty"`
	PendingGrace Duration          `yaml:"pending_grace"`
	Workers      int               `yaml:"workers"`
	Store        Store             `yaml:"store"`
	Fleet        Fleet             `yaml:"fleet"`
	Log          Log               `yaml:"log"`
	Metrics      Metrics           `yaml:"metrics"`
	DCV          DCVSettings       `yaml:"dcv"`
	Notify       Notify            `yaml:"notify"`
	Defaults     *Defaults         `yaml:"defaults"`
	Accounts     map[string]*Block `yaml:"accounts"`
	DNS          map[string]*Block `yaml:"dns"`
	HTTP         map[string]*Block `yaml:"http"`
	Certificates []*Certificate    `yaml:"certificates"`
}

// fragment is the shape of a conf.d file: it adds accounts, providers,
// targets and certificates; daemon-wide settings stay in the main file.
type fragment struct {
	Accounts     map[string]*Block `yaml:"accounts"`
	DNS          map[string]*Block `yaml:"dns"`
	HTTP         map[string]*Block `yaml:"http"`
	Certificates []*Certificate    `yaml:"certificates"`
}
