package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/config"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// cmdRenew makes a certificate due now. With a daemon running on the
// store, the daemon is asked for a pass (SIGHUP); otherwise the work is
// done here, in the foreground, each step logged as it happens.
func cmdRenew(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("renew", stderr)
	path := fs.String("config", DefaultConfig, "configuration file")
	force := fs.Bool("force", false, "renew even if the certificate is not due yet")
	dry := fs.Bool("dry-run", false, "rehearse: publish and check DCV, build and check the deploy in a scratch directory; no order")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: certd renew [-config FILE] [-force] [-dry-run] NAME")
		return exitUsage
	}
	name := fs.Arg(0)
	cfg, st, code, ok := openFromConfig(*path, stderr)
	if !ok {
		return code
	}
	if configured(cfg, name) == nil {
		st.Close()
		fmt.Fprintf(stderr, "certd renew: %s is not in the configuration %s\n", name, *path)
		return exitUsage
	}
	if *dry {
		defer st.Close()
		return dryRun(cfg, st, name, stdout, stderr)
	}
	ctx := context.Background()
	c, err := st.GetCertificate(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		st.Close()
		fmt.Fprintf(stderr, "certd renew: %s is not in the store yet; start the daemon once (or check the name)\n", name)
		return exitFailure
	}
	if err != nil {
		st.Close()
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	now := time.Now()
	if !*force && c.State == store.StateValid && c.NextActionAt.After(now) {
		st.Close()
		fmt.Fprintf(stdout, "%s is valid and not due until %s; use -force to renew now\n", name, c.NextActionAt.UTC().Format(time.RFC3339))
		return exitOK
	}
	switch {
	case *force:
		// A new order, never a stored version (one rolled back from, say).
		c.NextAction = scheduler.ActionReissue
		if !sayForcedOrder(ctx, cfg, st, c, stdout, stderr) {
			st.Close()
			return exitFailure
		}
	case c.NextAction == "" || c.NextAction == scheduler.ActionRenew:
		c.NextAction = scheduler.ActionRenew
	}
	if err := st.UpdateCertificate(ctx, name, func(cur *store.Certificate) error {
		cur.NextAction, cur.NextActionAt = c.NextAction, now
		return nil
	}); err != nil {
		st.Close()
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	_, _ = st.AppendEvent(ctx, store.Event{Level: "info", Kind: "renew_requested", CertName: name, Message: "renewal requested by an operator"})
	st.Close()
	if fleetMode(cfg) {
		// The fleet's daemons claim due work with leases: the first host
		// listing it to pass works it, and every host deploys the result.
		fmt.Fprintf(stdout, "%s is due now; a host of the fleet works it at its next pass (within %s). Follow it with: certd status\n", name, cfg.Fleet.SyncInterval.D())
		return exitOK
	}
	if pid, held := store.LockHolder(cfg.Store.SQLite); held {
		if pid > 0 && syscall.Kill(pid, syscall.SIGHUP) == nil {
			fmt.Fprintf(stdout, "%s is due now; the running daemon (pid %d) was asked for a pass. Follow it with: certd status\n", name, pid)
		} else {
			fmt.Fprintf(stdout, "%s is due now; the running daemon picks it up at its next pass (%s)\n", name, cfg.Schedule)
		}
		return exitOK
	}
	// No daemon: do the work here, holding the store like a daemon would.
	lst, err := store.Open(ctx, cfg.Store.SQLite, store.Options{Exclusive: true})
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitStore
	}
	defer lst.Close()
	lc := cfg.Log
	lc.Format = "console" // a person is watching
	log := newLogger(lc, zap.NewAtomicLevel(), stderr)
	p, err := build(cfg, lst, log, observers{})
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitUsage
	}
	stopResponders, err := serveResponders(p.responders, log)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	defer stopResponders()
	deployer := &deploy.Deployer{Log: log.Named("deploy"), Redact: secretValues(cfg)}
	post := &postHooks{}
	issuing := &scheduler.Issuing{Store: lst, Plans: func(n string) (scheduler.Plan, error) { return p.plan(n) },
		Claims: &scheduler.Claims{Store: lst, Log: log.Named("claims")}, Deployer: deployer, Log: log.Named("issue"),
		OnDeploy: func(c store.Certificate, _ scheduler.Plan, err error) {
			if err == nil {
				post.add(c.Name)
			}
		}}
	defer post.run(ctx, cfg, deployer, lst, log.Named("deploy"))
	// A scheduler only to record the outcome as a pass would (failures,
	// backoff, needs-operator, events): nothing is scheduled.
	sched, err := scheduler.New(scheduler.Options{Store: lst, Work: issuing.Work, Logger: log.Named("scheduler"), Schedule: "@every 24h"})
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		c, err := lst.GetCertificate(ctx, name)
		if err != nil {
			fmt.Fprintf(stderr, "certd: %v\n", err)
			return exitFailure
		}
		if err := sched.RunNow(ctx, c); err != nil {
			c, _ = lst.GetCertificate(ctx, name)
			fmt.Fprintf(stderr, "certd renew: %s: %v\n%s is %s; next attempt at %s\n", name, err, name, c.State, c.NextActionAt.UTC().Format(time.RFC3339))
			return exitFailure
		}
		c, _ = lst.GetCertificate(ctx, name)
		switch {
		case c.State == store.StateValid && c.Current != nil && c.NextAction != scheduler.ActionRedeploy:
			fmt.Fprintf(stdout, "%s: serial %s deployed, valid until %s; next renewal %s\n", name, c.Current.Serial,
				c.Current.NotAfter.UTC().Format(time.RFC3339), c.NextActionAt.UTC().Format(time.RFC3339))
			return exitOK
		case c.NextAction != scheduler.ActionPoll || c.NextActionAt.After(deadline):
			// Paused by the CA's Retry-After, or nothing more to do now.
			fmt.Fprintf(stderr, "certd renew: %s is %s; next attempt at %s", name, c.State, c.NextActionAt.UTC().Format(time.RFC3339))
			if c.LastError != "" {
				fmt.Fprintf(stderr, " (%s)", c.LastError)
			}
			fmt.Fprintln(stderr, "; the daemon goes on with it")
			return exitFailure
		}
		fmt.Fprintf(stdout, "%s: the CA is still working on the order; looking again at %s\n", name, c.NextActionAt.Format(time.TimeOnly))
		time.Sleep(time.Until(c.NextActionAt).Round(time.Millisecond))
	}
}

