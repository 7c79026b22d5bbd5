package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/config"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/providers"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// dryRun rehearses a renewal of name (scheduler.Rehearse): everything
// short of the order, each step printed as it is made, then what could
// not be checked. It exits 1 when any step failed.
func dryRun(cfg *config.Config, st store.Store, name string, stdout, stderr io.Writer) int {
	lc := cfg.Log
	lc.Format = "console"
	log := newLogger(lc, zap.NewAtomicLevel(), stderr)
	p, err := build(cfg, st, log, observers{})
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitUsage
	}
	plan, err := p.plan(name)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fmt.Fprintf(stdout, "dry run of %s: everything a renewal does short of the order, step by step\n", name)
	report := func(s ca.ProbeStep) { fmt.Fprintf(stdout, "dry run: %s: %s: %s\n", s.Name, s.Result, s.Detail) }

	// The built-in responders: served here when their address is free;
	// one the running daemon holds cannot take this process's files.
	skip, responderFailed := dryRunResponders(ctx, cfg, p.responders, log, report)

	r := scheduler.Rehearse(ctx, plan, scheduler.RehearseOptions{Claims: st, Report: report, SkipTarget: skip})
	failed := r.Failed()
	if responderFailed {
		failed = append([]string{"responder"}, failed...)
	}
	if un := r.Unchecked(); len(un) > 0 {
		names := make([]string, len(un))
		for i, s := range un {
			names[i] = s.Name
		}
		fmt.Fprintf(stdout, "dry run: not checked (see above): %s\n", strings.Join(names, ", "))
	}
	if len(failed) > 0 {
		fmt.Fprintf(stdout, "dry run: %s would not renew cleanly: FAILED at %s; no order was placed\n", name, strings.Join(failed, ", "))
		return exitFailure
	}
	fmt.Fprintf(stdout, "dry run: %s would renew cleanly as far as a dry run can tell; no order was placed\n", name)
	return exitOK
}

// dryRunResponders serves each built-in responder whose address is free.
// A responder whose address the store's running daemon holds is asked for
// a throwaway path instead (it answers, but serves only the daemon's own
// tokens: publishing through it is reported as not checked); an address
// held by another program, or unusable, fails the dry run, as it would
// fail the daemon. skip says why a proof through a target cannot be
// published here.
func dryRunResponders(ctx context.Context, cfg *config.Config, rs []*providers.Responder, log *zap.Logger,
	report func(ca.ProbeStep)) (skip func(dcv.Target) string, failed bool) {
	why := map[string]string{} // responder address -> why this process cannot publish through it
	for _, r := range rs {
		ln, err := net.Listen("tcp", r.Addr)
		if err == nil {
			go func() {
				if err := r.Serve(ctx, ln); err != nil {
					log.Error("HTTP responder stopped", zap.Error(err))
				}
			}()
			continue
		}
		name := "responder " + r.Addr
		pid, held := store.LockHolder(cfg.Store.SQLite)
		switch {
		case !errors.Is(err, syscall.EADDRINUSE):
			report(ca.ProbeStep{Name: name, Result: ca.ProbeFailed, Detail: err.Error()})
			failed = true
			why[r.Addr] = "the responder on " + r.Addr + " cannot listen (see above)"
		case !held:
			report(ca.ProbeStep{Name: name, Result: ca.ProbeFailed, Detail: fmt.Sprintf("%s is in use by another program, not by a certd daemon of this store: "+
				"the daemon could not serve its tokens there either", r.Addr)})
			failed = true
			why[r.Addr] = "the responder on " + r.Addr + " cannot listen (see above)"
		default:
			answer, aerr := askResponder(ctx, r.Addr)
			if aerr != nil {
				report(ca.ProbeStep{Name: name, Result: ca.ProbeFailed, Detail: fmt.Sprintf("%s is held (the running daemon, pid %d, holds the store) but does not answer HTTP: %v", r.Addr, pid, aerr)})
				failed = true
				why[r.Addr] = "the responder on " + r.Addr + " does not answer (see above)"
				continue
			}
			report(ca.ProbeStep{Name: name, Result: ca.ProbeOK, Detail: fmt.Sprintf("held by the running daemon (pid %d), which answers (%s for a throwaway path)", pid, answer)})
			why[r.Addr] = fmt.Sprintf("the running daemon (pid %d) serves the responder on %s with its own tokens only: a throwaway file cannot be published through it from here", pid, r.Addr)
		}
	}
	return func(t dcv.Target) string {
		if t.HTTP == "" {
			return ""
		}
		h, ok := cfg.HTTP[t.HTTP]
		if !ok {
			return ""
		}
		if rc, ok := h.Settings.(*providers.ResponderConfig); ok {
			return why[rc.Listen]
		}
		return ""
	}, failed
}

// askResponder gets a throwaway path from the responder at addr and
// returns the answer's status.
func askResponder(ctx context.Context, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/.well-known/pki-validation/certd-dry-run-probe.txt", nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return resp.Status, nil
}
