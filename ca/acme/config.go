package acme

import (
	"net/mail"
	"regexp"
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
	// Profile names a certificate profile the directory advertises in
	// meta.profiles (draft-aaron-acme-profiles: Let's Encrypt's classic,
	// tlsserver, shortlived); it is sent with every newOrder. Empty: the
	// CA's default. For another profile at the same CA, define a second
	// account with the same directory.
	Profile string `yaml:"profile"`
	// ProfileRequired (default true): a CA that does not offer Profile
	// fails the order, naming the certificate. false: the CA's default
	// profile is used instead, with a warning.
	ProfileRequired *bool `yaml:"profile_required"`
}

// profileName is what a profile name may look like: the draft leaves it
// free, CAs use short tokens.
var profileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Required reports whether the profile must be offered (default true).
func (c *Config) Required() bool { return c.ProfileRequired == nil || *c.ProfileRequired }

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
		switch {
		case c.Profile != "" && !profileName.MatchString(c.Profile):
			ck.Errorf("profile", "invalid profile name %q (letters, digits, '.', '_', '-')", c.Profile)
		case c.Profile == "" && c.ProfileRequired != nil:
			ck.Errorf("profile_required", "profile_required needs a profile")
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
