package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// cmdRevoke revokes a certificate's deployed version at its CA and makes
// the certificate due for a new one at once (a running daemon takes it up
// at its next pass).
func cmdRevoke(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("revoke", stderr)
	path := fs.String("config", DefaultConfig, "configuration file")
	reason := fs.String("reason", string(ca.ReasonUnspecified), "RFC 5280 reason: "+reasonList())
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: certd revoke [-config FILE] [-reason R] NAME")
		return exitUsage
	}
	if !slices.Contains(ca.RevocationReasons(), ca.RevocationReason(*reason)) {
		fmt.Fprintf(stderr, "certd revoke: unknown reason %q (one of %s)\n", *reason, reasonList())
		return exitUsage
	}
	name := fs.Arg(0)
	cfg, st, code, ok := openFromConfig(*path, stderr)
	if !ok {
		return code
	}
	defer st.Close()
	ctx := context.Background()
	c, err := st.GetCertificate(ctx, name)
	if err != nil || c.CurrentVersion == 0 {
		fmt.Fprintf(stderr, "certd revoke: %s has no deployed version to revoke\n", name)
		return exitUsage
	}
	v, err := st.GetVersion(ctx, c.CurrentVersion)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	o, err := st.GetOrder(ctx, v.OrderID)
	if err != nil || o.CARef == "" {
		fmt.Fprintf(stderr, "certd revoke: the order of %s's serial %s is not known; revoke it in the CA's portal\n", name, v.Serial)
		return exitFailure
	}
	leafs, err := pemutil.Certificates(v.CertPEM)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	p, err := build(cfg, st, zap.NewNop(), observers{})
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitUsage
	}
	r, ok := p.issuers[c.Account].(ca.Revoker)
	if !ok {
		fmt.Fprintf(stderr, "certd revoke: account %s's CA cannot revoke through its API; revoke serial %s in its portal\n", c.Account, v.Serial)
		return exitFailure
	}
	if a, ok := cfg.Accounts[c.Account]; ok && a.Type == "reseller" {
		fmt.Fprintln(stdout, "the reseller API revokes by deleting the certificate object: it is disabled at once, and refunded only inside the plan's grace period")
	}
	if err := r.Revoke(ctx, ca.Order{Ref: o.CARef}, leafs[0], ca.RevocationReason(*reason)); err != nil {
		fmt.Fprintf(stderr, "certd revoke: %s: %v\n", name, err)
		return exitFailure
	}
	if err := st.UpdateCertificate(ctx, name, func(c *store.Certificate) error {
		c.NextAction, c.NextActionAt = scheduler.ActionRenew, time.Now()
		return nil
	}); err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	msg := fmt.Sprintf("serial %s revoked by an operator (%s); a new certificate is due now", v.Serial, *reason)
	_, _ = st.AppendEvent(ctx, store.Event{Level: "warn", Kind: "revoked", CertName: name, Account: c.Account, Message: msg})
	fmt.Fprintf(stdout, "%s: %s (a running daemon takes it up at its next pass, or run `certd renew %s`)\n", name, msg, name)
	return exitOK
}

func reasonList() string {
	var out []string
	for _, r := range ca.RevocationReasons() {
		out = append(out, string(r))
	}
	return strings.Join(out, ", ")
}
