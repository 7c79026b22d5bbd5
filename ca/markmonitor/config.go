package markmonitor

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/config"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/internal/ratelimit"
)

// Kind is the markmonitor entry of certd's account types.
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

// Default endpoints of the Markmonitor SSL Certs API. The guide's §7
// names the cert base ".../certs/v1" but every endpoint it defines uses
// ".../cert/v1", which certd follows; url overrides it.
const (
	DefaultURL     = "https://api.markmonitor.com/cert/v1"
	DefaultAuthURL = "https://api.markmonitor.com/auth/v1"
)

// Defaults of the account block.
const (
	// DefaultRequestsPerMinute is the Cert API's documented limit.
	DefaultRequestsPerMinute = 100
	// DefaultTokenLifetime is the JWT's documented lifetime.
	DefaultTokenLifetime = 90 * time.Minute
	// DefaultRefreshBefore: the JWT is refreshed when less than this is
	// left (at 80 minutes, as the reference suggests).
	DefaultRefreshBefore = 10 * time.Minute
	// DefaultPollInterval is how often a pending order is read again (the
	// reference suggests every 1 to 5 minutes).
	DefaultPollInterval = 2 * time.Minute
	// DefaultRecheckInterval bounds how often DigiCert is asked to
	// validate one order's domains.
	DefaultRecheckInterval = 10 * time.Minute
	// DefaultSearchWindow is how long after a lost answer certd waits
	// for the order to show in the search before it reads its absence as
	// certain.
	DefaultSearchWindow = 10 * time.Minute
	// DefaultRateLimitRetry is the wait after a 429 without Retry-After.
	DefaultRateLimitRetry = 60 * time.Second
	// DefaultProvider and DefaultLocale are sent with every organisation,
	// contact and order (inferred values).
	DefaultProvider = "DIGICERT"
	DefaultLocale   = "en"
)

