package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// unitFile is a systemd unit: section -> key -> values in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: not a unit line: %q", path, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s= set %d times", section, key, len(v))
	}
	return v[0]
}

// installed runs `make install` from a copy of the tree's install inputs
// into a DESTDIR, with non-default PREFIX and CONFDIR, and returns DESTDIR.
func installed(t *testing.T, prefix, confdir string) string {
	t.Helper()
	dest := t.TempDir()
	// A stand-in binary (make install runs it for the man page).
	makeInstall(t, "#!/bin/sh\necho '.TH CERTD 1'\n", dest, "PREFIX="+prefix, "CONFDIR="+confdir, "UNITDIR=/lib/systemd/system")
	return dest
}

// makeInstall runs `make install DESTDIR=dest` with the given variables
// from a copy of the tree's install inputs, with bin (the contents of
// bin/certd) as the binary it installs.
func makeInstall(t *testing.T, bin, dest string, vars ...string) {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	src := t.TempDir()
	for _, f := range []string{"Makefile", "config.example.yaml", "README.md", "systemd/certd.service", "systemd/certd-once.service", "systemd/certd-once.timer"} {
		b, err := os.ReadFile(filepath.Join("..", "..", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(src, f), string(b))
	}
	if err := os.MkdirAll(filepath.Join(src, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "bin", "certd"), []byte(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	// -o build: the binary is not built again (it is there).
	cmd := exec.Command("make", append([]string{"-o", "build", "install", "DESTDIR=" + dest}, vars...)...)
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
}

// TestSystemdUnits checks the shipped units: what they need exists after
// `make install` (for a non-default PREFIX and CONFDIR too), a bad
// configuration or a held store does not restart-loop, the one-shot unit
// is as hardened as the daemon's, the example's nginx check can work under
// ProtectSystem=strict, and systemd's own tools accept the units when
// they are installed here (verify; security at or below 1.8).
func TestSystemdUnits(t *testing.T) {
	const prefix, confdir = "/opt/certd", "/srv/certd-conf"
	dest := installed(t, prefix, confdir)
	unitDir := filepath.Join(dest, "lib", "systemd", "system")
	svc := parseUnit(t, filepath.Join(unitDir, "certd.service"))
	once := parseUnit(t, filepath.Join(unitDir, "certd-once.service"))
	timer := parseUnit(t, filepath.Join(unitDir, "certd-once.timer"))
	if b, err := os.ReadFile(filepath.Join(dest, prefix, "share", "man", "man1", "certd.1")); err != nil || !strings.HasPrefix(string(b), ".TH CERTD 1") {
		t.Errorf("man page not installed under PREFIX: %v %q", err, b)
	}

	// No restart loop for exit codes that a restart cannot fix.
	codes := strings.Fields(svc.one(t, "Service", "RestartPreventExitStatus"))
	for _, c := range []int{exitUsage, exitStore} {
		if !slices.Contains(codes, strconv.Itoa(c)) {
			t.Errorf("RestartPreventExitStatus=%v lacks %d", codes, c)
		}
	}
	if svc.one(t, "Service", "Restart") != "on-failure" {
		t.Error("certd.service is not restarted on failure")
	}
	for name, u := range map[string]unitFile{"certd.service": svc, "certd-once.service": once, "certd-once.timer": timer} {
		// Documentation= names the README where it was installed.
		doc := u.one(t, "Unit", "Documentation")
		path, ok := strings.CutPrefix(doc, "file://")
		if !ok || !strings.HasPrefix(path, prefix+"/") {
			t.Errorf("%s: Documentation=%s is not under PREFIX %s", name, doc, prefix)
		} else if _, err := os.Stat(filepath.Join(dest, path)); err != nil {
			t.Errorf("%s: Documentation=%s: %v", name, doc, err)
		}
	}
	for name, u := range map[string]unitFile{"certd.service": svc, "certd-once.service": once} {
		keys := []string{"ExecStart"}
		if name == "certd-once.service" {
			keys = append(keys, "ExecStartPre") // the daemon's unit has none: see its comment
		}
		if len(u["Service"]["ConfigurationDirectory"]) > 0 {
			t.Errorf("%s: ConfigurationDirectory= makes the configuration writable to certd", name)
		}
		for _, k := range keys {
			v := u.one(t, "Service", k)
			if !strings.HasPrefix(v, prefix+"/bin/certd ") || !strings.Contains(v, "-config "+confdir+"/certd.yaml") {
				t.Errorf("%s: %s=%s does not run the installed certd on the installed configuration", name, k, v)
			}
		}
		// Every ReadWritePaths= exists after make install, or is optional.
		for _, line := range u["Service"]["ReadWritePaths"] {
			for _, p := range strings.Fields(line) {
				if strings.HasPrefix(p, "-") {
					p = p[1:]
				}
				if fi, err := os.Stat(filepath.Join(dest, p)); err != nil || !fi.IsDir() {
					t.Errorf("%s: ReadWritePaths=%s is not created by make install", name, p)
				}
			}
		}
	}
	if !strings.Contains(once.one(t, "Service", "ExecStart"), " run -once ") || once.one(t, "Service", "Type") != "oneshot" {
		t.Error("certd-once.service does not run certd run -once as a oneshot")
	}
	if len(once["Install"]) != 0 || timer.one(t, "Install", "WantedBy") != "timers.target" || timer.one(t, "Timer", "OnCalendar") == "" {
		t.Error("the timer, not the one-shot service, is what is enabled")
	}
	// The one-shot unit keeps every hardening directive of the daemon's.
	for k, v := range svc["Service"] {
		if strings.HasPrefix(k, "Exec") || slices.Contains([]string{"Type", "NotifyAccess", "Restart", "RestartSec", "RestartPreventExitStatus", "WatchdogSec"}, k) {
			continue
		}
		if !slices.Equal(once["Service"][k], v) {
			t.Errorf("certd-once.service: %s=%v, certd.service has %v", k, once["Service"][k], v)
		}
	}

	// The example's nginx check cannot be a bare `nginx -t` under
	// ProtectSystem=strict (it writes /run/nginx.pid and its logs); it is
	// run outside the sandbox by systemd-run, and the reload goes to
	// systemd too.
	if svc.one(t, "Service", "ProtectSystem") == "strict" {
		cfg, err := loadConfig("../../config.example.yaml")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cfg.Certificates {
			check := c.Deploy.Check
			if len(check) > 0 && check[0] == "nginx" {
				t.Errorf("%s: check %v runs nginx inside certd's sandbox", c.Name, check)
			}
			if len(check) > 0 && (check[0] != "systemd-run" || !slices.Contains(check, "--wait") || !slices.Contains(check, "--pipe")) {
				t.Errorf("%s: check %v: not run by systemd-run --wait --pipe (exit status and output back to certd)", c.Name, check)
			}
			for _, r := range c.Deploy.Reload {
				if r[0] != "systemctl" {
					t.Errorf("%s: reload %v does not go through systemd", c.Name, r)
				}
			}
		}
	}

	// systemd's own tools, where they are installed.
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: units checked by the parser only")
		return
	}
	dir := t.TempDir()
	for _, f := range []string{"certd.service", "certd-once.service", "certd-once.timer"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "systemd", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, f), strings.ReplaceAll(string(b), "/usr/local/bin/certd", binary(t)))
	}
	out, err := exec.Command(analyze, "verify", "--man=no", filepath.Join(dir, "certd.service"), filepath.Join(dir, "certd-once.service"),
		filepath.Join(dir, "certd-once.timer")).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	exposure := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d)`)
	for _, f := range []string{"certd.service", "certd-once.service"} {
		out, _ := exec.Command(analyze, "security", "--offline=true", filepath.Join(dir, f)).CombinedOutput()
		m := exposure.FindSubmatch(out)
		if m == nil {
			t.Errorf("systemd-analyze security %s: no rating\n%s", f, out)
			continue
		}
		if v, _ := strconv.ParseFloat(string(m[1]), 64); v > 1.8 {
			t.Errorf("systemd-analyze security %s: exposure %s, above 1.8", f, m[1])
		}
	}
}
