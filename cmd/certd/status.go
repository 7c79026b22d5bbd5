package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/certd/certd/config"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", stderr)
	path := fs.String("config", DefaultConfig, "configuration file (names the store)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	noDaemon := fs.Bool("no-daemon", false, "certificates are worked by `certd run -once` (cron), not a daemon: a stopped daemon is not a failure")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(stderr, "usage: certd status [-config FILE] [-json] [-no-daemon] [NAME]")
		return exitUsage
	}
	cfg, st, code, ok := openFromConfig(*path, stderr)
	if !ok {
		return code
	}
	defer st.Close()
	now := time.Now()
	rep, err := collectStatus(context.Background(), cfg, st, now, !*noDaemon)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	name := fs.Arg(0)
	if name != "" {
		var one *certStatus
		for i := range rep.Certificates {
			if rep.Certificates[i].Name == name {
				one = &rep.Certificates[i]
			}
		}
		if one == nil {
			fmt.Fprintf(stderr, "certd status: %s is neither in the configuration nor in the store\n", name)
			return exitUsage
		}
		rep.Certificates, rep.Unhealthy = []certStatus{*one}, 0
		if one.Problem != "" {
			rep.Unhealthy = 1
		}
		rep.Healthy = rep.Unhealthy == 0 && rep.Daemon.Problem == ""
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "certd: %v\n", err)
			return exitFailure
		}
	} else if name != "" {
		printCertificate(stdout, rep, now)
	} else {
		printStatus(stdout, rep, now)
	}
	if !rep.Healthy {
		return exitFailure
	}
	return exitOK
}

// statusReport is the JSON shape of `certd status -json`; field names are
// a stable interface for scripts.
type statusReport struct {
	Daemon       daemonStatus  `json:"daemon"`
	Certificates []certStatus  `json:"certificates"`
	Claims       []claimStatus `json:"claims"`
	// Accounts lists CA accounts paused by a Retry-After.
	Accounts []accountStatus `json:"accounts"`
	// Hosts lists the hosts of a fleet (fleet mode only), each with its
	// last pass and whether it looks alive.
	Hosts []hostStatus `json:"hosts,omitempty"`
	// Unhealthy counts certificates with a problem (failing, needing an
	// operator, inside their emergency window, not issued within
	// pending_grace, retired with their files still deployed).
	Unhealthy int `json:"unhealthy"`
	// Healthy is what the exit status says: no unhealthy certificate and
	// no problem with the daemon.
	Healthy bool `json:"healthy"`
}

// daemonStatus is whether a daemon works the store, and when it last did.
type daemonStatus struct {
	Running bool `json:"running"`
	PID     int  `json:"pid,omitempty"`
	// LastPass is when the scheduler last completed a pass (a daemon's or
	// `certd run -once`'s).
	LastPass *time.Time `json:"last_pass,omitempty"`
	// Required: a stopped daemon is a problem (false with -no-daemon).
	Required bool `json:"required"`
	// Problem, when set, makes status exit 1.
	Problem string `json:"problem,omitempty"`
}

// accountStatus is a CA account that asked certd to wait.
type accountStatus struct {
	Account     string    `json:"account"`
	PausedUntil time.Time `json:"paused_until"`
	Reason      string    `json:"reason"`
}

type certStatus struct {
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
	Account string   `json:"account"`
	Issuer  string   `json:"issuer,omitempty"`
	KeyType string   `json:"key_type,omitempty"`
	// Configured: the configuration lists it (false: retired, or not yet
	// seen by the daemon).
	Configured bool       `json:"configured"`
	State      string     `json:"state"`
	Serial     string     `json:"serial,omitempty"`
	NotBefore  *time.Time `json:"not_before,omitempty"`
	NotAfter   *time.Time `json:"not_after,omitempty"`
	// Path is the live path (a symlink to the deployed version);
	// FilesDeployed says whether it is there.
	Path          string `json:"path,omitempty"`
	FilesDeployed bool   `json:"files_deployed"`
	// PendingSince is when a never-issued certificate was configured.
	PendingSince *time.Time `json:"pending_since,omitempty"`
	NextAction   string     `json:"next_action,omitempty"`
	NextActionAt *time.Time `json:"next_action_at,omitempty"`
	Failures     int        `json:"failures"`
	LastError    string     `json:"last_error,omitempty"`
	Emergency    bool       `json:"emergency"`
	// Hosts is each fleet host's deploy of it (fleet mode only).
	Hosts []hostDeploy `json:"hosts,omitempty"`
	// Problem, when set, is why it counts as unhealthy.
	Problem string `json:"problem,omitempty"`
}

