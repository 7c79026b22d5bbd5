package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

const claimsUsage = `Usage:
  certd claims list     [-config FILE] [-json]              claims in the store, with their expiry
  certd claims verify   [-config FILE] -account A DOMAIN    prove the claim now if it is not verified
  certd claims reassert [-config FILE] -account A DOMAIN    get a new token and prove the claim again
  certd claims delete   [-config FILE] -account A DOMAIN    delete the claim at the CA and in the store
`

func cmdClaims(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, claimsUsage)
		return exitUsage
	}
	sub := args[0]
	fs := newFlags("claims "+sub, stderr)
	path := fs.String("config", DefaultConfig, "configuration file")
	account := fs.String("account", "", "the CA account (when there is more than one)")
	asJSON := fs.Bool("json", false, "list: print JSON for scripts")
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	cfg, st, code, ok := openFromConfig(*path, stderr)
	if !ok {
		return code
	}
	defer st.Close()
	ctx := context.Background()
	if sub == "list" {
		claims, err := st.ListClaims(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "certd: %v\n", err)
			return exitFailure
		}
		now := time.Now()
		if *asJSON {
			out := []claimStatus{}
			for _, c := range claims {
				out = append(out, claimStatus{Account: c.Account, Domain: c.Domain, Status: c.Status, Method: c.Method, ClaimID: c.CAClaimID,
					ExpiresAt: timePtr(c.ExpiresAt), AssertBy: timePtr(c.AssertBy), NextAction: c.NextAction, NextActionAt: timePtr(c.NextActionAt),
					Failures: c.Failures, LastError: c.LastError})
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(out); err != nil {
				fmt.Fprintf(stderr, "certd: %v\n", err)
				return exitFailure
			}
			return exitOK
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DOMAIN\tACCOUNT\tSTATUS\tMETHOD\tCLAIM ID\tEXPIRES\tASSERT BY\tNEXT\tLAST ERROR")
		for _, c := range claims {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Domain, c.Account, c.Status, dash(c.Method), dash(c.CAClaimID),
				absolute(timePtr(c.ExpiresAt), now), absolute(timePtr(c.AssertBy), now), next(c.NextAction, timePtr(c.NextActionAt), now),
				dash(truncate(c.LastError, 60)))
		}
		tw.Flush()
		return exitOK
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, claimsUsage)
		return exitUsage
	}
	domain := fs.Arg(0)
	if *account == "" {
		if len(cfg.Accounts) != 1 {
			fmt.Fprintln(stderr, "certd claims: -account is required when the configuration has several accounts")
			return exitUsage
		}
		for name := range cfg.Accounts {
			*account = name
		}
	}
	log := newLogger(cfg.Log, zap.NewAtomicLevel(), stderr)
	p, err := build(cfg, st, log, observers{})
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitUsage
	}
	claims := &scheduler.Claims{Store: st, Log: log.Named("claims")}
	switch sub {
	case "verify", "reassert":
		if err := p.ensureClaim(ctx, claims, *account, domain, sub == "reassert"); err != nil {
			fmt.Fprintf(stderr, "certd: %v\n", err)
			return exitFailure
		}
		c, _ := st.GetClaim(ctx, *account, domain)
		fmt.Fprintf(stdout, "%s: %s until %s\n", domain, c.Status, c.ExpiresAt.UTC().Format(time.RFC3339))
		return exitOK
	case "delete":
		return deleteClaim(ctx, p, st, *account, domain, stdout, stderr)
	}
	fmt.Fprintf(stderr, "certd claims: unknown command %q\n\n%s", sub, claimsUsage)
	return exitUsage
}

func deleteClaim(ctx context.Context, p *parts, st store.Store, account, domain string, stdout, stderr io.Writer) int {
	is, ok := p.issuers[account]
	if !ok {
		fmt.Fprintf(stderr, "certd: account %s has no issuer in this release\n", account)
		return exitFailure
	}
	deleter, ok := is.(interface {
		DeleteAuthorization(ctx context.Context, id string) error
	})
	if !ok {
		fmt.Fprintf(stderr, "certd: account %s's CA has no account-level claims\n", account)
		return exitFailure
	}
	c, err := st.GetClaim(ctx, account, domain)
	if err != nil || c.CAClaimID == "" {
		fmt.Fprintf(stderr, "certd: no stored claim on %s for %s\n", domain, account)
		return exitFailure
	}
	if err := deleter.DeleteAuthorization(ctx, c.CAClaimID); err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	if err := st.UpdateClaim(ctx, account, domain, func(c *store.Claim) error {
		c.Status, c.Token, c.NextAction, c.NextActionAt = "DELETED", "", "", time.Time{}
		return nil
	}); err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	_, _ = st.AppendEvent(ctx, store.Event{Level: "info", Kind: "claim_deleted", Claim: domain, Account: account, Message: "claim " + c.CAClaimID + " deleted by an operator"})
	fmt.Fprintf(stdout, "%s: claim %s deleted\n", domain, c.CAClaimID)
	return exitOK
}
