package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/certd/certd/ca/acme"
	"github.com/certd/certd/ca/atlas"
	"github.com/certd/certd/ca/markmonitor"
	"github.com/certd/certd/ca/reseller"
	"github.com/certd/certd/ca/sectigo"
	"github.com/certd/certd/config"
	"github.com/certd/certd/providers"
)

// opts is the plug-in table the tests load with: the real decoders, as
// cmd/certd wires them.
func opts() config.Options {
	return config.Options{
		Accounts: map[string]config.Decoder{"globalsign-atlas": atlas.DecodeConfig, "acme": acme.DecodeConfig,
			"sectigo": sectigo.DecodeConfig, "reseller": reseller.DecodeConfig, "markmonitor": markmonitor.DecodeConfig},
		DNS:  providers.Decoders(providers.DNSTypes()),
		HTTP: providers.Decoders(providers.HTTPTypes()),
	}
}

type want struct {
	file, path, msg string
	line            int
}

// parseWant reads the first line of a case: "# want: [FILE:]LINE PATH | MSG".
func parseWant(t *testing.T, main string) want {
	t.Helper()
	data, err := os.ReadFile(main)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(data), "\n")
	spec, ok := strings.CutPrefix(first, "# want: ")
	if !ok {
		t.Fatalf("%s: first line must be '# want: [FILE:]LINE PATH | MSG'", main)
	}
	loc, msg, _ := strings.Cut(spec, " | ")
	where, path, _ := strings.Cut(loc, " ")
	w := want{file: main, path: strings.TrimSpace(path), msg: msg}
	if f, l, ok := strings.Cut(where, ":"); ok {
		w.file, where = filepath.Join(filepath.Dir(main), f), l
	}
	if w.line, err = strconv.Atoi(where); err != nil {
		t.Fatalf("%s: bad line in want: %q", main, where)
	}
	return w
}

func TestBadConfigsNameTheirKeyAndLine(t *testing.T) {
	entries, err := os.ReadDir("testdata/bad")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 25 {
		t.Fatalf("only %d bad configs; the corpus must hold at least 25", len(entries))
	}
	for _, e := range entries {
		t.Run(e.Name(), func(t *testing.T) {
			main := filepath.Join("testdata/bad", e.Name())
			if e.IsDir() {
				main = filepath.Join(main, "certd.yaml")
			}
			w := parseWant(t, main)
			cfg, err := config.Load(main, opts())
			if err == nil {
				t.Fatalf("loaded without error: %+v", cfg)
			}
			if cfg != nil {
				t.Error("a refused configuration must not be returned")
			}
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, not config.Errors: %v", err, err)
			}
			for _, e := range errs {
				if e.Pos.File == w.file && e.Pos.Line == w.line && e.Pos.Path == w.path && strings.Contains(e.Msg, w.msg) {
					// The rendered message carries file:line and path too.
					if s := e.Error(); !strings.HasPrefix(s, fmt.Sprintf("%s:%d:", w.file, w.line)) || !strings.Contains(s, w.path) {
						t.Errorf("rendered error %q lacks file:line or path", s)
					}
					return
				}
			}
			t.Errorf("no error at %s:%d %s containing %q; got:\n%v", w.file, w.line, w.path, w.msg, err)
		})
	}
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := config.Load("../config.example.yaml", opts2())
	if err != nil {
		t.Fatalf("config.example.yaml must load:\n%v", err)
	}
	if len(cfg.Certificates) != 3 {
		t.Fatalf("got %d certificates, want 3", len(cfg.Certificates))
	}
	byName := map[string]*config.Certificate{}
	for _, c := range cfg.Certificates {
		byName[c.Name] = c
	}
	api := byName["api"]
	if api.KeyType != "ecdsa-p384" || api.Account != "letsencrypt" {
		t.Errorf("api: key %s account %s", api.KeyType, api.Account)
	}
	if api.Deploy == nil || api.Deploy.Dir != "/etc/certd/live" || api.Deploy.HookTimeout.D().Seconds() != 60 {
		t.Errorf("api: deploy defaults not applied: %+v", api.Deploy)
	}
	if api.DCVFor("api.example.org").Provider != "primary" {
		t.Errorf("api: dcv default not applied")
	}
	www := byName["www"]
	if www.DCVFor("www.example.com").Method != config.MethodHTTP || www.DCVFor("example.com").Method != config.MethodDNS {
		t.Errorf("www: per-domain dcv wrong")
	}
	if www.Deploy.Verify.ServerName != "www.example.com" {
		t.Errorf("www: verify server name %q", www.Deploy.Verify.ServerName)
	}
	wc := byName["wildcard"]
	if wc.Renew.Before.D().Hours() != 30*24 || wc.DCV.Delegate != "_acme-challenge.example-validation.org" {
		t.Errorf("wildcard: renew %v delegate %q", wc.Renew.Before, wc.DCV.Delegate)
	}
	if ac, ok := cfg.Accounts["atlas"].Settings.(*atlas.Config); !ok {
		t.Errorf("atlas account decoded into %T", cfg.Accounts["atlas"].Settings)
	} else if !ac.FetchIssuer {
		t.Errorf("atlas fetch_issuer defaults to false, want true")
	}
}