// Config is a markmonitor account block.
type Config struct {
	// URL is the cert service base (default DefaultURL), AuthURL the
	// authentication service base (default DefaultAuthURL).
	URL     string `yaml:"url"`
	AuthURL string `yaml:"auth_url"`
	// APIKey is sent as x-api-key; Username and Password log in.
	APIKey   config.Secret `yaml:"api_key"`
	Username string        `yaml:"username"`
	Password config.Secret `yaml:"password"`
	// CertificateType is the product ordered: one of the guide's types
	// (SSL_DV_GEOTRUST, SSL_OV_BASIC, SSL_EV_BASIC, ...).
	CertificateType string `yaml:"certificate_type"`
	// Organization is the organisation orders are placed for, with its
	// contacts: looked up by name, created once when absent.
	Organization *OrganizationConfig `yaml:"organization"`
	// OrganizationID names an organisation that already exists (made in
	// the portal or by a DPA, guide §8.1) instead.
	OrganizationID string `yaml:"organization_id"`
	// Provider and Locale are sent with organisations, contacts and
	// orders (defaults DIGICERT, en).
	Provider string `yaml:"provider"`
	Locale   string `yaml:"locale"`
	// DCVMethod is how orders are validated: "dns" (default: dns_method),
	// or one of DNS_TXT_TOKEN, DNS_CNAME_TOKEN, HTTP_TOKEN, EMAIL. One
	// method per order.
	DCVMethod string `yaml:"dcv_method"`
	// DNSMethod is what certd's dns proofs publish: "txt" (default,
	// DNS_TXT_TOKEN) or "cname" (DNS_CNAME_TOKEN).
	DNSMethod string `yaml:"dns_method"`
	// TXTName is where the TXT goes: "domain" (default) or "dnsauth"
	// (_dnsauth.<domain>). CNAMEForm is the CNAME's shape: "token"
	// (default, <token>.<domain> CNAME dcv.digicert.com) or "dnsauth"
	// (_dnsauth.<domain> CNAME <token>.dcv.digicert.com).
	TXTName   string `yaml:"txt_name"`
	CNAMEForm string `yaml:"cname_form"`
	// RootHash, when set, is sent as rootHash ("SHA_1"; not advised).
	RootHash string `yaml:"root_hash"`
	// DownloadFormat is pem_all (default) or p7b.
	DownloadFormat string `yaml:"download_format"`
	// PollInterval is how often a pending order is read again (default
	// 2m). RecheckInterval bounds how often DigiCert is asked to validate
	// an order's domains (default 10m). SearchWindow is how long after a
	// lost answer an order may take to show in the search (default 10m).
	PollInterval    config.Duration `yaml:"poll_interval"`
	RecheckInterval config.Duration `yaml:"recheck_interval"`
	SearchWindow    config.Duration `yaml:"search_window"`
	// TokenLifetime is the JWT's lifetime when the token does not say
	// (default 90m); RefreshBefore how long before its end it is
	// refreshed (default 10m).
	TokenLifetime config.Duration `yaml:"token_lifetime"`
	RefreshBefore config.Duration `yaml:"refresh_before"`
	// RequestsPerMinute is the account's limit (default 100); certd never
	// sends more in any minute. RateLimitRetry is the wait after a 429
	// without Retry-After (default 60s).
	RequestsPerMinute int             `yaml:"requests_per_minute"`
	RateLimitRetry    config.Duration `yaml:"rate_limit_retry"`
	// PageSize, FirstPage (0 or 1) and SearchMaxPages shape the paged
	// searches (defaults 50, 0, 40).
	PageSize       int `yaml:"page_size"`
	FirstPage      int `yaml:"first_page"`
	SearchMaxPages int `yaml:"search_max_pages"`
	// OrganizationValidatedStatuses and DomainValidatedStatuses are the
	// status words that mean validated (default VALIDATED, VALID,
	// COMPLETED, APPROVED).
	OrganizationValidatedStatuses []string `yaml:"organization_validated_statuses"`
	DomainValidatedStatuses       []string `yaml:"domain_validated_statuses"`
	// Actions are the PATCH action path tokens (defaults cancel, revoke,
	// reissue, validateDomains).
	Actions Actions `yaml:"actions"`
	// JSONNames renames JSON keys (certd's name: the API's), both ways;
	// QueryNames renames query parameters (page, size, name,
	// commonNames, statuses, certificateTypes, organizationId, format).
	JSONNames  map[string]string `yaml:"json_names"`
	QueryNames map[string]string `yaml:"query_names"`
	// Roots is an optional PEM file of the anchors issued chains must
	// verify to (default: the self-signed certificates of the download).
	Roots string `yaml:"roots"`
	// CA is an optional PEM file of roots for the API's own TLS
	// certificate (the simulator); empty means the system roots.
	CA string `yaml:"ca"`
}

// OrganizationConfig is the organisation declared in configuration
// (guide §6.1.1 step 1).
type OrganizationConfig struct {
	Name     string          `yaml:"name"`
	Address  string          `yaml:"address"`
	Address2 string          `yaml:"address2"`
	City     string          `yaml:"city"`
	State    string          `yaml:"state"`
	Country  string          `yaml:"country"`
	Zip      string          `yaml:"zip"`
	Phone    string          `yaml:"phone"`
	Contacts []ContactConfig `yaml:"contacts"`
}

// ContactConfig is one contact of the organisation.
type ContactConfig struct {
	FirstName string   `yaml:"first_name"`
	LastName  string   `yaml:"last_name"`
	JobTitle  string   `yaml:"job_title"`
	Email     string   `yaml:"email"`
	Phone     string   `yaml:"phone"`
	Types     []string `yaml:"types"`
}

// check lists what is wrong with the declaration, for certType.
func (o *OrganizationConfig) check(certType string) error {
	var errs []error
	o.problems(certType, func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	})
	return errors.Join(errs...)
}

