package acme

import (
	"net/mail"
	"sort"
	"strings"

	"github.com/certd/certd/config"
)

// Presets are directory URLs by name; any https URL works too.
var Presets = map[string]string{
	"letsencrypt":         "https://acme-v02.api.letsencrypt.org/directory",
	"letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
	"globalsign":          "https://emea.acme.atlas.globalsign.com/directory",
	"sectigo-dv":          "https://acme.sectigo.com/v2/DV",
	"sectigo-ov":          "https://acme.sectigo.com/v2/OV",
	"sectigo-ev":          "https://acme.sectigo.com/v2/EV",
	"digicert":            "https://acme.digicert.com/v2/acme/directory/",
}

// Config is an acme account block.
type Config struct {
	// Directory is a preset name (see Presets) or a directory URL.
	Directory string `yaml:"directory"`
	Email     string `yaml:"email"`
	EAB       *EAB   `yaml:"eab"`
	// CA is an optional PEM file of extra roots to trust for the ACME
	// server itself (private CAs, Pebble in tests).
	CA string `yaml:"ca"`
	// Roots is an optional PEM file of the anchors issued chains must
	// verify to before they are deployed (default: the system's roots).
	Roots string `yaml:"roots"`
	// FinalizeWait bounds one wait for an order the CA is processing
	// (default 30s); a longer one is polled again later.
	FinalizeWait config.Duration `yaml:"finalize_wait"`
}

// EAB is External Account Binding: the key id and the HMAC key exactly as
// the CA hands them out (base64url text).
type EAB struct {
	KID     string        `yaml:"kid"`
	HMACKey config.Secret `yaml:"hmac_key"`
}

// DirectoryURL returns the directory URL the config names.
func (c *Config) DirectoryURL() string {
	if u, ok := Presets[c.Directory]; ok {
		return u
	}
	return c.Directory
}

// DecodeConfig decodes and validates an acme account block.
func DecodeConfig(b *config.Block) (any, error) {
	return config.DecodeWith(b, Config{}, func(c *Config, ck *config.Checker) {
		switch _, preset := Presets[c.Directory]; {
		case c.Directory == "":
			ck.Errorf("directory", "directory is required: a preset (%s) or a URL", presetNames())
		case !preset && !strings.Contains(c.Directory, "://"):
			ck.Errorf("directory", "unknown preset %q (one of: %s), and not a URL", c.Directory, presetNames())
		case !preset:
			ck.URL("directory", c.Directory)
		}
		if c.Email != "" {
			if a, err := mail.ParseAddress(c.Email); err != nil || a.Address != c.Email {
				ck.Errorf("email", "invalid address %q", c.Email)
			}
		}
		if c.EAB != nil {
			ck.Required("eab.kid", c.EAB.KID != "")
			ck.Required("eab.hmac_key", c.EAB.HMACKey.IsSet())
		}
	})
}

func presetNames() string {
	names := make([]string, 0, len(Presets))
	for n := range Presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
