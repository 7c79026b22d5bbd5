package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/config"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

const ordersUsage = `Usage:
  certd orders list    [-config FILE]            open orders: state, the CA's reference, when sent, last error
  certd orders found   [-config FILE] NAME REF   the CA holds NAME's open order as REF (found in its portal): collect it
  certd orders absent  [-config FILE] NAME       the CA holds no such order: send the same order again
  certd orders abandon [-config FILE] NAME       give the open order up; the next attempt places a new one
                                                 (on a paid CA, cancel it at the CA first)
`

func cmdOrders(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, ordersUsage)
		return exitUsage
	}
	sub := args[0]
	fs := newFlags("orders "+sub, stderr)
	path := fs.String("config", DefaultConfig, "configuration file")
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	cfg, st, code, ok := openFromConfig(*path, stderr)
	if !ok {
		return code
	}
	defer st.Close()
	ctx := context.Background()
	want := map[string]int{"list": 0, "found": 2, "absent": 1, "abandon": 1}
	n, known := want[sub]
	if !known || fs.NArg() != n {
		fmt.Fprint(stderr, ordersUsage)
		return exitUsage
	}
	if sub == "list" {
		open, err := st.OpenOrders(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "certd: %v\n", err)
			return exitFailure
		}
		now := time.Now()
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CERTIFICATE\tORDER\tACCOUNT\tSTATE\tCA REF\tSENT\tLAST ERROR")
		for _, o := range open {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.CertName, o.IdempotencyKey, o.Account, o.State, dash(o.CARef),
				relative(timePtr(o.SentAt), now), dash(truncate(o.LastError, 80)))
		}
		tw.Flush()
		return exitOK
	}
	ref := ""
	if sub == "found" {
		ref = fs.Arg(1)
	}
	if sub == "abandon" {
		if code := cancelAtCA(ctx, cfg, st, fs.Arg(0), stdout, stderr); code != exitOK {
			return code
		}
	}
	o, err := scheduler.ResolveOrder(ctx, st, fs.Arg(0), scheduler.Resolution(sub), ref)
	if err != nil {
		fmt.Fprintf(stderr, "certd orders %s: %v\n", sub, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: order %s is now %s; a running daemon takes it up at its next pass (or run `certd run -once`)\n", fs.Arg(0), o.IdempotencyKey, o.State)
	return exitOK
}

// cancelAtCA withdraws the certificate's open order at its CA, when the CA
// can (ca.Canceler), and says what became of its price.
func cancelAtCA(ctx context.Context, cfg *config.Config, st store.Store, name string, stdout, stderr io.Writer) int {
	open, err := st.OpenOrders(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	var o *store.Order
	for i := range open {
		if open[i].CertName == name {
			o = &open[i]
		}
	}
	if o == nil || o.CARef == "" {
		return exitOK // nothing at the CA to withdraw (or no open order: ResolveOrder says so)
	}
	p, err := build(cfg, st, zap.NewNop(), observers{})
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitUsage
	}
	c, ok := p.issuers[o.Account].(ca.Canceler)
	if !ok {
		fmt.Fprintf(stdout, "%s: account %s's CA cannot withdraw orders through its API; cancel order %s in its portal\n", name, o.Account, o.CARef)
		return exitOK
	}
	refund, err := c.Cancel(ctx, ca.Order{Ref: o.CARef})
	if err != nil {
		fmt.Fprintf(stderr, "certd orders abandon: withdrawing order %s at the CA: %v\n", o.CARef, err)
		return exitFailure
	}
	msg := fmt.Sprintf("order %s withdrawn at the CA: %s", o.CARef, refund)
	_, _ = st.AppendEvent(ctx, store.Event{Level: "warn", Kind: "order_cancelled", CertName: name, Account: o.Account, Message: msg})
	fmt.Fprintf(stdout, "%s: %s\n", name, msg)
	return exitOK
}
