package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", stderr)
	path := fs.String("config", DefaultConfig, "configuration file (names the store)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, st, code, ok := openFromConfig(*path, stderr)
	if !ok {
		return code
	}
	defer st.Close()
	ctx := context.Background()
	certs, err := st.ListCertificates(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	claims, err := st.ListClaims(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	holds, err := st.AccountHolds(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	rep := buildStatus(certs, claims, time.Now())
	for _, h := range holds {
		if h.Until.After(time.Now()) {
			rep.Accounts = append(rep.Accounts, accountStatus{Account: h.Account, PausedUntil: h.Until, Reason: h.Reason})
		}
	}
	for i := range rep.Certificates {
		if a, ok := cfg.Accounts[rep.Certificates[i].Account]; ok {
			rep.Certificates[i].Issuer = a.Type
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "certd: %v\n", err)
			return exitFailure
		}
	} else {
		printStatus(stdout, rep, time.Now())
	}
	if rep.Unhealthy > 0 {
		return exitFailure
	}
	return exitOK
}

// statusReport is the JSON shape of `certd status -json`; field names are
// a stable interface for scripts.
type statusReport struct {
	Certificates []certStatus  `json:"certificates"`
	Claims       []claimStatus `json:"claims"`
	// Accounts lists CA accounts paused by a Retry-After.
	Accounts []accountStatus `json:"accounts"`
	// Unhealthy counts certificates failing, needing an operator or
	// inside their emergency window; non-zero makes status exit 1.
	Unhealthy int `json:"unhealthy"`
}

// accountStatus is a CA account that asked certd to wait.
type accountStatus struct {
	Account     string    `json:"account"`
	PausedUntil time.Time `json:"paused_until"`
	Reason      string    `json:"reason"`
}

type certStatus struct {
	Name         string     `json:"name"`
	Domains      []string   `json:"domains"`
	Account      string     `json:"account"`
	Issuer       string     `json:"issuer,omitempty"`
	State        string     `json:"state"`
	Serial       string     `json:"serial,omitempty"`
	NotAfter     *time.Time `json:"not_after,omitempty"`
	NextAction   string     `json:"next_action,omitempty"`
	NextActionAt *time.Time `json:"next_action_at,omitempty"`
	Failures     int        `json:"failures"`
	LastError    string     `json:"last_error,omitempty"`
	Emergency    bool       `json:"emergency"`
}

type claimStatus struct {
	Account      string     `json:"account"`
	Domain       string     `json:"domain"`
	Status       string     `json:"status"`
	ClaimID      string     `json:"claim_id,omitempty"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
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

func buildStatus(certs []store.Certificate, claims []store.Claim, now time.Time) statusReport {
	rep := statusReport{Certificates: []certStatus{}, Claims: []claimStatus{}, Accounts: []accountStatus{}}
	for _, c := range certs {
		cs := certStatus{Name: c.Name, Domains: c.Domains, Account: c.Account, State: c.State, NextAction: c.NextAction,
			NextActionAt: timePtr(c.NextActionAt), Failures: c.Failures, LastError: c.LastError}
		if c.Current != nil {
			cs.Serial, cs.NotAfter = c.Current.Serial, timePtr(c.Current.NotAfter)
			cs.Emergency = c.State != store.StateRetired && scheduler.InEmergency(c.Current.NotBefore, c.Current.NotAfter, now)
		}
		if cs.Emergency || c.State == store.StateFailing || c.State == store.StateNeedsOperator {
			rep.Unhealthy++
		}
		rep.Certificates = append(rep.Certificates, cs)
	}
	for _, c := range claims {
		rep.Claims = append(rep.Claims, claimStatus{Account: c.Account, Domain: c.Domain, Status: c.Status, ClaimID: c.CAClaimID,
			ExpiresAt: timePtr(c.ExpiresAt), NextAction: c.NextAction, NextActionAt: timePtr(c.NextActionAt),
			Failures: c.Failures, LastError: c.LastError})
	}
	return rep
}

func printStatus(w io.Writer, rep statusReport, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tDOMAINS\tACCOUNT\tISSUER\tSTATE\tSERIAL\tEXPIRES\tNEXT\tFAILURES\tLAST ERROR")
	for _, c := range rep.Certificates {
		domains := strings.Join(c.Domains, ",")
		if len(c.Domains) > 2 {
			domains = fmt.Sprintf("%s,%s +%d", c.Domains[0], c.Domains[1], len(c.Domains)-2)
		}
		state := c.State
		if c.Emergency {
			state += " (EMERGENCY)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", c.Name, domains, c.Account, dash(c.Issuer), state, dash(c.Serial),
			relative(c.NotAfter, now), next(c.NextAction, c.NextActionAt, now), c.Failures, dash(truncate(c.LastError, 70)))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLAIM\tACCOUNT\tSTATUS\tEXPIRES\tNEXT\tFAILURES\tLAST ERROR")
	for _, c := range rep.Claims {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", c.Domain, c.Account, c.Status, relative(c.ExpiresAt, now),
			next(c.NextAction, c.NextActionAt, now), c.Failures, dash(truncate(c.LastError, 70)))
	}
	tw.Flush()
	if len(rep.Accounts) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PAUSED ACCOUNT\tUNTIL\tREASON")
		for _, a := range rep.Accounts {
			at := a.PausedUntil
			fmt.Fprintf(tw, "%s\t%s (%s)\t%s\n", a.Account, at.UTC().Format(time.RFC3339), relative(&at, now), truncate(a.Reason, 90))
		}
		tw.Flush()
	}
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