// opts2 adds every account type the example uses.
func opts2() config.Options { return opts() }

func TestEveryErrorReportedAtOnce(t *testing.T) {
	data := `
schedule: "bad"
log: {level: loud, format: xml}
metrics: {listen: nope}
accounts:
  a: {type: globalsign-atlas, api_key: env:K, api_secret: env:S, client_cert: /c, client_key: env:C, colour: red}
certificates:
  - name: x
    domains: ["bad domain", "*.example.com"]
    account: missing
    key_type: dsa
    dcv: {method: http, target: nowhere}
    deploy: {dir: rel, key_mode: "0666"}
`
	_, err := config.Parse("inline.yaml", []byte(data), opts())
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want config.Errors, got %v", err)
	}
	wantPaths := []string{"schedule", "log.level", "log.format", "metrics.listen", "accounts.a.colour",
		"certificates[0].domains[0]", "certificates[0].domains[1]", "certificates[0].account", "certificates[0].key_type",
		"certificates[0].dcv.target", "certificates[0].deploy.dir", "certificates[0].deploy.key_mode"}
	got := map[string]bool{}
	for _, e := range errs {
		got[e.Pos.Path] = true
	}
	for _, p := range wantPaths {
		if !got[p] {
			t.Errorf("no error for %s", p)
		}
	}
	// Sorted by line.
	for i := 1; i < len(errs); i++ {
		if errs[i].Pos.Line < errs[i-1].Pos.Line {
			t.Errorf("errors not sorted by line: %v", err)
		}
	}
}

func TestConfDirMergesFragments(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "certd.yaml"), `
accounts:
  le: {type: acme, directory: letsencrypt}
defaults:
  account: le
  dcv: {method: dns, provider: zone}
  deploy: {dir: /srv/tls}
`, 0o644)
	write(t, filepath.Join(dir, "conf.d", "10-dns.yaml"), `
dns:
  zone: {type: rfc2136, server: "127.0.0.1:5353", key_name: k, key: env:TSIG}
`, 0o644)
	write(t, filepath.Join(dir, "conf.d", "20-web.yml"), `
certificates:
  - name: web
    domains: [Bücher.Example.]
`, 0o644)
	write(t, filepath.Join(dir, "conf.d", "README.txt"), "not yaml: [", 0o644)
	cfg, err := config.Load(filepath.Join(dir, "certd.yaml"), opts())
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Files) != 3 {
		t.Errorf("files %v", cfg.Files)
	}
	if len(cfg.Certificates) != 1 || cfg.Certificates[0].Domains[0] != "xn--bcher-kva.example" {
		t.Fatalf("certificates: %+v", cfg.Certificates)
	}
	if cfg.Certificates[0].Pos.File != filepath.Join(dir, "conf.d", "20-web.yml") {
		t.Errorf("certificate position %v", cfg.Certificates[0].Pos)
	}
	if cfg.Store.SQLite != config.DefaultSQLitePath || cfg.Schedule != config.DefaultSchedule {
		t.Errorf("defaults: %+v %q", cfg.Store, cfg.Schedule)
	}
}

func write(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "open"), "x", 0o644)
	write(t, filepath.Join(dir, "group"), "x", 0o640)
	write(t, filepath.Join(dir, "private"), "tsig-key-value\n", 0o600)
	cases := []struct {
		ref, wantErr string
	}{
		{"file:open", "readable by group or others (mode 0644)"},
		{"file:group", "readable by group or others (mode 0640)"},
		{"file:missing", "does not exist"},
		{"file:private", ""},
		{filepath.Join(dir, "private"), ""},
	}
	for _, c := range cases {
		t.Run(c.ref, func(t *testing.T) {
			data := fmt.Sprintf("dns:\n  z:\n    type: rfc2136\n    server: 127.0.0.1:53\n    key_name: k\n    key: %s\n", c.ref)
			cfg, err := config.Parse(filepath.Join(dir, "certd.yaml"), []byte(data), opts())
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				s := cfg.DNS["z"].Settings.(*providers.RFC2136Config)
				v, err := s.Key.Resolve()
				if err != nil || v.Reveal() != "tsig-key-value" {
					t.Fatalf("resolve: %q %v", v.Reveal(), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "certd.yaml:6:") {
				t.Fatalf("want error at certd.yaml:6 containing %q, got %v", c.wantErr, err)
			}
		})
	}
}

