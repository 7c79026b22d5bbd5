package atlas

import (
	"strings"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/config"
	"github.com/certd/certd/internal/ratelimit"
)

// Kind is the globalsign-atlas entry of certd's account types.
func Kind() ca.Kind {
	return ca.Kind{Decode: DecodeConfig, New: func(env ca.Env) (ca.Issuer, error) {
		c := env.Settings.(*Config)
		client, err := NewFromConfig(c, env.Logger, func(o *ClientOptions) {
			o.Observe = env.Observe
			if t := env.Limits.RequestTimeout.D(); t > 0 {
				o.Timeout = t
			}
			if env.Limits.RateLimit > 0 {
				o.RateLimit = ratelimit.New(env.Limits.RateLimit, env.Limits.Burst, nil, nil)
			}
		})
		if err != nil {
			return nil, err
		}
		return NewIssuer(client, IssuerOptions{IssuanceWindow: c.IssuanceWindow.D(), DelegationLabel: c.DelegationLabel,
			ClaimDomains: c.ClaimDomains, ReassertBefore: c.ReassertBefore.D(), DisableAIA: !c.FetchIssuer}), nil
	}}
}

// DefaultURL is the HVCA v2 API of GlobalSign Atlas (EMEA region). The
// version is part of the path and the port is 8443.
const DefaultURL = "https://emea.api.hvca.globalsign.com:8443/v2"

// Config is a globalsign-atlas account block.
type Config struct {
	// URL of the HVCA API, ending in the version (default DefaultURL).
	URL string `yaml:"url"`
	// APIKey and APISecret are the login credentials (/login api_key,
	// api_secret).
	APIKey    config.Secret `yaml:"api_key"`
	APISecret config.Secret `yaml:"api_secret"`
	// ClientCert is the PEM file of the mTLS client certificate GlobalSign
	// issued for the account; ClientKey its private key (PKCS#1, PKCS#8).
	ClientCert string        `yaml:"client_cert"`
	ClientKey  config.Secret `yaml:"client_key"`
	// CA is an optional PEM file of roots for the API's own TLS
	// certificate (a private endpoint, the simulator); empty means the
	// system roots.
	CA string `yaml:"ca"`
	// ReassertBefore is how long before a claim's expires_at certd
	// reasserts it (default 30 days).
	ReassertBefore config.Duration `yaml:"reassert_before"`
	// ClaimDomains are parent domains to claim instead of each certificate
	// name (a verified claim on example.com covers www.example.com).
	ClaimDomains []string `yaml:"claim_domains"`
	// IssuanceWindow is the longest Atlas takes to issue a request it
	// accepted (default 1h). After a lost answer certd resends only when
	// no certificate for the order's key has appeared this long after it
	// was sent: Atlas reports list certificates only once issued.
	IssuanceWindow config.Duration `yaml:"issuance_window"`
	// DelegationLabel is the "_"-label whose CNAME delegates a claim's TXT
	// record to another zone (dcv method dns-delegated; default
	// "_acme-challenge").
	DelegationLabel string `yaml:"delegation_label"`
	// FetchIssuer, when a certificate's issuing CA is in no trust chain
	// Atlas served (it rotated between issuance and fetch), reads it from
	// the leaf's AIA caIssuers URL and joins it to the served chain that
	// signed it (default true). The guide is silent on rotation; with
	// false such an order waits and is retried.
	FetchIssuer bool `yaml:"fetch_issuer"`
}

// DecodeConfig decodes and validates a globalsign-atlas account block.
func DecodeConfig(b *config.Block) (any, error) {
	return config.DecodeWith(b, Config{URL: DefaultURL, ReassertBefore: config.Duration(30 * 24 * 3600e9),
		IssuanceWindow: config.Duration(DefaultIssuanceWindow), DelegationLabel: "_acme-challenge", FetchIssuer: true}, func(c *Config, ck *config.Checker) {
		if !strings.HasPrefix(c.DelegationLabel, "_") || strings.ContainsAny(c.DelegationLabel, ". ") {
			ck.Errorf("delegation_label", "must be one DNS label starting with \"_\", got %q", c.DelegationLabel)
		}
		if c.IssuanceWindow < config.Duration(1e9) {
			ck.Errorf("issuance_window", "must be at least 1s, got %s", c.IssuanceWindow)
		}
		ck.URL("url", c.URL)
		ck.Required("api_key", c.APIKey.IsSet())
		ck.Required("api_secret", c.APISecret.IsSet())
		ck.Required("client_cert", c.ClientCert != "")
		ck.Required("client_key", c.ClientKey.IsSet())
		for i, d := range c.ClaimDomains {
			n, err := config.NormalizeDomain(d)
			if err != nil {
				ck.Errorf(indexKey("claim_domains", i), "%v", err)
				continue
			}
			c.ClaimDomains[i] = n
		}
	})
}
