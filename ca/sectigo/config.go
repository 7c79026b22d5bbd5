package sectigo

import (
	"github.com/certd/certd/ca"
	"github.com/certd/certd/config"
)

// Kind is the sectigo entry of certd's account types: its configuration is
// read and checked; its issuer is not in this release.
func Kind() ca.Kind { return ca.Kind{Decode: DecodeConfig} }

// DefaultURL is the host of Sectigo's reseller Auto* API.
const DefaultURL = "https://secure.trust-provider.com"

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
}

// DecodeConfig decodes and validates a sectigo account block.
func DecodeConfig(b *config.Block) (any, error) {
	return config.DecodeWith(b, Config{URL: DefaultURL, Days: 365}, func(c *Config, ck *config.Checker) {
		ck.URL("url", c.URL)
		ck.Required("login_name", c.LoginName != "")
		ck.Required("login_password", c.LoginPassword.IsSet())
		ck.Required("product", c.Product != 0)
		if c.Days < 1 || c.Days > 398 {
			ck.Errorf("days", "days must be between 1 and 398, got %d", c.Days)
		}
	})
}
