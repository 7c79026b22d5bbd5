package reseller

import (
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/config"
	"github.com/certd/certd/internal/ratelimit"
)

// Kind is the reseller entry of certd's account types.
func Kind() ca.Kind {
	return ca.Kind{Decode: DecodeConfig, New: func(env ca.Env) (ca.Issuer, error) {
		return NewFromConfig(env.Settings.(*Config), env.Logger, func(o *ClientOptions) {
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

// DefaultPollInterval is how long certd waits before looking again at an
// order the CA is still working on. The API has no notifications.
const DefaultPollInterval = 5 * time.Minute

// DCV types of the API (dcv_type).
const (
	DCVDNS   = "DNS"
	DCVFile  = "FILE"
	DCVEmail = "EMAIL"
)

// DefaultRejectedStatuses are the object statuses that end an order
// (ca.ErrRejected). Only "pending" and "active" are documented; these
// spellings are inferred (see the package doc): set rejected_statuses once
// the real ones are known.
func DefaultRejectedStatuses() []string {
	return []string{"cancelled", "canceled", "rejected", "failed", "expired", "revoked", "deleted", "disabled", "refunded"}
}

// Config is a reseller account block (the /ssl-certificate REST API). The
// base URL is account-specific and has no default. The organisation and
// approver keys are the API's own field names (seed 002).
type Config struct {
	URL      string        `yaml:"url"`
	Username string        `yaml:"username"`
	APIKey   config.Secret `yaml:"api_key"` // HTTP Basic password
	// Plan is the UUID of the SSL plan ordered.
	Plan string `yaml:"plan"`
	// DCVType is how the domains are proved: DNS (default), FILE or EMAIL.
	// FILE cannot prove wildcard names.
	DCVType string `yaml:"dcv_type"`
	// Validation is the plan's validation level: dv (default), ov or ev.
	// OV and EV require the organisation and approver fields the seed marks
	// "Required for OV* and EV*".
	Validation string `yaml:"validation"`

	ChamberOfCommerce    string `yaml:"chamber_of_commerce"`
	CompanyName          string `yaml:"company_name"`
	Department           string `yaml:"department"`
	Address              string `yaml:"address"`
	ZipCode              string `yaml:"zip_code"`
	City                 string `yaml:"city"`
	ApproverFirstName    string `yaml:"approver_first_name"`
	ApproverLastName     string `yaml:"approver_last_name"`
	ApproverEmailAddress string `yaml:"approver_email_address"` // required for dcv_type EMAIL
	ApproverPhoneNumber  string `yaml:"approver_phone_number"`  // "+31.612345678"

	// PollInterval is how long before an order still pending is looked at
	// again (default DefaultPollInterval).
	PollInterval config.Duration `yaml:"poll_interval"`
	// Roots is an optional PEM file of the anchors issued chains must
	// verify to (default: self-signed certificates in the CA bundle the
	// API delivers, else the system's roots).
	Roots string `yaml:"roots"`
	// CA is an optional PEM file of roots for the API's own TLS
	// certificate (a private endpoint, the simulator); empty means the
	// system roots.
	CA string `yaml:"ca"`
	// RejectedStatuses are the object statuses that end an order (default
	// DefaultRejectedStatuses; compared without regard to case).
	RejectedStatuses []string `yaml:"rejected_statuses"`
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// DecodeConfig decodes and validates a reseller account block.
func DecodeConfig(b *config.Block) (any, error) {
	return config.DecodeWith(b, Config{DCVType: DCVDNS, Validation: "dv", PollInterval: config.Duration(DefaultPollInterval)},
		func(c *Config, ck *config.Checker) {
			ck.Required("url", c.URL != "")
			if c.URL != "" {
				ck.URL("url", c.URL)
				if u, err := url.Parse(c.URL); err == nil && u.User != nil {
					// Never echo it: the password part may be the key.
					ck.Errorf("url", "url must not carry credentials; use username and api_key")
				}
			}
			ck.Required("username", c.Username != "")
			ck.Required("api_key", c.APIKey.IsSet())
			if !uuidRE.MatchString(c.Plan) {
				ck.Errorf("plan", "plan must be the plan's UUID, got %q", c.Plan)
			}
			c.DCVType = strings.ToUpper(c.DCVType)
			switch c.DCVType {
			case DCVDNS, DCVFile:
			case DCVEmail:
				ck.Required("approver_email_address", c.ApproverEmailAddress != "")
			default:
				ck.Errorf("dcv_type", "dcv_type must be DNS, FILE or EMAIL, got %q", c.DCVType)
			}
			if c.ApproverEmailAddress != "" {
				if a, err := mail.ParseAddress(c.ApproverEmailAddress); err != nil || a.Address != c.ApproverEmailAddress {
					ck.Errorf("approver_email_address", "invalid address %q", c.ApproverEmailAddress)
				}
			}
			c.Validation = strings.ToLower(c.Validation)
			switch c.Validation {
			case "dv":
			case "ov", "ev":
				for _, f := range []struct {
					key string
					set bool
				}{
					{"chamber_of_commerce", c.ChamberOfCommerce != ""},
					{"department", c.Department != ""},
					{"approver_first_name", c.ApproverFirstName != ""},
					{"approver_last_name", c.ApproverLastName != ""},
				} {
					if !f.set {
						ck.Errorf(f.key, "%s is required for %s plans", f.key, strings.ToUpper(c.Validation))
					}
				}
			default:
				ck.Errorf("validation", "validation must be dv, ov or ev, got %q", c.Validation)
			}
			if c.PollInterval < config.Duration(time.Second) {
				ck.Errorf("poll_interval", "must be at least 1s, got %s", c.PollInterval)
			}
			for i, s := range c.RejectedStatuses {
				if strings.TrimSpace(s) == "" {
					ck.Errorf("rejected_statuses", "entry %d is empty", i)
				}
				if st := strings.ToLower(strings.TrimSpace(s)); st == statusPending || st == statusActive {
					ck.Errorf("rejected_statuses", "%q is a documented non-terminal status", s)
				}
			}
		})
}

// Contact is the organisation and approver fields sent with every order
// (the API's names, seed 002). Empty fields are not sent.
type Contact struct {
	ChamberOfCommerce    string
	CompanyName          string
	Department           string
	Address              string
	ZipCode              string
	City                 string
	ApproverFirstName    string
	ApproverLastName     string
	ApproverEmailAddress string
	ApproverPhoneNumber  string
}

func (c *Config) contact() Contact {
	return Contact{ChamberOfCommerce: c.ChamberOfCommerce, CompanyName: c.CompanyName, Department: c.Department,
		Address: c.Address, ZipCode: c.ZipCode, City: c.City, ApproverFirstName: c.ApproverFirstName,
		ApproverLastName: c.ApproverLastName, ApproverEmailAddress: c.ApproverEmailAddress, ApproverPhoneNumber: c.ApproverPhoneNumber}
}

// Files names the files NewFromConfig reads, by key, so that a
// configuration check can read them as a start would (the shape of
// config.FileNamer; no guard, so that this package does not depend on
// it).
func (c *Config) Files() map[string]string {
	return map[string]string{"ca": c.CA, "roots": c.Roots}
}