func TestSecretResolveEnvAndCredential(t *testing.T) {
	credDir := t.TempDir()
	write(t, filepath.Join(credDir, "api"), "cred-value\n", 0o600)
	t.Setenv("CREDENTIALS_DIRECTORY", credDir)
	t.Setenv("CERTD_TEST_SECRET", "env-value")
	data := "dns:\n  a: {type: cloudflare, api_token: env:CERTD_TEST_SECRET}\n  b: {type: cloudflare, api_token: credential:api}\n  c: {type: cloudflare, api_token: env:CERTD_UNSET_VAR}\n"
	cfg, err := config.Parse("certd.yaml", []byte(data), opts())
	if err != nil {
		t.Fatal(err)
	}
	get := func(n string) (config.SecretValue, error) {
		return cfg.DNS[n].Settings.(*providers.CloudflareConfig).APIToken.Resolve()
	}
	if v, err := get("a"); err != nil || v.Reveal() != "env-value" {
		t.Errorf("env: %q %v", v.Reveal(), err)
	}
	if v, err := get("b"); err != nil || v.Reveal() != "cred-value" {
		t.Errorf("credential: %q %v", v.Reveal(), err)
	}
	_, err = get("c")
	if err == nil || !strings.Contains(err.Error(), "CERTD_UNSET_VAR is not set") || !strings.Contains(err.Error(), "certd.yaml:4:") {
		t.Errorf("unset env: %v", err)
	}
}

func TestSecretValueIsRedactedEverywhere(t *testing.T) {
	const canary = "CANARY-8f2d1c"
	v := config.NewSecretValue(canary)
	holder := struct {
		Token config.SecretValue
	}{v}
	var out []string
	for _, f := range []string{"%v", "%s", "%+v", "%#v", "%q", "%x"} {
		out = append(out, fmt.Sprintf(f, v), fmt.Sprintf(f, holder))
	}
	j, _ := json.Marshal(holder)
	out = append(out, string(j), fmt.Sprint(errors.New("wrapped: "+fmt.Sprint(v))))
	var buf bytes.Buffer
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zap.DebugLevel))
	log.Info("x", zap.Any("secret", v), zap.Any("holder", holder), zap.Stringer("s", v))
	out = append(out, buf.String())
	for _, s := range out {
		if strings.Contains(s, canary) {
			t.Errorf("secret leaked: %s", s)
		}
	}
	if v.Reveal() != canary {
		t.Error("Reveal must return the value")
	}
}

func TestInlineSecretIsNotEchoed(t *testing.T) {
	data := "dns:\n  a: {type: cloudflare, api_token: CANARY-inline-token}\n"
	_, err := config.Parse("certd.yaml", []byte(data), opts())
	if err == nil || strings.Contains(err.Error(), "CANARY") {
		t.Fatalf("inline secret must be refused without echoing it: %v", err)
	}
}

func TestNormalizeDomain(t *testing.T) {
	cases := []struct{ in, want, err string }{
		{"Example.COM.", "example.com", ""},
		{"*.Example.com", "*.example.com", ""},
		{"bücher.example", "xn--bcher-kva.example", ""},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", ""},
		{"a-b.c-d.example", "a-b.c-d.example", ""},
		{"localhost", "", "not a fully qualified name"},
		{"*.*.example.com", "", "wildcard is allowed only"},
		{"www*.example.com", "", "wildcard is allowed only"},
		{"-bad.example.com", "", "not a valid host name"},
		{"under_score.example.com", "", "not a valid host name"},
		{"10.0.0.1", "", "IP address"},
		{"::1", "", "IP address"},
		{strings.Repeat("a", 64) + ".example.com", "", "not a valid host name"},
		{"", "", "empty"},
	}
	for _, c := range cases {
		got, err := config.NormalizeDomain(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: want error %q, got %q %v", c.in, c.err, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: got %q %v, want %q", c.in, got, err, c.want)
		}
	}
	if n, err := config.NormalizeDNSName("_ACME-challenge.Example.com."); err != nil || n != "_acme-challenge.example.com" {
		t.Errorf("NormalizeDNSName: %q %v", n, err)
	}
}