// hostStatus is one host of a fleet.
type hostStatus struct {
	Host     string    `json:"host"`
	LastPass time.Time `json:"last_pass"`
	PID      int       `json:"pid"`
	// Up: it completed a pass recently (within three sync intervals, and
	// at least two minutes).
	Up bool `json:"up"`
}

// hostDeploy is one host's latest deploy of a certificate.
type hostDeploy struct {
	Host   string `json:"host"`
	Serial string `json:"serial,omitempty"`
	State  string `json:"state"` // live, failed, started, rolled_back
	// Current: the deploy is of the fleet's current version.
	Current bool      `json:"current"`
	At      time.Time `json:"at"`
	Error   string    `json:"error,omitempty"`
}

type claimStatus struct {
	Account      string     `json:"account"`
	Domain       string     `json:"domain"`
	Status       string     `json:"status"`
	Method       string     `json:"method,omitempty"`
	ClaimID      string     `json:"claim_id,omitempty"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	AssertBy     *time.Time `json:"assert_by,omitempty"`
	NextAction   string     `json:"next_action,omitempty"`
	NextActionAt *time.Time `json:"next_action_at,omitempty"`
	Failures     int        `json:"failures"`
	LastError    string     `json:"last_error,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// statusStore is what status reads.
type statusStore interface {
	store.Certificates
	store.Claims
	store.AccountHolds
	store.Deployments
	store.Passes
	store.Versions
}

// collectStatus puts the configuration and the store side by side: every
// configured certificate (never-issued ones as pending), every stored one
// the configuration no longer lists, the claims, paused accounts and the
// daemon.
func collectStatus(ctx context.Context, cfg *config.Config, st statusStore, now time.Time, daemonRequired bool) (statusReport, error) {
	rep := statusReport{Certificates: []certStatus{}, Claims: []claimStatus{}, Accounts: []accountStatus{}}
	certs, err := st.ListCertificates(ctx)
	if err != nil {
		return rep, err
	}
	claims, err := st.ListClaims(ctx)
	if err != nil {
		return rep, err
	}
	holds, err := st.AccountHolds(ctx)
	if err != nil {
		return rep, err
	}
	stored := map[string]store.Certificate{}
	for _, c := range certs {
		stored[c.Name] = c
	}
	grace := cfg.PendingGrace.D()
	for _, cc := range cfg.Certificates {
		cs := certStatus{Name: cc.Name, Domains: cc.Domains, Account: cc.Account, KeyType: cc.KeyType, Configured: true,
			Path: deploySpec(cc).LivePath(), State: store.StatePending}
		if a, ok := cfg.Accounts[cc.Account]; ok {
			cs.Issuer = a.Type
		}
		sc, inStore := stored[cc.Name]
		delete(stored, cc.Name)
		if inStore {
			fillFromStore(&cs, sc, now)
		}
		if sc.Current == nil {
			// Never issued: pending since the daemon took it up, or since
			// its configuration file was written.
			since := sc.CreatedAt
			if !inStore {
				if fi, err := os.Stat(cc.Pos.File); err == nil {
					since = fi.ModTime()
				}
			}
			cs.PendingSince = timePtr(since)
		}
		cs.FilesDeployed = exists(cs.Path)
		cs.Problem = certProblem(cs, now, grace)
		rep.Certificates = append(rep.Certificates, cs)
	}
	// Stored certificates the configuration does not list: retired ones
	// (whose files may still be served) and any the daemon has not seen
	// the configuration change for yet. Hosts' own certificates of a
	// configured one (per-host keys) are shown under it, per host.
	for _, sc := range stored {
		if base, _, ok := strings.Cut(sc.Name, "@"); ok && configured(cfg, base) != nil && perHostKeys(cfg, configured(cfg, base).Account) {
			continue
		}
		cs := certStatus{Name: sc.Name, Domains: sc.Domains, Account: sc.Account, KeyType: sc.KeyType}
		if a, ok := cfg.Accounts[sc.Account]; ok {
			cs.Issuer = a.Type
		}
		fillFromStore(&cs, sc, now)
		if deps, err := st.ListDeployments(ctx, sc.Name); err == nil {
			for _, d := range deps {
				if d.State == "live" {
					cs.Path = d.Dir
					break
				}
			}
		}
		cs.FilesDeployed = cs.Path != "" && exists(cs.Path)
		if sc.State == store.StateRetired && cs.FilesDeployed {
			cs.Problem = fmt.Sprintf("retired (no longer in the configuration), but its files are still deployed at %s and no longer renewed", cs.Path)
			if cs.NotAfter != nil {
				cs.Problem += "; they expire " + cs.NotAfter.UTC().Format(time.RFC3339)
			}
			cs.Problem += ": put it back in the configuration, or remove the files once nothing uses them"
		}
		rep.Certificates = append(rep.Certificates, cs)
	}
	sort.Slice(rep.Certificates, func(i, j int) bool { return rep.Certificates[i].Name < rep.Certificates[j].Name })
	for _, c := range rep.Certificates {
		if c.Problem != "" {
			rep.Unhealthy++
		}
	}
	for _, c := range claims {
		rep.Claims = append(rep.Claims, claimStatus{Account: c.Account, Domain: c.Domain, Status: c.Status, Method: c.Method, ClaimID: c.CAClaimID,
			ExpiresAt: timePtr(c.ExpiresAt), AssertBy: timePtr(c.AssertBy), NextAction: c.NextAction, NextActionAt: timePtr(c.NextActionAt),
			Failures: c.Failures, LastError: c.LastError})
	}
	for _, h := range holds {
		if h.Until.After(now) {
			rep.Accounts = append(rep.Accounts, accountStatus{Account: h.Account, PausedUntil: h.Until, Reason: h.Reason})
		}
	}
	if fleetMode(cfg) {
		if err := fleetStatus(ctx, cfg, st, now, &rep); err != nil {
			return rep, err
		}
		rep.Daemon = fleetDaemon(cfg, rep.Hosts, now, daemonRequired)
	} else {
		rep.Daemon = daemonHealth(ctx, cfg, st, now, daemonRequired)
	}
	rep.Healthy = rep.Unhealthy == 0 && rep.Daemon.Problem == ""
	return rep, nil
}

// hostStale is how long a fleet host may go without a pass before it is
// shown as down.
func hostStale(cfg *config.Config) time.Duration {
	return max(3*cfg.Fleet.SyncInterval.D(), 2*time.Minute)
}

// fleetStatus adds the fleet's hosts and each host's deploy of every
// certificate; a host that is down, or whose latest deploy of a
// certificate failed, makes that certificate unhealthy without hiding
// what the other hosts serve.
func fleetStatus(ctx context.Context, cfg *config.Config, st statusStore, now time.Time, rep *statusReport) error {
	passes, err := st.ListPasses(ctx)
	if err != nil {
		return err
	}
	up := map[string]bool{}
	for _, p := range passes {
		h := hostStatus{Host: p.Host, LastPass: p.FinishedAt, PID: p.PID, Up: now.Sub(p.FinishedAt) <= hostStale(cfg)}
		up[p.Host] = h.Up
		rep.Hosts = append(rep.Hosts, h)
	}
	serials := map[int64]string{}
	serial := func(id int64) string {
		if s, ok := serials[id]; ok {
			return s
		}
		v, err := st.GetVersion(ctx, id)
		if err == nil {
			serials[id] = v.Serial
		}
		return v.Serial
	}
	for i := range rep.Certificates {
		cs := &rep.Certificates[i]
		sc, err := st.GetCertificate(ctx, cs.Name)
		if err != nil {
			continue
		}
		deps, err := st.ListDeployments(ctx, cs.Name)
		if err != nil {
			return err
		}
		// Per-host keys: each host deploys its own certificate of it;
		// "current" is one reissued from the fleet's current one.
		own := map[int64]bool{}
		if cc := configured(cfg, cs.Name); cc != nil && perHostKeys(cfg, cc.Account) {
			deps = nil
			for _, h := range rep.Hosts {
				hc, err := st.GetCertificate(ctx, scheduler.HostCertName(cs.Name, h.Host))
				if err != nil {
					continue
				}
				hd, err := st.ListDeployments(ctx, hc.Name)
				if err != nil {
					return err
				}
				if hc.Current != nil && sc.Current != nil && !hc.Current.NotAfter.Before(sc.Current.NotAfter) {
					own[hc.CurrentVersion] = true
				}
				deps = append(deps, hd...)
			}
			sort.Slice(deps, func(a, b int) bool { return deps[a].ID > deps[b].ID })
		}
		seen := map[string]bool{}
		var problems []string
		for _, d := range deps { // newest first
			if seen[d.Host] {
				continue
			}
			seen[d.Host] = true
			hd := hostDeploy{Host: d.Host, Serial: serial(d.VersionID), State: d.State, Current: d.VersionID == sc.CurrentVersion || own[d.VersionID], At: d.StartedAt, Error: d.Error}
			cs.Hosts = append(cs.Hosts, hd)
			isUp, known := up[d.Host]
			switch {
			case !cs.Configured || sc.State == store.StateRetired:
			case known && !isUp:
				problems = append(problems, fmt.Sprintf("host %s is down (no pass for more than %s)", d.Host, fmtDuration(hostStale(cfg))))
			case d.State == "failed":
				problems = append(problems, fmt.Sprintf("deploy on host %s failed: %s", d.Host, truncate(d.Error, 120)))
			}
		}
		sort.Slice(cs.Hosts, func(a, b int) bool { return cs.Hosts[a].Host < cs.Hosts[b].Host })
		if len(problems) > 0 && cs.Problem == "" {
			cs.Problem = strings.Join(problems, "; ")
			rep.Unhealthy++
		}
	}
	return nil
}

// fleetDaemon is this host's daemon as its passes show it (a fleet has no
// lock file to ask).
func fleetDaemon(cfg *config.Config, hosts []hostStatus, now time.Time, required bool) daemonStatus {
	d := daemonStatus{Required: required}
	for _, h := range hosts {
		if h.Host == cfg.Fleet.Host {
			d.LastPass, d.PID, d.Running = timePtr(h.LastPass), h.PID, h.Up
		}
	}
	if required && !d.Running {
		d.Problem = fmt.Sprintf("no certd daemon of host %s has completed a pass in the last %s: this host deploys nothing new", cfg.Fleet.Host, fmtDuration(hostStale(cfg)))
	}
	return d
}

func fillFromStore(cs *certStatus, c store.Certificate, now time.Time) {
	cs.State, cs.NextAction, cs.NextActionAt = c.State, c.NextAction, timePtr(c.NextActionAt)
	cs.Failures, cs.LastError = c.Failures, c.LastError
	if c.KeyType != "" && cs.KeyType == "" {
		cs.KeyType = c.KeyType
	}
	if c.Current != nil {
		cs.Serial, cs.NotBefore, cs.NotAfter = c.Current.Serial, timePtr(c.Current.NotBefore), timePtr(c.Current.NotAfter)
		cs.Emergency = c.State != store.StateRetired && scheduler.InEmergency(c.Current.NotBefore, c.Current.NotAfter, now)
	}
}

// certProblem says why a configured certificate is unhealthy ("": it is
// not).
func certProblem(c certStatus, now time.Time, grace time.Duration) string {
	switch {
	case c.State == store.StateNeedsOperator:
		return "needs an operator: " + truncate(c.LastError, 200)
	case c.State == store.StateFailing:
		return fmt.Sprintf("failing (%d attempts in a row): %s", c.Failures, truncate(c.LastError, 200))
	case c.Emergency && c.NotAfter != nil && !now.Before(*c.NotAfter):
		return "expired at " + c.NotAfter.UTC().Format(time.RFC3339)
	case c.Emergency:
		return "inside its emergency window: it expires " + c.NotAfter.UTC().Format(time.RFC3339)
	case c.NotAfter == nil && c.PendingSince != nil && now.Sub(*c.PendingSince) > grace:
		return fmt.Sprintf("no certificate deployed %s after it was configured (pending_grace %s)", human(now.Sub(*c.PendingSince)), fmtDuration(grace))
	}
	return ""
}

// daemonHealth is whether a daemon holds the store and keeps completing
// passes.
func daemonHealth(ctx context.Context, cfg *config.Config, st store.Passes, now time.Time, required bool) daemonStatus {
	d := daemonStatus{Required: required}
	if p, err := st.LastPass(ctx); err == nil {
		d.LastPass = timePtr(p.FinishedAt)
	}
	pid, held := store.LockHolder(cfg.Store.SQLite)
	d.Running, d.PID = held, pid
	switch {
	case held:
		// A daemon that holds the store but completes no pass is stuck.
		since := time.Time{}
		if d.LastPass != nil {
			since = *d.LastPass
		}
		if fi, err := os.Stat(cfg.Store.SQLite + ".lock"); err == nil && fi.ModTime().After(since) {
			since = fi.ModTime() // it started after its last pass
		}
		if limit := stallLimit(cfg.Schedule, now); !since.IsZero() && now.Sub(since) > limit {
			d.Problem = fmt.Sprintf("the daemon (pid %d) has completed no pass since %s (its schedule is %q)", pid, since.UTC().Format(time.RFC3339), cfg.Schedule)
		}
	case required:
		d.Problem = "no certd daemon is running on this store: nothing renews the certificates (start it; with `certd run -once` from cron, use status -no-daemon)"
	}
	return d
}

// stallLimit is how long a running daemon may go without completing a
// pass: two periods of its schedule, plus an hour for long passes.
func stallLimit(spec string, now time.Time) time.Duration {
	period := 5 * time.Minute
	if s, err := cron.ParseStandard(spec); err == nil {
		a := s.Next(now)
		period = s.Next(a).Sub(a)
	}
	return 2*period + time.Hour
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func printStatus(w io.Writer, rep statusReport, now time.Time) {
	printDaemon(w, rep.Daemon, now)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tSTATE\tDOMAINS\tACCOUNT\tKEY\tEXPIRES\tNEXT\tFAILURES\tPATH\tLAST ERROR")
	for _, c := range rep.Certificates {
		domains := strings.Join(c.Domains, ",")
		if len(c.Domains) > 2 {
			domains = fmt.Sprintf("%s,%s +%d", c.Domains[0], c.Domains[1], len(c.Domains)-2)
		}
		account := c.Account
		if c.Issuer != "" {
			account += " (" + c.Issuer + ")"
		}
		path := dash(c.Path)
		if c.Path != "" && !c.FilesDeployed {
			path += " (none yet)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", c.Name, stateLabel(c), domains, account, dash(c.KeyType),
			absolute(c.NotAfter, now), next(c.NextAction, c.NextActionAt, now), c.Failures, path, dash(truncate(c.LastError, 70)))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLAIM\tACCOUNT\tSTATUS\tEXPIRES\tNEXT\tFAILURES\tLAST ERROR")
	for _, c := range rep.Claims {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", c.Domain, c.Account, c.Status, absolute(c.ExpiresAt, now),
			next(c.NextAction, c.NextActionAt, now), c.Failures, dash(truncate(c.LastError, 70)))
	}
	tw.Flush()
	if len(rep.Hosts) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "HOST\tSTATE\tLAST PASS\tPID")
		for _, h := range rep.Hosts {
			state := "up"
			if !h.Up {
				state = "DOWN"
			}
			at := h.LastPass
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", h.Host, state, absolute(&at, now), h.PID)
		}
		tw.Flush()
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CERTIFICATE\tHOST\tDEPLOY\tSERIAL\tAT\tERROR")
		for _, c := range rep.Certificates {
			for _, h := range c.Hosts {
				state := h.State
				if !h.Current {
					state += " (behind)"
				}
				at := h.At
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, h.Host, state, dash(h.Serial), absolute(&at, now), dash(truncate(h.Error, 60)))
			}
		}
		tw.Flush()
	}
	if len(rep.Accounts) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PAUSED ACCOUNT\tUNTIL\tREASON")
		for _, a := range rep.Accounts {
			at := a.PausedUntil
			fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Account, absolute(&at, now), truncate(a.Reason, 90))
		}
		tw.Flush()
	}
	if !rep.Healthy {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "UNHEALTHY:")
		if rep.Daemon.Problem != "" {
			fmt.Fprintf(w, "  daemon: %s\n", rep.Daemon.Problem)
		}
		for _, c := range rep.Certificates {
			if c.Problem != "" {
				fmt.Fprintf(w, "  %s: %s\n", c.Name, c.Problem)
			}
		}
	}
}

