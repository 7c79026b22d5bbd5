package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// HookRun is one hook's outcome, for the event log.
type HookRun struct {
	Argv     []string
	Output   string // stdout and stderr, bounded and redacted
	Duration time.Duration
	Err      error
}

// maxOutput bounds what is kept of a hook's output.
const maxOutput = 8 << 10

// limitedBuffer keeps the first maxOutput bytes.
type limitedBuffer struct {
	buf       bytes.Buffer
	truncated bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxOutput - l.buf.Len(); room > 0 {
		if len(p) > room {
			l.buf.Write(p[:room])
			l.truncated = true
		} else {
			l.buf.Write(p)
		}
	} else if len(p) > 0 {
		l.truncated = true
	}
	return len(p), nil
}

var privateKeyPEM = regexp.MustCompile(`(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)`)

// RunHook runs argv without a shell, in its own process group, with a
// clean environment: PATH and LANG from certd, then env. certd's own
// environment (which may hold env: secrets) is never passed on. When
// timeout passes the whole group is killed.
func RunHook(ctx context.Context, argv []string, env map[string]string, timeout time.Duration) HookRun {
	return RunHookRedacted(ctx, argv, env, timeout, nil)
}

// RunHookRedacted is RunHook that also replaces every value in secrets
// (the configuration's resolved secrets) found in the output with
// [REDACTED], and drops a truncated tail that begins one.
func RunHookRedacted(ctx context.Context, argv []string, env map[string]string, timeout time.Duration, secrets []string) HookRun {
	run := HookRun{Argv: argv}
	if len(argv) == 0 {
		run.Err = errors.New("empty command")
		return run
	}
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	cmd.Env = []string{"PATH=" + path, "LANG=C.UTF-8"}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Dir = "/"
	start := time.Now()
	err := cmd.Run()
	run.Duration = time.Since(start)
	run.Output = redact(privateKeyPEM.ReplaceAllString(out.buf.String(), "[private key redacted]"), secrets, out.truncated)
	if out.truncated {
		run.Output += "\n[output truncated]"
	}
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		run.Err = fmt.Errorf("%s timed out after %s and was killed with its process group", argv[0], timeout)
	case err != nil:
		run.Err = fmt.Errorf("%s: %w", argv[0], err)
	}
	return run
}

// minSecret is the shortest secret redacted: a shorter one would blank
// ordinary words of the output and reveals little anyway.
const minSecret = 4

// redact replaces every secret in out with [REDACTED]. When out was cut
// short, a tail that is the start of a secret is dropped too.
func redact(out string, secrets []string, truncated bool) string {
	// Longest first, so that a secret containing another is replaced whole.
	sorted := slices.Clone(secrets)
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	for _, s := range sorted {
		if len(s) >= minSecret {
			out = strings.ReplaceAll(out, s, "[REDACTED]")
		}
	}
	if truncated {
		for _, s := range sorted {
			for n := min(len(s)-1, len(out)); n >= minSecret; n-- {
				if strings.HasSuffix(out, s[:n]) {
					out = out[:len(out)-n] + "[REDACTED]"
					break
				}
			}
		}
	}
	return out
}
