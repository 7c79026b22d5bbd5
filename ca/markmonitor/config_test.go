package markmonitor_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/markmonitor"
	"github.com/certd/certd/config"
)

const orgBlock = `    organization:
      name: Example Widgets Inc.
      address: 1 Main Street
      city: Boise
      state: ID
      country: US
      zip: "83702"
      phone: "+1.2085550100"
      contacts:
        - first_name: Jane
          last_name: Doe
          job_title: CTO
          email: jane.doe@example.com
          phone: "+1.2085550101"
          types: [ORGANIZATION_CONTACT, EXTENDED_VALIDATION_APPROVER]
`

// load parses a configuration holding one markmonitor account whose keys
// are block (indented lines), as cmd/certd would; dir holds the secrets.
func load(t *testing.T, dir, block string) (*markmonitor.Config, error) {
	t.Helper()
	for name, v := range map[string]string{"key": apiKey, "pw": password} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	yaml := "accounts:\n  mm:\n    type: markmonitor\n    username: " + username + "\n    api_key: file:" + filepath.Join(dir, "key") +
		"\n    password: file:" + filepath.Join(dir, "pw") + "\n" + block
	cfg, err := config.Parse(filepath.Join(dir, "certd.yaml"), []byte(yaml), config.Options{Accounts: map[string]config.Decoder{"markmonitor": markmonitor.DecodeConfig}})
	if err != nil {
		return nil, err
	}
	return cfg.Accounts["mm"].Settings.(*markmonitor.Config), nil
}

func TestConfigDefaults(t *testing.T) {
	c, err := load(t, t.TempDir(), "    certificate_type: SSL_DV_GEOTRUST\n"+orgBlock)
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != markmonitor.DefaultURL || c.AuthURL != markmonitor.DefaultAuthURL || c.DCVMethod != "dns" || c.DNSMethod != "txt" ||
		c.TXTName != "domain" || c.CNAMEForm != "token" || c.DownloadFormat != "pem_all" || c.PollInterval.D() != 2*time.Minute ||
		c.RecheckInterval.D() != 10*time.Minute || c.SearchWindow.D() != 10*time.Minute || c.TokenLifetime.D() != 90*time.Minute ||
		c.RefreshBefore.D() != 10*time.Minute || c.RequestsPerMinute != 100 || c.PageSize != 50 || c.FirstPage != 0 ||
		c.Actions != markmonitor.DefaultActions() || c.Provider != "DIGICERT" || c.Locale != "en" || c.Organization.Contacts[0].Email != "jane.doe@example.com" {
		t.Fatalf("defaults: %+v", c)
	}
}