// printCertificate is `certd status NAME`: everything about one
// certificate.
func printCertificate(w io.Writer, rep statusReport, now time.Time) {
	c := rep.Certificates[0]
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("certificate", c.Name)
	row("state", stateLabel(c))
	row("domains", strings.Join(c.Domains, ", "))
	account := c.Account
	if c.Issuer != "" {
		account += " (" + c.Issuer + ")"
	}
	row("account", account)
	row("key type", dash(c.KeyType))
	row("serial", dash(c.Serial))
	if c.NotBefore != nil && c.NotAfter != nil {
		row("valid", fmt.Sprintf("%s to %s (expires %s)", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), relative(c.NotAfter, now)))
	}
	if c.PendingSince != nil {
		row("pending since", absolute(c.PendingSince, now))
	}
	deployed := "files in place"
	if !c.FilesDeployed {
		deployed = "no files there"
	}
	if c.Path != "" {
		row("deployed at", c.Path+" ("+deployed+")")
	}
	if c.NextActionAt != nil {
		row("next", c.NextAction+" at "+absolute(c.NextActionAt, now))
	}
	row("failures", fmt.Sprint(c.Failures))
	row("last error", dash(c.LastError))
	health := "ok"
	if c.Problem != "" {
		health = "UNHEALTHY: " + c.Problem
	}
	row("health", health)
	tw.Flush()
	printDaemon(w, rep.Daemon, now)
}

