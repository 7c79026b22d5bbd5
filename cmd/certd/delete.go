package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/certd/certd/deploy"
	"github.com/certd/certd/store"
)

// cmdDelete removes the deployed files of a certificate the configuration
// no longer lists (retired): the live link, then every stored version
// with its private key. Its history (orders, versions, events) stays in
// the store. A configured certificate is refused: certd would order it
// again at once. Nothing is revoked; `certd revoke` first if it must be.
func cmdDelete(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("delete", stderr)
	path := fs.String("config", DefaultConfig, "configuration file")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: certd delete [-config FILE] NAME")
		return exitUsage
	}
	name := fs.Arg(0)
	cfg, st, code, ok := openFromConfig(*path, stderr)
	if !ok {
		return code
	}
	defer st.Close()
	for _, c := range cfg.Certificates {
		if c.Name == name {
			fmt.Fprintf(stderr, "certd delete: %s is in the configuration (%s); remove it from there first and reload, or certd orders it again\n", name, *path)
			return exitUsage
		}
	}
	ctx := context.Background()
	c, err := st.GetCertificate(ctx, name)
	if err != nil {
		fmt.Fprintf(stderr, "certd delete: no certificate %s in the store\n", name)
		return exitUsage
	}
	if c.State != store.StateRetired {
		fmt.Fprintf(stderr, "certd delete: %s is %s, not retired: a running daemon has not yet read the configuration without it (reload it first)\n", name, c.State)
		return exitUsage
	}
	deps, err := st.ListDeployments(ctx, name)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	removed := map[string]bool{}
	for _, d := range deps {
		if d.Dir == "" || removed[d.Dir] || filepath.Base(d.Dir) != name {
			continue
		}
		found, err := deploy.Remove(deploy.Spec{Name: name, Dir: filepath.Dir(d.Dir)})
		if err != nil {
			fmt.Fprintf(stderr, "certd delete: %s: %v (nothing else was removed there)\n", d.Dir, err)
			return exitFailure
		}
		removed[d.Dir] = true
		if found {
			fmt.Fprintf(stdout, "%s: removed %s and its stored versions\n", name, d.Dir)
		}
	}
	for _, d := range deps {
		if removed[d.Dir] && d.State == "live" {
			d.State, d.FinishedAt = "removed", time.Now()
			if err := st.SaveDeployment(ctx, d); err != nil {
				fmt.Fprintf(stderr, "certd: %v\n", err)
				return exitFailure
			}
		}
	}
	msg := fmt.Sprintf("deployed files removed by an operator (%d location(s)); the history is kept", len(removed))
	_, _ = st.AppendEvent(ctx, store.Event{Level: "warn", Kind: "deleted", CertName: name, Account: c.Account, Message: msg})
	fmt.Fprintf(stdout, "%s: %s\n", name, msg)
	return exitOK
}
