package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certd/certd/ca/atlas/atlassim"
	"github.com/certd/certd/store"
)

// TestPostHookOncePerPassAndSecretsRedacted issues two certificates from
// the Atlas simulator, renews both in one pass, and checks that
// defaults.post_hook ran once for that pass with both names; that a check
// hook printing two configured secrets (the TSIG key and the API secret)
// left them nowhere certd writes (logs, events, the store's files, the
// deployed files), only [REDACTED]; and that `certd hooks test` runs the
// hooks against the live version.
func TestPostHookOncePerPassAndSecretsRedacted(t *testing.T) {
	// One issuing CA throughout: this test is not about chain rotation.
	w := newAtlasWorld(t, func(o *atlassim.Options) { o.RotateEvery = 0 })
	cfgPath := filepath.Join(w.dir, "certd.yaml")
	postLog := filepath.Join(w.dir, "post.log")
	defaults := "  deploy: {dir: " + w.dir + "/live, keep: 2}\n"
	cfg := w.config()
	if !strings.Contains(cfg, defaults) {
		t.Fatal("the world's configuration changed shape")
	}
	cfg = strings.Replace(cfg, defaults, `  deploy:
    dir: `+w.dir+`/live
    keep: 2
    check: [/bin/sh, -c, 'echo "checking with $(cat `+w.dir+`/tsig) and $(cat `+w.dir+`/api-secret)"']
  post_hook:
    - [/bin/sh, -c, 'echo "$CERTD_DEPLOYED_COUNT $CERTD_DEPLOYED" >> "$0"', `+postLog+`]
`, 1)
	writeFile(t, cfgPath, cfg)
	secrets := []string{strings.TrimSpace(w.knot.Secret), "e2e-secret"}

	var logs bytes.Buffer
	runOnce := func() {
		t.Helper()
		cmd := exec.Command(binary(t), "run", "-once", "-config", cfgPath)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		logs.Write(stderr.Bytes())
		if err != nil {
			t.Fatalf("run -once: %v\n%s", err, stderr.String())
		}
	}
	runOnce()
	first := readLines(t, postLog)
	if len(first) == 0 {
		t.Fatalf("no post hook after the first issuance")
	}

	// Both due now: one pass renews both, and the post hook runs once.
	dbPath := filepath.Join(w.dir, "state", "certd.db")
	ctx := context.Background()
	st, err := store.Open(ctx, dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"www", "shop"} {
		c, err := st.GetCertificate(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		c.NextActionAt = time.Now().Add(-time.Second)
		if err := st.SaveCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	runOnce()
	lines := readLines(t, postLog)[len(first):]
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "2 ") || !strings.Contains(lines[0], "www") || !strings.Contains(lines[0], "shop") {
		t.Errorf("post hook runs for a pass renewing www and shop: %q (want one line \"2 www shop\")", lines)
	}

	code, out, errs := inProcess("hooks", "test", "-config", cfgPath, "www")
	if code != exitOK || !strings.Contains(out, "[REDACTED]") || !strings.Contains(out, "every hook passed") {
		t.Errorf("hooks test: exit %d\n%s%s", code, out, errs)
	}
	logs.WriteString(out + errs)

	// The secrets appear nowhere; the hook's output does, redacted.
	st, err = store.Open(ctx, dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	events, err := st.ListEvents(ctx, store.EventFilter{})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	var ev strings.Builder
	for _, e := range events {
		ev.WriteString(e.Message + "\n")
		for k, v := range e.Fields {
			ev.WriteString(k + "=" + v + "\n")
		}
	}
	if !strings.Contains(ev.String(), "checking with [REDACTED] and [REDACTED]") {
		t.Errorf("the check hook's output is not in the events, redacted:\n%s", ev.String())
	}
	places := map[string]string{"logs": logs.String(), "events": ev.String()}
	for _, root := range []string{filepath.Join(w.dir, "state"), filepath.Join(w.dir, "live")} {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				b, _ := os.ReadFile(p)
				places[p] = string(b)
			}
			return nil
		})
	}
	for where, text := range places {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("secret %q found in %s", s[:3]+"…", where)
			}
		}
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}
