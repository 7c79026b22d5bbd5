package sectigo

import (
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/config"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/internal/ratelimit"
)

// Kind is the sectigo entry of certd's account types.
func Kind() ca.Kind {
	return ca.Kind{Decode: DecodeConfig, New: func(env ca.Env) (ca.Issuer, error) {
		c := env.Settings.(*Config)
		return NewFromConfig(c, env.Logger, func(o *ClientOptions) {
			o.Observe = env.Observe
			if t := env.Limits.RequestTimeout.D(); t > 0 {
				o.Timeout = t
			}
			if env.Limits.RateLimit > 0 {
				o.RateLimit = ratelimit.New(env.Limits.RateLimit, env.Limits.Burst, nil, nil)
			}
		})
	}}
}

// DefaultURL is the host of Sectigo's reseller Auto* API.
const DefaultURL = "https://secure.trust-provider.com"

// Defaults of the account block.
const (
	// DefaultPollInterval is Sectigo's guidance for CollectSSL: no more
	// often than once every 3 hours.
	DefaultPollInterval = 3 * time.Hour
	// DefaultRecheckInterval bounds how often certd asks Sectigo to check
	// an order's proofs again.
	DefaultRecheckInterval = time.Hour
	// MultiDomainProduct is the one multi-domain (UCC DV) product code the
	// reference names; multi_domain defaults to true for it.
	MultiDomainProduct = 492
)

// DefaultRejectedStatuses are the extended certificate statuses (see
// FieldCertificateStatus) that end an order: the reference says an order
// revoked before issuance is rejected, and lists "already cancelled" and
// "already refunded" errors; the words themselves are not in it.
func DefaultRejectedStatuses() []string {
	return []string{"Rejected", "Revoked", "Cancelled", "Canceled", "Refunded"}
}

// Config is a sectigo account block (reseller Auto* API).
type Config struct {
	URL           string        `yaml:"url"`
	LoginName     string        `yaml:"login_name"`
	LoginPassword config.Secret `yaml:"login_password"`
	// Product is Sectigo's product code (488 SectigoSSL DV, 489 wildcard
	// DV, 492 UCC DV, ...).
	Product int `yaml:"product"`
	// Days is the validity ordered.
	Days int `yaml:"days"`
	// MultiDomain: the product is a multi-domain (MDC/UCC) one, so orders
	// carry domainNames and primaryDomainName and may name several
	// domains. Default: true for product 492, false otherwise; a
	// single-domain product takes one name per order.
	MultiDomain *bool `yaml:"multi_domain"`
	// DCVMethod proves the domains no certificate proof names:
	// CNAME_CSR_HASH (default), HTTP_CSR_HASH, HTTPS_CSR_HASH or EMAIL.
	DCVMethod string `yaml:"dcv_method"`
	// HTTPScheme is what certd's http proofs (an HTTP file) mean here:
	// "http" (HTTP_CSR_HASH, port 80) or "https" (HTTPS_CSR_HASH, port
	// 443; Sectigo checks only the scheme chosen). Default: https when
	// dcv_method is HTTPS_CSR_HASH, else http.
	HTTPScheme string `yaml:"http_scheme"`
	// Approver is the mailbox EMAIL validation uses when a proof names no
	// address: admin, administrator, hostmaster, postmaster or webmaster
	// (at the domain proved).
	Approver string `yaml:"approver"`
	// PollInterval is the least time between two status reads of one
	// order (CollectSSL), and the Retry-After of a pending Fetch (default
	// 3h, Sectigo's guidance).
	PollInterval config.Duration `yaml:"poll_interval"`
	// CallLimitRetry is how long the account is paused after error -42
	// (call limit; Sectigo publishes no number and no wait; default 60s).
	CallLimitRetry config.Duration `yaml:"call_limit_retry"`
	// Recheck is how certd asks Sectigo to check a paid order's proofs
	// again: "update" (AutoUpdateDCV with the domain's method: also
	// repairs a method that did not take; default) or "resend"
	// (ResendDCVEmail, which resets the re-check schedule of the non-email
	// methods, and resends the email of EMAIL).
	Recheck string `yaml:"recheck"`
	// RecheckInterval is the least time between two such requests for one
	// domain of an order (default 1h).
	RecheckInterval config.Duration `yaml:"recheck_interval"`
	// RejectedStatuses are the extended certificate statuses that end an
	// order (default DefaultRejectedStatuses), compared case-insensitively.
	RejectedStatuses []string `yaml:"rejected_statuses"`
	// Roots is an optional PEM file of the anchors issued chains must
	// verify to (default: the self-signed certificates of the bundle
	// CollectSSL returns, else the system's roots).
	Roots string `yaml:"roots"`
	// CA is an optional PEM file of roots for the API's own TLS
	// certificate (the simulator); empty means the system roots.
	CA string `yaml:"ca"`
	// Test places unbilled test orders (test=Y; the account must be
	// enabled for them).
	Test bool `yaml:"test"`
}

// Approver mailboxes Sectigo accepts (reference §2.6).
func approverOK(local string) bool {
	switch local {
	case "admin", "administrator", "hostmaster", "postmaster", "webmaster":
		return true
	}
	return false
}

