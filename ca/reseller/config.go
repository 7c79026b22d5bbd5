package reseller

import (
	"regexp"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/config"
)

// Kind is the reseller entry of certd's account types: its configuration
// is read and checked; its issuer is not in this release.
func Kind() ca.Kind { return ca.Kind{Decode: DecodeConfig} }

// Config is a reseller account block (the /ssl-certificate REST API). The
// base URL is account-specific and has no default.
type Config struct {
	URL      string        `yaml:"url"`
	Username string        `yaml:"username"`
	APIKey   config.Secret `yaml:"api_key"` // HTTP Basic password
	// Plan is the UUID of the SSL plan ordered.
	Plan string `yaml:"plan"`
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// DecodeConfig decodes and validates a reseller account block.
func DecodeConfig(b *config.Block) (any, error) {
	return config.DecodeWith(b, Config{}, func(c *Config, ck *config.Checker) {
		ck.Required("url", c.URL != "")
		if c.URL != "" {
			ck.URL("url", c.URL)
		}
		ck.Required("username", c.Username != "")
		ck.Required("api_key", c.APIKey.IsSet())
		if !uuidRE.MatchString(c.Plan) {
			ck.Errorf("plan", "plan must be the plan's UUID, got %q", c.Plan)
		}
	})
}
