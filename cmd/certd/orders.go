package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/certd/certd/scheduler"
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
	_, st, code, ok := openFromConfig(*path, stderr)
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
	o, err := scheduler.ResolveOrder(ctx, st, fs.Arg(0), scheduler.Resolution(sub), ref)
	if err != nil {
		fmt.Fprintf(stderr, "certd orders %s: %v\n", sub, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: order %s is now %s; a running daemon takes it up at its next pass (or run `certd run -once`)\n", fs.Arg(0), o.IdempotencyKey, o.State)
	return exitOK
}
