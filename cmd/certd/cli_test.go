package main

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// cliConfig writes a configuration with one certificate, www, whose store
// and deploy directory are in a temporary folder, and returns its path.
func cliConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("TSIG", "c2VjcmV0")
	cfg := strings.ReplaceAll(goodConfig, "/srv/tls", filepath.Join(dir, "live"))
	path := filepath.Join(dir, "certd.yaml")
	writeFile(t, path, cfg)
	return path
}

// TestFlagsInBothPositions runs every subcommand with its flags before and
// after its arguments: both mean the same. Each case is built so that a
// flag not read (left as an argument) changes the exit code or the output.
func TestFlagsInBothPositions(t *testing.T) {
	cfg := cliConfig(t)
	t.Setenv(configEnv, "")
	missing := filepath.Join(t.TempDir(), "no-such.yaml")
	empty := t.TempDir()
	cases := []struct {
		name   string
		before []string // flags first
		after  []string // the same, arguments first
		code   int
		want   string // in stdout+stderr
	}{
		{"run", []string{"run", "-config", missing, "-once"}, []string{"run", "-once", "-config", missing}, exitUsage, missing},
		{"check-config", []string{"check-config", "-skip-credentials", cfg}, []string{"check-config", cfg, "-skip-credentials"}, exitOK, "ok (1 files, 1 certificates"},
		{"check-config -config", []string{"check-config", "-config", cfg}, []string{"check-config", "-skip-credentials", "-config", cfg}, exitOK, "ok ("},
		{"status", []string{"status", "-config", cfg, "-json", "-no-daemon", "www"}, []string{"status", "www", "-json", "-no-daemon", "-config", cfg}, exitOK, `"name": "www"`},
		{"events", []string{"events", "-config", cfg, "-json", "-n", "5", "-since", "1h", "www"}, []string{"events", "www", "-n", "5", "-since", "1h", "-json", "-config", cfg}, exitOK, ""},
		{"renew", []string{"renew", "-config", cfg, "-force", "-dry-run", "nosuch"}, []string{"renew", "nosuch", "-dry-run", "-force", "-config", cfg}, exitUsage, "nosuch is not in the configuration"},
		{"rollback", []string{"rollback", "-config", cfg, "nosuch"}, []string{"rollback", "nosuch", "-config", cfg}, exitUsage, "nosuch is not in the configuration"},
		{"revoke", []string{"revoke", "-config", cfg, "-reason", "keyCompromise", "www"}, []string{"revoke", "www", "-reason", "keyCompromise", "-config", cfg}, exitUsage, "no deployed version"},
		{"hooks test", []string{"hooks", "test", "-config", cfg, "nosuch"}, []string{"hooks", "test", "nosuch", "-config", cfg}, exitUsage, "nosuch is not in the configuration"},
		{"import", []string{"import", "certbot", "-config", cfg, "-dry-run", empty}, []string{"import", "certbot", empty, "-dry-run", "-config", cfg}, exitUsage, "certbot's configuration folder"},
		{"orders", []string{"orders", "list", "-config", cfg}, []string{"orders", "list", "-config", cfg}, exitOK, "CERTIFICATE"},
		{"claims", []string{"claims", "list", "-config", cfg, "-json"}, []string{"claims", "list", "-json", "-config", cfg}, exitOK, ""},
		{"demo", []string{"demo", "-dir", empty, "-lifetime", "1s"}, []string{"demo", "-lifetime", "1s", "-dir", empty}, exitUsage, "-lifetime must be at least 1m"},
		{"events --", []string{"events", "-config", cfg, "--", "-n"}, []string{"events", "-config", cfg, "--", "-n"}, exitOK, ""},
	}
	for _, c := range cases {
		for i, args := range [][]string{c.before, c.after} {
			code, out, errs := inProcess(args...)
			if code != c.code || !strings.Contains(out+errs, c.want) {
				t.Errorf("%s (%s): exit %d, want %d with %q\n%s%s", c.name, []string{"flags first", "arguments first"}[i], code, c.code, c.want, out, errs)
			}
		}
	}
	// status -json after the name prints JSON, not a table.
	_, out, _ := inProcess("status", "www", "-no-daemon", "-json", "-config", cfg)
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Errorf("status www -json: not JSON: %v\n%s", err, out)
	}
}