// problems reports each problem of the declaration to errf, with the key
// it is about.
func (o *OrganizationConfig) problems(certType string, errf func(key, format string, args ...any)) {
	for _, f := range []struct{ key, v string }{{"name", o.Name}, {"address", o.Address}, {"city", o.City}, {"country", o.Country},
		{"zip", o.Zip}, {"phone", o.Phone}} {
		if strings.TrimSpace(f.v) == "" {
			errf("organization."+f.key, "organization.%s is required", f.key)
		}
	}
	if o.Country != "" && (len(o.Country) != 2 || strings.ToUpper(o.Country) != o.Country) {
		errf("organization.country", "country is a two-letter ISO 3166 code in capitals (US, DE), got %q", o.Country)
	}
	if len(o.Contacts) == 0 {
		errf("organization.contacts", "at least one contact is required (the organisation is validated through it)")
	}
	var types []string
	seen := map[string]bool{}
	for i, c := range o.Contacts {
		key := fmt.Sprintf("organization.contacts[%d]", i)
		for _, f := range []struct{ key, v string }{{"first_name", c.FirstName}, {"last_name", c.LastName}, {"email", c.Email}, {"phone", c.Phone}} {
			if strings.TrimSpace(f.v) == "" {
				errf(key+"."+f.key, "%s is required", f.key)
			}
		}
		if c.Email != "" {
			if a, err := mail.ParseAddress(c.Email); err != nil || a.Address != c.Email {
				errf(key+".email", "%q is not an email address", c.Email)
			} else if seen[strings.ToLower(c.Email)] {
				errf(key+".email", "%s is declared twice", c.Email)
			}
			seen[strings.ToLower(c.Email)] = true
		}
		if len(c.Types) == 0 {
			errf(key+".types", "types is required (%s, %s)", ContactOrganization, ContactEVApprover)
		}
		for j, t := range c.Types {
			if t != ContactOrganization && t != ContactEVApprover {
				errf(fmt.Sprintf("%s.types[%d]", key, j), "a contact type is %s or %s, got %q", ContactOrganization, ContactEVApprover, t)
			}
			types = append(types, t)
		}
	}
	if len(o.Contacts) > 0 && !slices.Contains(types, ContactOrganization) {
		errf("organization.contacts", "one contact must have the type %s", ContactOrganization)
	}
	if ValidationLevel(certType) == "EV" && len(o.Contacts) > 0 && !slices.Contains(types, ContactEVApprover) {
		errf("organization.contacts", "an EV certificate type needs a contact of type %s", ContactEVApprover)
	}
}

func (o *OrganizationConfig) request(provider string) NewOrganization {
	out := NewOrganization{Name: o.Name, Address: o.Address, Address2: o.Address2, City: o.City, State: o.State, Country: o.Country, Zip: o.Zip,
		Phone: o.Phone, Provider: provider}
	for _, c := range o.Contacts {
		out.Contacts = append(out.Contacts, c.request(provider))
	}
	return out
}

func (c ContactConfig) request(provider string) NewContact {
	return NewContact{Provider: provider, FirstName: c.FirstName, LastName: c.LastName, JobTitle: c.JobTitle, Email: c.Email, Phone: c.Phone,
		ContactTypes: slices.Clone(c.Types)}
}