func TestParseDuration(t *testing.T) {
	cases := []struct {
		in   string
		want string
		ok   bool
	}{
		{"30d", "720h0m0s", true},
		{"1d12h", "36h0m0s", true},
		{"90m", "1h30m0s", true},
		{"1.5h", "1h30m0s", true},
		{"0", "0s", true},
		{"-1h", "", false},
		{"5 minutes", "", false},
		{"d", "", false},
		{"12", "", false},
		{"", "", false},
	}
	for _, c := range cases {
		got, err := config.ParseDuration(c.in)
		if (err == nil) != c.ok || (c.ok && got.String() != c.want) {
			t.Errorf("%q: got %v %v", c.in, got, err)
		}
	}
}

func TestFileModeForms(t *testing.T) {
	for _, form := range []string{`"0640"`, `0640`, `640`, `"0o640"`} {
		data := "defaults:\n  deploy: {dir: /srv, group: root, key_mode: " + form + "}\n"
		if _, err := config.Parse("c.yaml", []byte(data), opts()); err != nil {
			t.Errorf("%s: %v", form, err)
		}
	}
	if _, err := config.Parse("c.yaml", []byte("defaults:\n  deploy: {dir: /srv, cert_mode: \"0999\"}\n"), opts()); err == nil {
		t.Error("0999 accepted")
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/bad/*.yaml")
	seeds = append(seeds, "../config.example.yaml")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("certificates: [{name: a, domains: [a.example], account: x}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse("fuzz.yaml", data, opts())
		if err != nil {
			var errs config.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error is not a non-empty config.Errors: %T %v", err, err)
			}
			for _, e := range errs {
				if e.Pos.File != "fuzz.yaml" {
					t.Fatalf("error without its file: %v", e)
				}
			}
			return
		}
		names := map[string]bool{}
		for _, c := range cfg.Certificates {
			if names[c.Name] {
				t.Fatalf("duplicate name %q accepted", c.Name)
			}
			names[c.Name] = true
			for _, d := range c.Domains {
				if n, err := config.NormalizeDomain(d); err != nil || n != d {
					t.Fatalf("domain %q accepted but not normalised (%q, %v)", d, n, err)
				}
			}
			if c.Deploy == nil || c.DCV == nil && len(c.DomainDCV) == 0 {
				t.Fatalf("certificate %q accepted without deploy or dcv", c.Name)
			}
		}
	})
}

func TestAccountLimitsApplyToEveryType(t *testing.T) {
	data := "accounts:\n  le: {type: acme, directory: letsencrypt, max_concurrent: 2, rate_limit: 0.5}\n" +
		"  at: {type: globalsign-atlas, api_key: env:K, api_secret: env:S, client_cert: /c, client_key: env:C, rate_limit: 10, burst: 5}\n"
	cfg, err := config.Parse("c.yaml", []byte(data), opts())
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.Accounts["le"].Limits; l.MaxConcurrent != 2 || l.RateLimit != 0.5 || l.Burst != 1 {
		t.Errorf("acme limits: %+v", l)
	}
	if l := cfg.Accounts["at"].Limits; l.MaxConcurrent != 4 || l.RateLimit != 10 || l.Burst != 5 {
		t.Errorf("atlas limits: %+v", l)
	}
}

// request_timeout bounds one exchange with a CA that accepts a request
// and never answers; it is an account key of every type, within 1s–10m.
func TestAccountRequestTimeout(t *testing.T) {
	at := "  at: {type: globalsign-atlas, api_key: env:K, api_secret: env:S, client_cert: /c, client_key: env:C, request_timeout: %s}\n"
	cfg, err := config.Parse("c.yaml", []byte("accounts:\n"+fmt.Sprintf(at, "5s")), opts())
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Accounts["at"].Limits.RequestTimeout.D(); got != 5*time.Second {
		t.Errorf("request_timeout: %s, want 5s", got)
	}
	for _, bad := range []string{"0s", "500ms", "11m"} {
		_, err := config.Parse("c.yaml", []byte("accounts:\n"+fmt.Sprintf(at, bad)), opts())
		if err == nil || !strings.Contains(err.Error(), "c.yaml:2") || !strings.Contains(err.Error(), "request_timeout") {
			t.Errorf("request_timeout %s: %v, want an error at c.yaml:2 naming request_timeout", bad, err)
		}
	}
}