func TestParseFlagsKeepsArgumentsInOrder(t *testing.T) {
	for _, c := range []struct {
		args []string
		pos  []string
		v    bool
	}{
		{[]string{"a", "-v", "b"}, []string{"a", "b"}, true},
		{[]string{"-v", "a", "b"}, []string{"a", "b"}, true},
		{[]string{"a", "b", "-v"}, []string{"a", "b"}, true},
		{[]string{"a", "--", "-v", "b"}, []string{"a", "-v", "b"}, false},
		{[]string{}, nil, false},
	} {
		fs := newFlags("x", io.Discard)
		v := fs.Bool("v", false, "")
		if code, ok := parseFlags(fs, c.args); !ok {
			t.Fatalf("%v: exit %d", c.args, code)
		}
		if got := fs.Args(); !slices.Equal(got, c.pos) && !(len(got) == 0 && len(c.pos) == 0) || *v != c.v {
			t.Errorf("%v: args %q v=%v, want %q v=%v", c.args, fs.Args(), *v, c.pos, c.v)
		}
	}
}

func TestConfigFromTheEnvironment(t *testing.T) {
	cfg := cliConfig(t)
	t.Setenv(configEnv, cfg)
	for _, args := range [][]string{{"status", "-no-daemon", "-json"}, {"check-config"}, {"events"}, {"orders", "list"}, {"status", "www", "-no-daemon"}} {
		if code, out, errs := inProcess(args...); code != exitOK {
			t.Errorf("%v with %s=%s: exit %d\n%s%s", args, configEnv, cfg, code, out, errs)
		}
	}
	if _, out, _ := inProcess("check-config"); !strings.Contains(out, cfg) {
		t.Errorf("check-config did not read %s: %s", cfg, out)
	}
	// An explicit -config (or check-config's FILE) wins over the variable.
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	for _, args := range [][]string{{"status", "-config", missing}, {"check-config", missing}, {"check-config", "-config", missing}} {
		if code, out, errs := inProcess(args...); code != exitUsage || !strings.Contains(out+errs, missing) {
			t.Errorf("%v: exit %d, want %d naming %s\n%s%s", args, code, exitUsage, missing, out, errs)
		}
	}
}

// TestHelpNeedsNoConfiguration: -h on every command and subcommand exits
// 0 without reading the configuration (which does not exist here).
func TestHelpNeedsNoConfiguration(t *testing.T) {
	t.Setenv(configEnv, filepath.Join(t.TempDir(), "missing.yaml"))
	for _, args := range [][]string{
		{"run", "-h"}, {"check-config", "-h"}, {"status", "-h"}, {"events", "-h"}, {"renew", "-h"}, {"renew", "www", "-h"},
		{"rollback", "-h"}, {"revoke", "-h"}, {"hooks", "-h"}, {"hooks", "test", "-h"}, {"hooks", "test", "www", "--help"},
		{"import", "-h"}, {"import", "certbot", "-h"}, {"claims", "-h"}, {"claims", "list", "-h"}, {"orders", "-h"},
		{"orders", "list", "-h"}, {"demo", "-h"}, {"sim", "-h"}, {"sim", "atlas", "-h"}, {"completion", "-h"}, {"help"}, {"-h"},
	} {
		code, out, errs := inProcess(args...)
		if code != exitOK || strings.Contains(out+errs, "refused") || strings.Contains(out+errs, "missing.yaml") {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, errs)
		}
		if strings.TrimSpace(out+errs) == "" {
			t.Errorf("%v: no help printed", args)
		}
	}
}