// DecodeConfig decodes and validates a markmonitor account block.
func DecodeConfig(b *config.Block) (any, error) {
	def := Config{URL: DefaultURL, AuthURL: DefaultAuthURL, Provider: DefaultProvider, Locale: DefaultLocale, DCVMethod: "dns", DNSMethod: "txt",
		TXTName: TXTAtDomain, CNAMEForm: CNAMEAtToken, DownloadFormat: FormatPEMAll, PollInterval: config.Duration(DefaultPollInterval),
		RecheckInterval: config.Duration(DefaultRecheckInterval), SearchWindow: config.Duration(DefaultSearchWindow),
		TokenLifetime: config.Duration(DefaultTokenLifetime), RefreshBefore: config.Duration(DefaultRefreshBefore),
		RequestsPerMinute: DefaultRequestsPerMinute, RateLimitRetry: config.Duration(DefaultRateLimitRetry), PageSize: 50, SearchMaxPages: 40,
		Actions: DefaultActions()}
	return config.DecodeWith(b, def, func(c *Config, ck *config.Checker) {
		ck.URL("url", c.URL)
		ck.URL("auth_url", c.AuthURL)
		ck.Required("api_key", c.APIKey.IsSet())
		ck.Required("username", c.Username != "")
		ck.Required("password", c.Password.IsSet())
		ck.Required("certificate_type", c.CertificateType != "")
		if c.CertificateType != "" && ValidationLevel(c.CertificateType) == "" {
			known := CertificateTypes()
			slices.Sort(known)
			ck.Errorf("certificate_type", "certificate_type must be one of %s (case-sensitive), got %q", strings.Join(known, ", "), c.CertificateType)
		}
		switch {
		case c.Organization == nil && c.OrganizationID == "":
			ck.Errorf("organization", "organization (name, address, contacts) or organization_id is required")
		case c.Organization != nil && c.OrganizationID != "":
			ck.Errorf("organization_id", "give organization or organization_id, not both")
		case c.OrganizationID != "" && !ValidID(c.OrganizationID):
			ck.Errorf("organization_id", "%q is not a resourceId (a UUID)", c.OrganizationID)
		case c.Organization != nil:
			c.Organization.problems(c.CertificateType, ck.Errorf)
		}
		if c.DCVMethod != "dns" && !IsMethod(c.DCVMethod) {
			ck.Errorf("dcv_method", "dcv_method must be dns, %s, %s, %s or %s, got %q", MethodDNSTXT, MethodDNSCNAME, MethodHTTP, MethodEmail, c.DCVMethod)
		}
		if c.DNSMethod != "txt" && c.DNSMethod != "cname" {
			ck.Errorf("dns_method", "dns_method must be txt or cname, got %q", c.DNSMethod)
		}
		if c.TXTName != TXTAtDomain && c.TXTName != TXTAtDNSAuth {
			ck.Errorf("txt_name", "txt_name must be domain or dnsauth, got %q", c.TXTName)
		}
		if c.CNAMEForm != CNAMEAtToken && c.CNAMEForm != CNAMEAtDNSAuth {
			ck.Errorf("cname_form", "cname_form must be token or dnsauth, got %q", c.CNAMEForm)
		}
		if c.RootHash != "" && c.RootHash != RootHashSHA1 {
			ck.Errorf("root_hash", "root_hash is empty (the default full SHA-2 chain) or SHA_1, got %q", c.RootHash)
		}
		if c.DownloadFormat != FormatPEMAll && c.DownloadFormat != FormatP7B {
			ck.Errorf("download_format", "download_format must be pem_all or p7b, got %q", c.DownloadFormat)
		}
		for _, d := range []struct {
			key string
			v   config.Duration
		}{{"poll_interval", c.PollInterval}, {"recheck_interval", c.RecheckInterval}, {"search_window", c.SearchWindow},
			{"rate_limit_retry", c.RateLimitRetry}, {"refresh_before", c.RefreshBefore}} {
			if d.v < config.Duration(time.Second) {
				ck.Errorf(d.key, "%s must be at least 1s, got %s", d.key, d.v)
			}
		}
		if c.TokenLifetime < config.Duration(time.Minute) {
			ck.Errorf("token_lifetime", "token_lifetime must be at least 1m, got %s", c.TokenLifetime)
		} else if c.RefreshBefore >= c.TokenLifetime {
			ck.Errorf("refresh_before", "refresh_before (%s) must be shorter than token_lifetime (%s)", c.RefreshBefore, c.TokenLifetime)
		}
		if c.RequestsPerMinute < 1 {
			ck.Errorf("requests_per_minute", "requests_per_minute must be at least 1, got %d", c.RequestsPerMinute)
		}
		if c.PageSize < 1 || c.PageSize > 1000 {
			ck.Errorf("page_size", "page_size must be between 1 and 1000, got %d", c.PageSize)
		}
		if c.FirstPage != 0 && c.FirstPage != 1 {
			ck.Errorf("first_page", "first_page must be 0 or 1, got %d", c.FirstPage)
		}
		if c.SearchMaxPages < 1 {
			ck.Errorf("search_max_pages", "search_max_pages must be at least 1, got %d", c.SearchMaxPages)
		}
		for _, a := range []struct{ key, v string }{{"actions.cancel", c.Actions.Cancel}, {"actions.revoke", c.Actions.Revoke},
			{"actions.reissue", c.Actions.Reissue}, {"actions.validate_domains", c.Actions.ValidateDomains}} {
			if a.v == "" || strings.ContainsAny(a.v, "/?#% ") {
				ck.Errorf(a.key, "an action is one path segment, got %q", a.v)
			}
		}
		seen := map[string]string{}
		for k, v := range c.JSONNames {
			if v == "" {
				ck.Errorf("json_names."+k, "the API's name for %s is empty", k)
			} else if prev, dup := seen[v]; dup {
				ck.Errorf("json_names."+k, "%s and %s are both sent as %s", prev, k, v)
			}
			seen[v] = k
		}
		for k, v := range c.QueryNames {
			if v == "" {
				ck.Errorf("query_names."+k, "the API's name for %s is empty", k)
			}
		}
		for i, s := range c.OrganizationValidatedStatuses {
			if strings.TrimSpace(s) == "" {
				ck.Errorf(fmt.Sprintf("organization_validated_statuses[%d]", i), "an empty status")
			}
		}
		for i, s := range c.DomainValidatedStatuses {
			if strings.TrimSpace(s) == "" {
				ck.Errorf(fmt.Sprintf("domain_validated_statuses[%d]", i), "an empty status")
			}
		}
	})
}

