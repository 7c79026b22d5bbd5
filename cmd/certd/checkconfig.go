package main

import (
	"fmt"
	"io"
)

func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check-config", stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	path := DefaultConfig
	switch fs.NArg() {
	case 0:
	case 1:
		path = fs.Arg(0)
	default:
		fmt.Fprintln(stderr, "certd check-config: expected at most one file")
		return exitUsage
	}
	cfg, err := loadConfig(path)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s: ok (%d files, %d certificates, %d accounts, %d DNS providers, %d HTTP targets)\n",
		path, len(cfg.Files), len(cfg.Certificates), len(cfg.Accounts), len(cfg.DNS), len(cfg.HTTP))
	return exitOK
}
