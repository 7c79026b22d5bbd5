package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certd/certd/deploy"
)

// envHook is a hook that appends its environment, one KEY=VALUE a line,
// then a line "--", to file.
func envHook(file string) []string {
	return []string{"/bin/sh", "-c", `env >> "$0"; echo -- >> "$0"`, file}
}

// readEnvs parses what envHook wrote: one map per run.
func readEnvs(t *testing.T, file string) []map[string]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	cur := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "--" {
			out = append(out, cur)
			cur = map[string]string{}
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			cur[k] = v
		}
	}
	return out
}

func TestHookEnvironmentOnDeployRollbackAndTest(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	log := filepath.Join(t.TempDir(), "env.log")
	s := spec(dir)
	s.Combined = true
	s.Check = envHook(log)
	d := &deploy.Deployer{}
	first := ca.bundle(t, 0x10, "www.example.com", "example.com")
	if _, err := d.Deploy(ctx, s, first); err != nil {
		t.Fatal(err)
	}
	second := ca.bundle(t, 0x20, "www.example.com", "example.com")
	res2, err := d.Deploy(ctx, s, second)
	if err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "www")
	envs := readEnvs(t, log)
	if len(envs) != 2 {
		t.Fatalf("%d hook runs, want 2", len(envs))
	}
	if _, ok := envs[0]["CERTD_PREVIOUS_SERIAL"]; ok {
		t.Errorf("first deploy has a previous serial: %v", envs[0])
	}
	want := map[string]string{
		"CERTD_ACTION": "deploy", "CERTD_NAME": "www", "CERTD_DOMAINS": "www.example.com example.com",
		"CERTD_LINEAGE": live, "RENEWED_LINEAGE": live, "RENEWED_DOMAINS": "www.example.com example.com", "CERTD_DIR": dir,
		"CERTD_CERT": filepath.Join(live, "cert.pem"), "CERTD_CHAIN": filepath.Join(live, "chain.pem"),
		"CERTD_FULLCHAIN": filepath.Join(live, "fullchain.pem"), "CERTD_KEY": filepath.Join(live, "privkey.pem"),
		"CERTD_COMBINED": filepath.Join(live, "combined.pem"), "LEGO_CERT_PATH": filepath.Join(live, "fullchain.pem"),
		"LEGO_CERT_KEY_PATH": filepath.Join(live, "privkey.pem"), "LEGO_CERT_DOMAIN": "www.example.com",
		"CERTD_SERIAL": "20", "CERTD_PREVIOUS_SERIAL": "10", "CERTD_VERSION_DIR": filepath.Join(dir, res2.Version),
		"CERTD_NOT_AFTER": second.Leaf.NotAfter.UTC().Format(time.RFC3339), "CERTD_FINGERPRINT": deploy.Fingerprint(second.Leaf),
		"CERTD_PREVIOUS_NOT_AFTER": first.Leaf.NotAfter.UTC().Format(time.RFC3339), "CERTD_PREVIOUS_FINGERPRINT": deploy.Fingerprint(first.Leaf),
	}
	for k, v := range want {
		if envs[1][k] != v {
			t.Errorf("deploy: %s=%q, want %q", k, envs[1][k], v)
		}
	}
	if fi, err := os.Stat(envs[1]["CERTD_VERSION_DIR"]); err != nil || !fi.IsDir() {
		t.Errorf("CERTD_VERSION_DIR is not a directory: %v", err)
	}
	for k := range envs[1] {
		if !strings.HasPrefix(k, "CERTD_") && !strings.HasPrefix(k, "RENEWED_") && !strings.HasPrefix(k, "LEGO_") &&
			k != "PATH" && k != "LANG" && k != "PWD" && k != "SHLVL" && k != "_" {
			t.Errorf("hook saw %s from outside", k)
		}
	}

	// A failed verify rolls back: the reload that follows sees the version
	// live again, and the failed one as the previous.
	rlog := filepath.Join(t.TempDir(), "reload.log")
	s.Check = nil
	s.Reload = [][]string{envHook(rlog)}
	s.Verify = &deploy.Verify{Address: "127.0.0.1:1", ServerName: "www.example.com", Timeout: 200 * time.Millisecond}
	third := ca.bundle(t, 0x30, "www.example.com", "example.com")
	if _, err := d.Deploy(ctx, s, third); err == nil {
		t.Fatal("deploy with a failing verify succeeded")
	}
	renvs := readEnvs(t, rlog)
	if len(renvs) != 2 {
		t.Fatalf("%d reloads, want 2 (deploy, then rollback)", len(renvs))
	}
	if renvs[0]["CERTD_ACTION"] != "deploy" || renvs[0]["CERTD_SERIAL"] != "30" {
		t.Errorf("reload before the rollback: %v", renvs[0])
	}
	if r := renvs[1]; r["CERTD_ACTION"] != "rollback" || r["CERTD_SERIAL"] != "20" || r["CERTD_PREVIOUS_SERIAL"] != "30" ||
		r["CERTD_DOMAINS"] != "example.com www.example.com" && r["CERTD_DOMAINS"] != "www.example.com example.com" || r["CERTD_KEY"] == "" {
		t.Errorf("reload after the rollback: %v", r)
	}

	// An operator's rollback: the full environment too.
	s.Verify = nil
	if err := os.Remove(rlog); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Rollback(ctx, s); err != nil {
		t.Fatal(err)
	}
	renvs = readEnvs(t, rlog)
	if len(renvs) != 1 || renvs[0]["CERTD_ACTION"] != "rollback" || renvs[0]["CERTD_SERIAL"] != "10" || renvs[0]["CERTD_PREVIOUS_SERIAL"] != "20" ||
		renvs[0]["CERTD_LINEAGE"] != live || renvs[0]["CERTD_FULLCHAIN"] == "" {
		t.Errorf("rollback: %v", renvs)
	}

	// hooks test: the live version, nothing switched.
	before, _ := os.Readlink(live)
	tlog := filepath.Join(t.TempDir(), "test.log")
	s.Check = envHook(tlog)
	s.Reload = [][]string{envHook(tlog)}
	res, err := d.TestHooks(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Readlink(live); after != before {
		t.Errorf("hooks test switched the live path: %s -> %s", before, after)
	}
	tenvs := readEnvs(t, tlog)
	if len(res.Hooks) != 2 || len(tenvs) != 2 {
		t.Fatalf("hooks test ran %d hooks (%d logged), want check and reload", len(res.Hooks), len(tenvs))
	}
	for _, e := range tenvs {
		if e["CERTD_ACTION"] != "test" || e["CERTD_SERIAL"] != "10" || e["CERTD_LINEAGE"] != live {
			t.Errorf("hooks test env: %v", e)
		}
	}
	s.Check = []string{"/bin/false"}
	if _, err := d.TestHooks(ctx, s); err == nil || !strings.Contains(err.Error(), "false") {
		t.Errorf("failing check: %v", err)
	}
	var f *deploy.Failure
	_, err = d.TestHooks(ctx, s)
	if !asFailure(err, &f) || f.Step != "check" {
		t.Errorf("failing check: step %v", err)
	}
	if _, err := d.TestHooks(ctx, spec(t.TempDir())); err == nil || !strings.Contains(err.Error(), "nothing deployed") {
		t.Errorf("nothing deployed: %v", err)
	}
}

