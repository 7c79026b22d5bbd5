package config_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certd/certd/config"
)

// Load refuses a configuration without any certificate unless it says
// allow_empty: true: an empty or truncated file would otherwise retire the
// whole fleet.
func TestEmptyConfigurationIsRefusedUnlessAllowed(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		line       int
	}{
		{"zero bytes", "", 1},
		{"comments only", "# nothing here\n", 1},
		{"empty list", "schedule: \"@every 1h\"\ncertificates: []\n", 2},
		{"settings only", "log: {level: info}\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "certd.yaml")
			write(t, path, tc.data, 0o644)
			_, err := config.Load(path, opts())
			if err == nil || !strings.Contains(err.Error(), "no certificate is configured") || !strings.Contains(err.Error(), "allow_empty: true") {
				t.Fatalf("want the empty configuration refused, got %v", err)
			}
			if want := fmt.Sprintf("%s:%d:", path, tc.line); !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %s", err, want)
			}
			write(t, path, tc.data+"\nallow_empty: true\n", 0o644)
			if _, err := config.Load(path, opts()); err != nil {
				t.Errorf("with allow_empty: true: %v", err)
			}
		})
	}
	// A conf.d fragment may not say it for the main file.
	dir := t.TempDir()
	write(t, filepath.Join(dir, "certd.yaml"), "schedule: \"@every 1h\"\n", 0o644)
	write(t, filepath.Join(dir, "conf.d", "a.yaml"), "allow_empty: true\n", 0o644)
	if _, err := config.Load(filepath.Join(dir, "certd.yaml"), opts()); err == nil || !strings.Contains(err.Error(), "only the main configuration file may set allow_empty") {
		t.Errorf("allow_empty in conf.d: %v", err)
	}
	// Parse, which tests and tools use to decode single blocks, accepts it.
	if _, err := config.Parse("certd.yaml", nil, opts()); err != nil {
		t.Errorf("Parse of an empty configuration: %v", err)
	}
}

// A certificate's own deploy block is merged with defaults.deploy key by
// key: setting only a directory keeps the default hooks.
func TestCertificateDeployMergesWithDefaults(t *testing.T) {
	data := `
pending_grace: 2h
accounts:
  le: {type: acme, directory: letsencrypt}
dns:
  zone: {type: rfc2136, server: "127.0.0.1:5353", key_name: k, key: env:TSIG}
defaults:
  account: le
  dcv: {method: dns, provider: zone}
  deploy:
    dir: /srv/tls
    keep: 5
    check: [nginx, -t]
    reload: [[systemctl, reload, nginx]]
certificates:
  - name: inherits
    domains: [a.example.com]
  - name: own-dir
    domains: [b.example.com]
    deploy: {dir: /srv/other, combined: true}
  - name: no-reload
    domains: [c.example.com]
    deploy: {reload: [], check: []}
  - name: own-reload
    domains: [d.example.com]
    deploy:
      reload: [[systemctl, reload, haproxy]]
`
	cfg, err := config.Parse("certd.yaml", []byte(data), opts())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PendingGrace.D() != 2*time.Hour {
		t.Errorf("pending_grace %v", cfg.PendingGrace)
	}
	by := map[string]*config.Deploy{}
	for _, c := range cfg.Certificates {
		by[c.Name] = c.Deploy
	}
	nginx := []config.Argv{{"systemctl", "reload", "nginx"}}
	check := config.Argv{"nginx", "-t"}
	for name, want := range map[string]struct {
		dir      string
		combined bool
		keep     int
		check    config.Argv
		reload   []config.Argv
	}{
		"inherits":   {"/srv/tls", false, 5, check, nginx},
		"own-dir":    {"/srv/other", true, 5, check, nginx},
		"no-reload":  {"/srv/tls", false, 5, nil, nil},
		"own-reload": {"/srv/tls", false, 5, check, []config.Argv{{"systemctl", "reload", "haproxy"}}},
	} {
		d := by[name]
		if d.Dir != want.dir || d.Combined != want.combined || d.Keep != want.keep || !slices.Equal(d.Check, want.check) ||
			!slices.EqualFunc(d.Reload, want.reload, func(a, b config.Argv) bool { return slices.Equal(a, b) }) {
			t.Errorf("%s: deploy %+v, want %+v", name, *d, want)
		}
	}
	// A key the merged block gets wrong is reported where it was written.
	bad := strings.Replace(data, "deploy: {dir: /srv/other, combined: true}", "deploy: {key_mode: \"0640\"}", 1)
	_, err = config.Parse("certd.yaml", []byte(bad), opts())
	if err == nil || !strings.Contains(err.Error(), "certd.yaml:20:") || !strings.Contains(err.Error(), "certificates[1].deploy.key_mode") {
		t.Errorf("key_mode without a group: %v", err)
	}
	// An empty command inside reload is refused.
	bad = strings.Replace(data, "reload: [], check: []", "reload: [[]]", 1)
	if _, err = config.Parse("certd.yaml", []byte(bad), opts()); err == nil || !strings.Contains(err.Error(), "certificates[2].deploy.reload[0]") {
		t.Errorf("reload: [[]]: %v", err)
	}
}

func TestSecretsFindsEveryReference(t *testing.T) {
	data := `
accounts:
  le: {type: acme, directory: letsencrypt, eab: {kid: k, hmac_key: env:EAB}}
  at: {type: globalsign-atlas, api_key: env:K, api_secret: credential:s, client_cert: /c.pem, client_key: env:CK}
notify:
  webhook: {url: env:HOOK}
`
	cfg, err := config.Parse("certd.yaml", []byte(data), opts())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range []*config.Plugin{cfg.Accounts["at"], cfg.Accounts["le"]} {
		for _, s := range config.Secrets(p.Settings) {
			got = append(got, s.String()+"@"+s.Pos().Path)
		}
	}
	for _, s := range config.Secrets(cfg.Notify) {
		got = append(got, s.String()+"@"+s.Pos().Path)
	}
	want := []string{"env:K@accounts.at.api_key", "credential:s@accounts.at.api_secret", "env:CK@accounts.at.client_key",
		"env:EAB@accounts.le.eab.hmac_key", "env:HOOK@notify.webhook.url"}
	if !slices.Equal(got, want) {
		t.Errorf("secrets:\n got %v\nwant %v", got, want)
	}
	if fn, ok := cfg.Accounts["at"].Settings.(config.FileNamer); !ok || fn.Files()["client_cert"] != "/c.pem" {
		t.Errorf("the Atlas block does not name its client certificate file")
	}
}