// NewFromConfig builds an Issuer from an account block: it resolves the
// secrets and reads the trust files. Nothing is sent.
func NewFromConfig(c *Config, log *zap.Logger, mods ...func(*ClientOptions)) (*Issuer, error) {
	key, err := c.APIKey.Resolve()
	if err != nil {
		return nil, fmt.Errorf("markmonitor: %w", err)
	}
	pw, err := c.Password.Resolve()
	if err != nil {
		return nil, fmt.Errorf("markmonitor: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	opts := ClientOptions{URL: c.URL, AuthURL: c.AuthURL, APIKey: key, Username: c.Username, Password: pw, TokenLifetime: c.TokenLifetime.D(),
		RefreshBefore: c.RefreshBefore.D(), RequestsPerMinute: c.RequestsPerMinute, RateLimitRetry: c.RateLimitRetry.D(), JSONNames: c.JSONNames,
		QueryNames: c.QueryNames, PageSize: c.PageSize, FirstPage: c.FirstPage, MaxPages: c.SearchMaxPages, Logger: log}
	if c.CA != "" {
		certs, err := readPEMCerts(c.CA)
		if err != nil {
			return nil, fmt.Errorf("markmonitor: ca: %w", err)
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
	io := IssuerOptions{CertificateType: c.CertificateType, Organization: c.Organization, OrganizationID: c.OrganizationID, Provider: c.Provider,
		Locale: c.Locale, DNSMethod: MethodDNSTXT, TXTName: c.TXTName, CNAMEForm: c.CNAMEForm, RootHash: c.RootHash, DownloadFormat: c.DownloadFormat,
		PollInterval: c.PollInterval.D(), RecheckInterval: c.RecheckInterval.D(), SearchWindow: c.SearchWindow.D(),
		OrgValidatedStatuses: c.OrganizationValidatedStatuses, DomainValidatedStatuses: c.DomainValidatedStatuses, Actions: c.Actions, Logger: log}
	if c.DNSMethod == "cname" {
		io.DNSMethod = MethodDNSCNAME
	}
	if c.DCVMethod != "dns" {
		io.DCVMethod = c.DCVMethod
	}
	if c.Roots != "" {
		if io.Roots, err = readPEMCerts(c.Roots); err != nil {
			return nil, fmt.Errorf("markmonitor: roots: %w", err)
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