func asFailure(err error, f **deploy.Failure) bool {
	v, ok := err.(*deploy.Failure)
	*f = v
	return ok
}

func TestHookOutputRedactsConfiguredSecrets(t *testing.T) {
	const canary = "canary-S3cr3t-7f1e"
	cases := []struct {
		name   string
		script string
	}{
		{"plain", `echo "token is ` + canary + `"; echo "again:` + canary + `" >&2`},
		{"cut at the output bound", `head -c 8186 /dev/zero | tr '\0' x; printf '` + canary + `'`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := deploy.RunHookRedacted(ctx, []string{"/bin/sh", "-c", c.script}, nil, 5*time.Second, []string{"ab", canary})
			if run.Err != nil {
				t.Fatal(run.Err)
			}
			for n := 4; n <= len(canary); n++ {
				if strings.Contains(run.Output, canary[:n]) {
					t.Fatalf("output holds %q of the secret: ...%s", canary[:n], run.Output[max(0, len(run.Output)-80):])
				}
			}
			if !strings.Contains(run.Output, "[REDACTED]") {
				t.Errorf("no [REDACTED] in %q", run.Output[max(0, len(run.Output)-80):])
			}
		})
	}
	// A secret shorter than 4 bytes is not redacted: it would blank words.
	run := deploy.RunHookRedacted(ctx, []string{"/bin/echo", "about"}, nil, 5*time.Second, []string{"ab"})
	if strings.TrimSpace(run.Output) != "about" {
		t.Errorf("short secret redacted: %q", run.Output)
	}
	// The deployer redacts what its Redact returns from every hook.
	ca := newCA(t)
	s := spec(t.TempDir())
	s.Check = []string{"/bin/echo", "key=" + canary}
	d := &deploy.Deployer{Redact: func() []string { return []string{canary} }}
	res, err := d.Deploy(ctx, s, ca.bundle(t, 1, "www.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res.Hooks[0].Output); strings.Contains(got, canary) || !strings.Contains(got, "key=[REDACTED]") {
		t.Errorf("deploy hook output %q", got)
	}
}

func TestPostHooksRunOnceWithTheDeployedNames(t *testing.T) {
	log := filepath.Join(t.TempDir(), "post.log")
	d := &deploy.Deployer{}
	runs := d.PostHooks(ctx, [][]string{envHook(log), {"/bin/false"}, envHook(log)}, []string{"a", "b", "c"}, 5*time.Second)
	if len(runs) != 3 || runs[1].Err == nil || runs[2].Err != nil {
		t.Fatalf("runs %+v: every hook runs, the failing one says so", runs)
	}
	envs := readEnvs(t, log)
	if len(envs) != 2 || envs[0]["CERTD_ACTION"] != "post" || envs[0]["CERTD_DEPLOYED"] != "a b c" || envs[0]["CERTD_DEPLOYED_COUNT"] != "3" {
		t.Errorf("post hook env %v", envs)
	}
}