// Every invalid setting is reported, each naming its key.
func TestConfigErrorsNameTheirKey(t *testing.T) {
	dv := "    certificate_type: SSL_DV_GEOTRUST\n"
	cases := []struct{ block, key, msg string }{
		{orgBlock, "certificate_type", "certificate_type is required"},
		{"    certificate_type: DV_SSL\n" + orgBlock, "certificate_type", "must be one of"},
		{dv, "organization", "organization_id is required"},
		{dv + orgBlock + "    organization_id: 0b8f3c1e-7a55-4d0e-9a51-3f7c2d1e8b90\n", "organization_id", "not both"},
		{dv + "    organization_id: ../x\n", "organization_id", "not a resourceId"},
		{dv + strings.Replace(orgBlock, "country: US", "country: usa", 1), "organization.country", "two-letter"},
		{dv + strings.Replace(orgBlock, "      city: Boise\n", "", 1), "organization.city", "required"},
		{dv + strings.Replace(orgBlock, "ORGANIZATION_CONTACT, EXTENDED_VALIDATION_APPROVER", "TECHNICAL_CONTACT", 1), "organization.contacts[0].types[0]", "contact type"},
		{"    certificate_type: SSL_EV_BASIC\n" + strings.Replace(orgBlock, ", EXTENDED_VALIDATION_APPROVER", "", 1), "organization.contacts", "EXTENDED_VALIDATION_APPROVER"},
		{dv + strings.Replace(orgBlock, "jane.doe@example.com", "jane", 1), "organization.contacts[0].email", "not an email"},
		{dv + orgBlock + "    dcv_method: dns_txt_token\n", "dcv_method", "must be dns"},
		{dv + orgBlock + "    dns_method: TXT\n", "dns_method", "txt or cname"},
		{dv + orgBlock + "    txt_name: apex\n", "txt_name", "domain or dnsauth"},
		{dv + orgBlock + "    cname_form: legacy\n", "cname_form", "token or dnsauth"},
		{dv + orgBlock + "    root_hash: SHA_256\n", "root_hash", "SHA_1"},
		{dv + orgBlock + "    download_format: der\n", "download_format", "pem_all or p7b"},
		{dv + orgBlock + "    poll_interval: 0s\n", "poll_interval", "at least 1s"},
		{dv + orgBlock + "    search_window: 0s\n", "search_window", "at least 1s"},
		{dv + orgBlock + "    refresh_before: 2h\n", "refresh_before", "shorter than token_lifetime"},
		{dv + orgBlock + "    requests_per_minute: 0\n", "requests_per_minute", "at least 1"},
		{dv + orgBlock + "    first_page: 2\n", "first_page", "0 or 1"},
		{dv + orgBlock + "    actions:\n      reissue: re/issue\n", "actions.reissue", "one path segment"},
		{dv + orgBlock + "    json_names:\n      dcvToken: token\n      csr: token\n", "json_names", "both sent as token"},
		{dv + orgBlock + "    url: http://api.markmonitor.example/cert/v1\n", "url", "https"},
		{dv + orgBlock + "    dcvMethod: EMAIL\n", "dcvMethod", "unknown key"},
	}
	for _, c := range cases {
		t.Run(c.key+"/"+c.msg, func(t *testing.T) {
			_, err := load(t, t.TempDir(), c.block)
			var es config.Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v, want config.Errors", err)
			}
			for _, e := range es {
				if strings.Contains(e.Pos.Path, c.key) && strings.Contains(e.Msg, c.msg) {
					return
				}
			}
			t.Fatalf("no error for %s containing %q in:\n%v", c.key, c.msg, err)
		})
	}
}

// Kind builds the issuer from the decoded block, its secrets resolved
// from files; env.Observe is told of every exchange with a route without
// ids, and an order goes through.
func TestKindBuildsTheIssuer(t *testing.T) {
	e := newEnv(t, nil)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "api-ca.pem")
	if err := os.WriteFile(caFile, e.sim.APICAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := load(t, dir, "    certificate_type: SSL_DV_GEOTRUST\n"+orgBlock+"    url: "+e.url+"\n    auth_url: "+e.authURL+"\n    ca: "+caFile+
		"\n    poll_interval: 1s\n    recheck_interval: 1s\n")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var routes []string
	iss, err := markmonitor.Kind().New(ca.Env{Name: "mm", Settings: c, Logger: zap.NewNop(), Observe: func(route string, status int, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		routes = append(routes, route)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := iss.(ca.Coster); ok {
		t.Fatal("orders are paid at submit: the issuer must not implement ca.Coster")
	}
	req := request(t, nil, freshNames()...)
	req.SentAt = time.Now()
	o, err := iss.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	e.prove(t, iss, o, req)
	res, err := iss.Fetch(ctx, o, req)
	for i := 0; errors.Is(err, ca.ErrPending) && i < 200; i++ {
		time.Sleep(20 * time.Millisecond)
		res, err = iss.Fetch(ctx, o, req)
	}
	if err != nil {
		t.Fatal(err)
	}
	e.verify(t, res, req)
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"POST /auth/authenticate", "GET /organization", "POST /organization", "POST /order", "GET /order/{id}",
		"PATCH /order/{id}/validateDomains", "GET /order/{id}/downloadCert"} {
		if !slices.Contains(routes, want) {
			t.Fatalf("routes %v lack %s", routes, want)
		}
	}
	for _, r := range routes {
		if strings.Contains(r, o.Ref) || strings.ContainsAny(r, "0123456789") {
			t.Fatalf("route %q holds an id", r)
		}
	}
}