// DecodeConfig decodes and validates a sectigo account block.
func DecodeConfig(b *config.Block) (any, error) {
	def := Config{URL: DefaultURL, Days: 365, DCVMethod: MethodCNAME, PollInterval: config.Duration(DefaultPollInterval),
		CallLimitRetry: config.Duration(DefaultCallLimitRetry), Recheck: "update", RecheckInterval: config.Duration(DefaultRecheckInterval)}
	return config.DecodeWith(b, def, func(c *Config, ck *config.Checker) {
		ck.URL("url", c.URL)
		ck.Required("login_name", c.LoginName != "")
		if len(c.LoginName) > 64 {
			ck.Errorf("login_name", "login_name is at most 64 characters, got %d", len(c.LoginName))
		}
		ck.Required("login_password", c.LoginPassword.IsSet())
		ck.Required("product", c.Product != 0)
		if c.Product < 0 {
			ck.Errorf("product", "product must be a positive product code, got %d", c.Product)
		}
		if c.Days < 1 || c.Days > 398 {
			ck.Errorf("days", "days must be between 1 and 398, got %d", c.Days)
		}
		if c.MultiDomain == nil {
			md := c.Product == MultiDomainProduct
			c.MultiDomain = &md
		}
		if !IsMethod(c.DCVMethod) {
			ck.Errorf("dcv_method", "dcv_method must be one of %s, %s, %s, %s (case-sensitive), got %q", MethodCNAME, MethodHTTP, MethodHTTPS, MethodEmail, c.DCVMethod)
		}
		switch {
		case c.HTTPScheme == "" && c.DCVMethod == MethodHTTPS:
			c.HTTPScheme = "https"
		case c.HTTPScheme == "":
			c.HTTPScheme = "http"
		case c.HTTPScheme != "http" && c.HTTPScheme != "https":
			ck.Errorf("http_scheme", "http_scheme must be http or https, got %q", c.HTTPScheme)
		case c.DCVMethod == MethodHTTP && c.HTTPScheme == "https", c.DCVMethod == MethodHTTPS && c.HTTPScheme == "http":
			ck.Errorf("http_scheme", "http_scheme %s contradicts dcv_method %s", c.HTTPScheme, c.DCVMethod)
		}
		if c.Approver != "" && !approverOK(c.Approver) {
			ck.Errorf("approver", "approver must be one of admin, administrator, hostmaster, postmaster, webmaster (the mailbox at the domain proved), got %q", c.Approver)
		}
		if c.DCVMethod == MethodEmail && c.Approver == "" {
			ck.Errorf("approver", "approver is required when dcv_method is EMAIL")
		}
		if c.PollInterval < config.Duration(time.Second) {
			ck.Errorf("poll_interval", "poll_interval must be at least 1s, got %s", c.PollInterval)
		}
		if c.CallLimitRetry < config.Duration(time.Second) {
			ck.Errorf("call_limit_retry", "call_limit_retry must be at least 1s, got %s", c.CallLimitRetry)
		}
		if c.Recheck != "update" && c.Recheck != "resend" {
			ck.Errorf("recheck", "recheck must be update or resend, got %q", c.Recheck)
		}
		for i, s := range c.RejectedStatuses {
			if strings.TrimSpace(s) == "" {
				ck.Errorf(fmt.Sprintf("rejected_statuses[%d]", i), "an empty status")
			}
		}
	})
}

// NewFromConfig builds an Issuer from an account block: it resolves the
// password and reads the trust files. Nothing is sent.
func NewFromConfig(c *Config, log *zap.Logger, mods ...func(*ClientOptions)) (*Issuer, error) {
	pw, err := c.LoginPassword.Resolve()
	if err != nil {
		return nil, fmt.Errorf("sectigo: %w", err)
	}
	opts := ClientOptions{URL: c.URL, LoginName: c.LoginName, LoginPassword: pw, CallLimitRetry: c.CallLimitRetry.D(), Logger: log}
	if c.CA != "" {
		certs, err := readPEMCerts(c.CA)
		if err != nil {
			return nil, fmt.Errorf("sectigo: ca: %w", err)
		}
		opts.RootCAs = x509.NewCertPool()
		for _, cert := range certs {
			opts.RootCAs.AddCert(cert)
		}
	}
	for _, m := range mods {
		m(&opts)
	}
	client, err := NewClient(opts)
	if err != nil {
		return nil, err
	}
	io := IssuerOptions{Product: c.Product, Days: c.Days, DCVMethod: c.DCVMethod, HTTPScheme: c.HTTPScheme, Approver: c.Approver,
		PollInterval: c.PollInterval.D(), Recheck: c.Recheck, RecheckInterval: c.RecheckInterval.D(), RejectedStatuses: c.RejectedStatuses,
		Test: c.Test, Logger: log}
	if c.MultiDomain != nil {
		io.MultiDomain = *c.MultiDomain
	}
	if c.Roots != "" {
		if io.Roots, err = readPEMCerts(c.Roots); err != nil {
			return nil, fmt.Errorf("sectigo: roots: %w", err)
		}
	}
	return NewIssuer(client, io)
}

func readPEMCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := pemutil.Certificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}