func TestExitCodes(t *testing.T) {
	cfg := cliConfig(t)
	t.Setenv(configEnv, cfg)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, "schedule: 5\nnonsense: true\n")
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"frobnicate"}, exitUsage},
		{[]string{}, exitUsage},
		{[]string{"status", "-nosuchflag"}, exitUsage},
		{[]string{"status", "www", "extra"}, exitUsage},
		{[]string{"status", "nosuch"}, exitUsage},
		{[]string{"renew", "nosuch"}, exitUsage},
		{[]string{"renew", "-dry-run", "nosuch"}, exitUsage},
		{[]string{"renew"}, exitUsage},
		{[]string{"rollback", "nosuch"}, exitUsage},
		{[]string{"hooks", "test", "nosuch"}, exitUsage},
		{[]string{"hooks", "frob"}, exitUsage},
		{[]string{"revoke", "-reason", "bored", "www"}, exitUsage},
		{[]string{"import", "acme.sh"}, exitUsage},
		{[]string{"completion", "tcsh"}, exitUsage},
		{[]string{"completion"}, exitUsage},
		{[]string{"status", "-config", bad}, exitUsage},
		{[]string{"check-config", "-config", bad}, exitUsage},
		{[]string{"run", "-config", bad, "-once"}, exitUsage},
		{[]string{"events", "-since", "yesterday"}, exitUsage},
		{[]string{"renew", "www"}, exitFailure}, // configured, never started: not in the store yet
		{[]string{"version"}, exitOK},
		{[]string{"completion", "bash"}, exitOK},
	} {
		if code, out, errs := inProcess(c.args...); code != c.code {
			t.Errorf("%v: exit %d, want %d\n%s%s", c.args, code, c.code, out, errs)
		}
	}
}

// TestCompletionScripts: each shell's script parses (bash -n, zsh -n and
// fish -n where installed) and offers every command; the flags it offers
// are those each command's -h lists, so it cannot drift from them.
func TestCompletionScripts(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		code, out, errs := inProcess("completion", sh)
		if code != exitOK {
			t.Fatalf("completion %s: exit %d: %s", sh, code, errs)
		}
		for _, c := range cliCommands {
			if !strings.Contains(out, c.name) {
				t.Errorf("%s completion lacks %s", sh, c.name)
			}
		}
		if !strings.Contains(out, "-dry-run") && !strings.Contains(out, "-o dry-run") || !strings.Contains(out, "CERTD_CONFIG") {
			t.Errorf("%s completion lacks flags or certificate names", sh)
		}
		bin, err := exec.LookPath(sh)
		if err != nil {
			if sh == "bash" {
				t.Fatal("bash not found")
			}
			t.Logf("%s not installed: its script is not parsed", sh)
			continue
		}
		f := filepath.Join(t.TempDir(), "certd."+sh)
		writeFile(t, f, out)
		if b, err := exec.Command(bin, "-n", f).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s\n%s", sh, err, b, out)
		}
	}
	// The bash completion completes: commands, a command's flags, the
	// certificate names of $CERTD_CONFIG.
	cfg := cliConfig(t)
	_, script, _ := inProcess("completion", "bash")
	f := filepath.Join(t.TempDir(), "certd.bash")
	writeFile(t, f, script)
	complete := func(words ...string) []string {
		line := "source " + f + "; COMP_WORDS=(certd " + strings.Join(words, " ") + "); COMP_CWORD=" +
			strconv.Itoa(len(words)) + "; _certd; printf '%s\\n' \"${COMPREPLY[@]}\""
		cmd := exec.Command("bash", "-c", line)
		cmd.Env = append(os.Environ(), configEnv+"="+cfg)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("completing %v: %v\n%s", words, err, b)
		}
		return strings.Fields(string(b))
	}
	if got := complete("ren"); !slices.Equal(got, []string{"renew"}) {
		t.Errorf("certd ren<TAB>: %v", got)
	}
	if got := complete("renew", "-d"); !slices.Equal(got, []string{"-dry-run"}) {
		t.Errorf("certd renew -d<TAB>: %v", got)
	}
	if got := complete("renew", "w"); !slices.Equal(got, []string{"www"}) {
		t.Errorf("certd renew w<TAB>: %v", got)
	}

	flagLine := regexp.MustCompile(`(?m)^  -([a-z-]+)`)
	for _, c := range cliCommands {
		if c.name == "sim" || c.name == "completion" || c.name == "version" || c.name == "help" {
			continue
		}
		args := []string{c.name}
		if len(c.subs) > 0 {
			args = append(args, c.subs[0])
		}
		_, out, errs := inProcess(append(args, "-h")...)
		var listed []string
		for _, m := range flagLine.FindAllStringSubmatch(out+errs, -1) {
			listed = append(listed, m[1])
		}
		want := slices.Clone(c.flags)
		sort.Strings(want)
		sort.Strings(listed)
		if !slices.Equal(listed, want) {
			t.Errorf("%v -h lists %v; the completion offers %v", args, listed, want)
		}
	}
}