func printDaemon(w io.Writer, d daemonStatus, now time.Time) {
	last := "no pass completed yet"
	if d.LastPass != nil {
		last = "last pass " + absolute(d.LastPass, now)
	}
	switch {
	case d.Running && d.Problem != "":
		fmt.Fprintf(w, "daemon: STALLED (pid %d): %s\n", d.PID, d.Problem)
	case d.Running:
		fmt.Fprintf(w, "daemon: running (pid %d), %s\n", d.PID, last)
	case d.Required:
		fmt.Fprintf(w, "daemon: NOT RUNNING, %s\n", last)
	default:
		fmt.Fprintf(w, "daemon: not running (not required: -no-daemon), %s\n", last)
	}
}

// stateLabel is the state as the table shows it.
func stateLabel(c certStatus) string {
	s := c.State
	switch {
	case !c.Configured && c.State != store.StateRetired:
		s += " (not in the configuration)"
	case c.State == store.StateRetired && c.FilesDeployed:
		s += " (FILES STILL DEPLOYED)"
	case c.NotAfter != nil && c.Emergency:
		s += " (EMERGENCY)"
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func next(action string, at *time.Time, now time.Time) string {
	if action == "" || at == nil {
		return "-"
	}
	return action + " " + relative(at, now)
}

// absolute renders t as "2026-03-01T12:00:00Z (in 3d4h)".
func absolute(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339) + " (" + relative(t, now) + ")"
}

// relative renders t as "in 3d4h", "5m ago" or "now".
func relative(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	d := t.Sub(now)
	switch {
	case d > -time.Second && d < time.Second:
		return "now"
	case d > 0:
		return "in " + human(d)
	default:
		return human(-d) + " ago"
	}
}

func human(d time.Duration) string {
	days := int(d / (24 * time.Hour))
	hours := int(d % (24 * time.Hour) / time.Hour)
	mins := int(d % time.Hour / time.Minute)
	switch {
	case days > 0:
		return fmt.Sprintf("%dd%dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh%dm", hours, mins)
	case mins > 0:
		return fmt.Sprintf("%dm", mins)
	default:
		return fmt.Sprintf("%ds", int(d/time.Second))
	}
}
