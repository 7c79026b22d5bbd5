package sectigo_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/sectigo"
	"github.com/certd/certd/config"
	"github.com/certd/certd/dcv"
)

// load parses a configuration holding one sectigo account whose keys are
// block (indented lines), as cmd/certd would.
func load(t *testing.T, block string) (*sectigo.Config, error) {
	t.Helper()
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := "accounts:\n  reseller:\n    type: sectigo\n    login_name: " + loginName + "\n    login_password: file:" + pw + "\n" + block
	cfg, err := config.Parse(filepath.Join(dir, "certd.yaml"), []byte(yaml), config.Options{Accounts: map[string]config.Decoder{"sectigo": sectigo.DecodeConfig}})
	if err != nil {
		return nil, err
	}
	return cfg.Accounts["reseller"].Settings.(*sectigo.Config), nil
}

func TestConfigDefaults(t *testing.T) {
	c, err := load(t, "    product: 492\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != sectigo.DefaultURL || c.Days != 365 || c.DCVMethod != "CNAME_CSR_HASH" || c.HTTPScheme != "http" || !*c.MultiDomain ||
		c.PollInterval.D() != 3*time.Hour || c.CallLimitRetry.D() != time.Minute || c.Recheck != "update" || c.RecheckInterval.D() != time.Hour {
		t.Fatalf("defaults: %+v", c)
	}
	c, err = load(t, "    product: 488\n    dcv_method: HTTPS_CSR_HASH\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPScheme != "https" || *c.MultiDomain {
		t.Fatalf("https default: %+v", c)
	}
}

// Every invalid setting is reported, each naming its key.
func TestConfigErrorsNameTheirKey(t *testing.T) {
	cases := []struct{ block, key, msg string }{
		{"    days: 365\n", "product", "product is required"},
		{"    product: 488\n    days: 400\n", "days", "between 1 and 398"},
		{"    product: 488\n    dcv_method: cname_csr_hash\n", "dcv_method", "case-sensitive"},
		{"    product: 488\n    http_scheme: ftp\n", "http_scheme", "http or https"},
		{"    product: 488\n    dcv_method: HTTP_CSR_HASH\n    http_scheme: https\n", "http_scheme", "contradicts"},
		{"    product: 488\n    approver: root\n", "approver", "admin, administrator"},
		{"    product: 488\n    dcv_method: EMAIL\n", "approver", "required when dcv_method is EMAIL"},
		{"    product: 488\n    poll_interval: 0s\n", "poll_interval", "at least 1s"},
		{"    product: 488\n    call_limit_retry: 0s\n", "call_limit_retry", "at least 1s"},
		{"    product: 488\n    recheck: sometimes\n", "recheck", "update or resend"},
		{"    product: 488\n    rejected_statuses: [Rejected, \" \"]\n", "rejected_statuses[1]", "empty status"},
		{"    product: 488\n    url: http://sectigo.example\n", "url", "https"},
		{"    product: 488\n    dcvMethod: EMAIL\n", "dcvMethod", "unknown key"},
	}
	for _, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			_, err := load(t, c.block)
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want config.Errors", err)
			}
			for _, e := range errs {
				if strings.Contains(e.Pos.Path, c.key) && e.Pos.Line > 0 && strings.Contains(e.Msg, c.msg) {
					return
				}
			}
			t.Fatalf("errors %v: none at %s saying %q", err, c.key, c.msg)
		})
	}
}

// Kind builds a working issuer from the account block: the password
// resolved from its file, the simulator trusted through ca, every
// exchange observed with the API's name as route.
func TestKindBuildsTheIssuer(t *testing.T) {
	e := newEnv(t, nil)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "api-ca.pem")
	if err := os.WriteFile(caFile, e.sim.APICAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	rootsFile := filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(rootsFile, e.sim.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := load(t, "    url: "+strings.Replace(e.url, "127.0.0.1", "localhost", 1)+"\n    product: 488\n    dcv_method: HTTP_CSR_HASH\n    poll_interval: 1s\n    ca: "+caFile+"\n    roots: "+rootsFile+"\n")
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	iss, err := sectigo.Kind().New(ca.Env{Name: "reseller", Settings: c, Logger: zap.NewNop(), Observe: func(route string, status int, _ time.Duration) {
		routes = append(routes, route)
		if status != 200 {
			t.Errorf("%s answered %d", route, status)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := iss.(ca.Coster); ok {
		t.Fatal("the issuer declares a cost: Sectigo orders are paid at submit, the default")
	}
	if ca.CostOf(iss) != ca.PaidAtSubmit {
		t.Fatal("not paid at submit")
	}
	req := request(t, "kind.example.com")
	chs, err := iss.(ca.PreSubmitChallenger).ChallengesBefore(req, map[string]ca.Proof{"kind.example.com": {Method: dcv.HTTPFile}})
	if err != nil {
		t.Fatal(err)
	}
	e.publish(t, chs)
	o, err := iss.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	res := fetchUntil(t, iss.(*sectigo.Issuer), o, req)
	if len(res.Roots) != 1 || !res.Roots[0].Equal(mustRoot(t, e)) {
		t.Fatal("the roots file is not the result's roots")
	}
	if routes[0] != "AutoApplySSL" || routes[1] != "CollectSSL" {
		t.Fatalf("observed routes %v", routes)
	}
}