// sayForcedOrder tells the operator, before anything is sent, what a
// forced renewal of c costs: a new order (paid, on a commercial CA), or
// none while an order is still open (it is finished instead).
func sayForcedOrder(ctx context.Context, cfg *config.Config, st store.Orders, c store.Certificate, stdout, stderr io.Writer) bool {
	open, err := st.OpenOrders(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return false
	}
	for _, o := range open {
		if o.CertName == c.Name {
			fmt.Fprintf(stdout, "%s: order %s (%s) is still open; it is finished first and nothing else is ordered\n", c.Name, o.IdempotencyKey, o.State)
			return true
		}
	}
	fmt.Fprintf(stdout, "%s: placing a new order with account %s", c.Name, c.Account)
	if a, ok := cfg.Accounts[c.Account]; ok {
		if a.Type == "acme" {
			fmt.Fprint(stdout, " (an ACME order costs nothing until it is finalized)")
		} else {
			fmt.Fprintf(stdout, " (%s charges for each order)", a.Type)
		}
	}
	fmt.Fprintln(stdout)
	return true
}

// cmdRollback switches a certificate back to the version deployed before
// the current one, reloads, and records it. The rollback holds until the
// next real issuance: the version rolled back from is never deployed
// again on its own; the next renewal places a new order.
func cmdRollback(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rollback", stderr)
	path := fs.String("config", DefaultConfig, "configuration file")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: certd rollback [-config FILE] NAME")
		return exitUsage
	}
	name := fs.Arg(0)
	cfg, st, code, ok := openFromConfig(*path, stderr)
	if !ok {
		return code
	}
	defer st.Close()
	cc := configured(cfg, name)
	if cc == nil {
		fmt.Fprintf(stderr, "certd rollback: %s is not in the configuration\n", name)
		return exitUsage
	}
	spec := deploySpec(cc)
	ctx := context.Background()
	res, err := (&deploy.Deployer{Redact: secretValues(cfg)}).Rollback(ctx, spec)
	for _, h := range res.Hooks {
		fmt.Fprintf(stdout, "hook %s: %v\n", strings.Join(h.Argv, " "), errOrOK(h.Err))
	}
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	// The store follows the files: the version whose serial is now live.
	var to, from *store.Version
	if leaf, err := deploy.LiveLeaf(spec); err == nil {
		vs, _ := st.ListVersions(ctx, name)
		c, _ := st.GetCertificate(ctx, name)
		for i := range vs {
			switch {
			case vs[i].Serial == fmt.Sprintf("%X", leaf.SerialNumber):
				to = &vs[i]
			case vs[i].ID == c.CurrentVersion:
				from = &vs[i]
			}
		}
	}
	msg := fmt.Sprintf("rolled back by an operator from %s to %s", res.Previous, res.Version)
	if to != nil {
		// Held until the next real issuance: the renewal due for the
		// version now live places a new order (a reissue), and never
		// deploys the version rolled back from.
		policy := scheduler.Policy{RemainingFraction: cc.Renew.RemainingFraction, Before: cc.Renew.Before.D()}
		var c store.Certificate
		err := st.UpdateCertificate(ctx, name, func(x *store.Certificate) error {
			x.CurrentVersion, x.State, x.Failures, x.LastError = to.ID, store.StateValid, 0, ""
			x.NextAction, x.NextActionAt = scheduler.ActionReissue, scheduler.RenewalTime(to.NotBefore, to.NotAfter, policy, 0)
			c = *x
			return nil
		})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			fmt.Fprintf(stderr, "certd: recording the rollback: %v\n", err)
			return exitFailure
		}
		if err == nil {
			now := time.Now()
			if from != nil {
				_, _ = st.AddDeployment(ctx, store.Deployment{CertName: name, VersionID: from.ID, Dir: spec.LivePath(), State: "rolled_back",
					StartedAt: now, FinishedAt: now})
			}
			_, _ = st.AddDeployment(ctx, store.Deployment{CertName: name, VersionID: to.ID, Dir: spec.LivePath(), State: "live", StartedAt: now, FinishedAt: now})
			when := "at " + c.NextActionAt.UTC().Format(time.RFC3339)
			if !c.NextActionAt.After(now) {
				when = "due now (this version is inside its renewal window)"
			}
			msg += fmt.Sprintf(" (serial %s, valid until %s); the next renewal, %s, places a new order", to.Serial,
				to.NotAfter.UTC().Format(time.RFC3339), when)
			fmt.Fprintf(stdout, "%s: serial %s is live again; the version rolled back from is not deployed again: the next renewal, %s, places a new order\n",
				name, to.Serial, when)
		}
	}
	_, _ = st.AppendEvent(ctx, store.Event{Level: "warn", Kind: "rolled_back", CertName: name, Message: msg})
	fmt.Fprintf(stdout, "%s: live files now %s (was %s)\n", name, res.Version, res.Previous)
	return exitOK
}

func errOrOK(err error) string {
	if err != nil {
		return err.Error()
	}
	return "ok"
}

// configured is the certificate named name in cfg, or nil.
func configured(cfg *config.Config, name string) *config.Certificate {
	for _, c := range cfg.Certificates {
		if c.Name == name {
			return c
		}
	}
	return nil
}
