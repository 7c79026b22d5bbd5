package markmonitor

import (
	"github.com/certd/certd/ca"
	"github.com/certd/certd/config"
)

// Kind is the markmonitor entry of certd's account types: its configuration is
// read and checked; its issuer is not in this release.
func Kind() ca.Kind { return ca.Kind{Decode: DecodeConfig} }

// Default endpoints of the Markmonitor SSL Certs API.
const (
	DefaultURL     = "https://api.markmonitor.com/cert/v1"
	DefaultAuthURL = "https://api.markmonitor.com/auth/v1"
)

// Config is a markmonitor account block.
type Config struct {
	URL      string        `yaml:"url"`
	AuthURL  string        `yaml:"auth_url"`
	APIKey   config.Secret `yaml:"api_key"` // sent as x-api-key
	Username string        `yaml:"username"`
	Password config.Secret `yaml:"password"`
	// OrganizationID is the resourceId of the organisation orders are
	// placed for.
	OrganizationID string `yaml:"organization_id"`
	// CertificateType is the product ordered (for example "DV_SSL").
	CertificateType string `yaml:"certificate_type"`
}

// DecodeConfig decodes and validates a markmonitor account block.
func DecodeConfig(b *config.Block) (any, error) {
	return config.DecodeWith(b, Config{URL: DefaultURL, AuthURL: DefaultAuthURL}, func(c *Config, ck *config.Checker) {
		ck.URL("url", c.URL)
		ck.URL("auth_url", c.AuthURL)
		ck.Required("api_key", c.APIKey.IsSet())
		ck.Required("username", c.Username != "")
		ck.Required("password", c.Password.IsSet())
		ck.Required("organization_id", c.OrganizationID != "")
		ck.Required("certificate_type", c.CertificateType != "")
	})
}
