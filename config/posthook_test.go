package config_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/certd/certd/config"
)

func TestPostHook(t *testing.T) {
	base := `allow_empty: true
defaults:
  post_hook:
`
	cfg, err := config.Parse("inline.yaml", []byte(base+"    - [systemctl, reload, nginx]\n    - [/usr/local/bin/notify-done]\n"), opts())
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.PostHook) != 2 || !slices.Equal([]string(cfg.PostHook[0]), []string{"systemctl", "reload", "nginx"}) {
		t.Errorf("post_hook: %v", cfg.PostHook)
	}
	for _, c := range []struct{ name, hooks, want string }{
		{"empty command", "    - []\n", "inline.yaml:4:7: defaults.post_hook[0]: a command needs at least the program to run"},
		{"shell string", "    - systemctl reload nginx\n", "inline.yaml:4:7: defaults.post_hook[0]: a command must be a list of arguments"},
	} {
		_, err := config.Parse("inline.yaml", []byte(base+c.hooks), opts())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
