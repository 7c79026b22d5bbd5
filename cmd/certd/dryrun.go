package main

import (
	"context"
	"fmt"
	"io"

	"go.uber.org/zap"

	"github.com/certd/certd/config"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// dryRun rehearses a renewal of name (scheduler.Rehearse) and prints
// what it found; no CA is called.
func dryRun(cfg *config.Config, st *store.SQLite, name string, stdout, stderr io.Writer) int {
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
	stopResponders, err := serveResponders(p.responders, log)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	defer stopResponders()
	r := scheduler.Rehearse(context.Background(), plan)
	for _, s := range r.Steps {
		fmt.Fprintf(stdout, "dry run: %s\n", s)
	}
	if !r.OK {
		fmt.Fprintf(stdout, "dry run: %s would not renew cleanly; no order was placed\n", name)
		return exitFailure
	}
	fmt.Fprintf(stdout, "dry run: %s would renew cleanly; no order was placed\n", name)
	return exitOK
}
