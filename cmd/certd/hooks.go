package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/config"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/store"
)

const hooksUsage = `usage: certd hooks test [-config FILE] NAME

Runs NAME's deploy.check, every deploy.reload and deploy.verify against the
version deployed now, with the environment a deploy gives them
(CERTD_ACTION=test). Nothing is renewed, written or switched. Exit 0 when
every step passed, 1 when one failed, 2 for a name not in the configuration.
`

func cmdHooks(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "test" {
		fmt.Fprint(stderr, hooksUsage)
		return exitUsage
	}
	fs := newFlags("hooks test", stderr)
	path := fs.String("config", DefaultConfig, "configuration file")
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, hooksUsage)
		return exitUsage
	}
	name := fs.Arg(0)
	cfg, ok := loadOrReport(*path, stderr)
	if !ok {
		return exitUsage
	}
	cc := configured(cfg, name)
	if cc == nil {
		fmt.Fprintf(stderr, "certd hooks test: %s is not in the configuration %s\n", name, *path)
		return exitUsage
	}
	spec := deploySpec(cc)
	if len(spec.Check) == 0 && len(spec.Reload) == 0 && spec.Verify == nil {
		fmt.Fprintf(stdout, "%s: no check, reload or verify is configured; nothing to test\n", name)
		return exitOK
	}
	d := &deploy.Deployer{Redact: secretValues(cfg)}
	start := time.Now()
	res, err := d.TestHooks(context.Background(), spec)
	fmt.Fprintf(stdout, "%s: testing the hooks against %s\n", name, dash(res.Version))
	for _, h := range res.Hooks {
		fmt.Fprintf(stdout, "  %-6s %s (%s): %s\n", hookStep(spec, h), strings.Join(h.Argv, " "), h.Duration.Round(time.Millisecond), errOrOK(h.Err))
		if out := strings.TrimSpace(h.Output); out != "" {
			for _, line := range strings.Split(out, "\n") {
				fmt.Fprintf(stdout, "         | %s\n", line)
			}
		}
	}
	var f *deploy.Failure
	if errors.As(err, &f) && f.Step == "live verification" || err == nil && spec.Verify != nil {
		fmt.Fprintf(stdout, "  verify %s (SNI %s): %s\n", spec.Verify.Address, spec.Verify.ServerName, errOrOK(err))
	}
	if err != nil {
		fmt.Fprintf(stderr, "certd hooks test: %s: %v\n", name, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: every hook passed in %s\n", name, time.Since(start).Round(time.Millisecond))
	return exitOK
}

func hookStep(s deploy.Spec, h deploy.HookRun) string {
	if len(s.Check) > 0 && strings.Join(h.Argv, "\x00") == strings.Join(s.Check, "\x00") {
		return "check"
	}
	return "reload"
}

// secretValues returns a function listing every secret the configuration
// references, resolved (those that cannot be resolved are left out): the
// values to redact from hooks' output.
func secretValues(cfg *config.Config) func() []string {
	var vals []string
	add := func(v any) {
		for _, s := range config.Secrets(v) {
			if sv, err := s.Resolve(); err == nil && sv.Reveal() != "" {
				vals = append(vals, sv.Reveal())
			}
		}
	}
	for _, group := range []map[string]*config.Plugin{cfg.Accounts, cfg.DNS, cfg.HTTP} {
		for _, p := range group {
			add(p.Settings)
		}
	}
	add(cfg.Notify)
	return func() []string { return vals }
}

// postHooks collects the certificates deployed during a pass and runs
// defaults.post_hook once when the pass is done.
type postHooks struct {
	mu       sync.Mutex
	deployed []string
}

func (p *postHooks) add(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deployed = append(p.deployed, name)
}

// run runs the post hooks when anything was deployed since the last run,
// logging each and recording it in the event log.
func (p *postHooks) run(ctx context.Context, cfg *config.Config, d *deploy.Deployer, st store.Events, log *zap.Logger) {
	p.mu.Lock()
	names := p.deployed
	p.deployed = nil
	p.mu.Unlock()
	if len(names) == 0 || len(cfg.PostHook) == 0 {
		return
	}
	hooks := make([][]string, len(cfg.PostHook))
	for i, h := range cfg.PostHook {
		hooks[i] = h
	}
	for _, h := range d.PostHooks(ctx, hooks, names, config.DefaultHookTimeout.D()) {
		argv := strings.Join(h.Argv, " ")
		level, msg := "info", fmt.Sprintf("post hook %s ran in %s after %d deployed (%s)", argv, h.Duration.Round(time.Millisecond), len(names), strings.Join(names, " "))
		if h.Err != nil {
			level, msg = "error", fmt.Sprintf("post hook %s failed after %d deployed (%s): %v", argv, len(names), strings.Join(names, " "), h.Err)
			log.Error("post hook failed", zap.Strings("argv", h.Argv), zap.Strings("deployed", names), zap.Error(h.Err), zap.String("output", h.Output))
		} else {
			log.Info("post hook ran", zap.Strings("argv", h.Argv), zap.Strings("deployed", names), zap.Duration("took", h.Duration),
				zap.String("output", strings.TrimSpace(h.Output)))
		}
		if out := strings.TrimSpace(h.Output); out != "" {
			if len(out) > 500 {
				out = out[:500] + "…"
			}
			msg += ": " + out
		}
		_, _ = st.AppendEvent(context.WithoutCancel(ctx), store.Event{Level: level, Kind: "post_hook", Message: msg})
	}
}
