package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/certd/certd/config"
	"github.com/certd/certd/store"
)

// cmdEvents prints the event log, oldest first.
func cmdEvents(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("events", stderr)
	path := fs.String("config", DefaultConfig, "configuration file (names the store)")
	since := fs.String("since", "", "only events this recent (a duration such as 2h or 7d) or since a time (RFC 3339)")
	limit := fs.Int("n", 0, "at most the newest N events")
	asJSON := fs.Bool("json", false, "print JSON lines for scripts")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	f := store.EventFilter{Limit: *limit}
	if fs.NArg() > 1 {
		fmt.Fprintln(stderr, "usage: certd events [-config FILE] [-since D] [-n N] [-json] [NAME]")
		return exitUsage
	}
	if fs.NArg() == 1 {
		f.CertName = fs.Arg(0)
	}
	if *since != "" {
		if d, err := config.ParseDuration(*since); err == nil {
			f.Since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, *since); err == nil {
			f.Since = t
		} else {
			fmt.Fprintf(stderr, "certd events: -since %q is neither a duration (2h, 7d) nor an RFC 3339 time\n", *since)
			return exitUsage
		}
	}
	_, st, code, ok := openFromConfig(*path, stderr)
	if !ok {
		return code
	}
	defer st.Close()
	events, err := st.ListEvents(context.Background(), f)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	enc := json.NewEncoder(stdout)
	for _, e := range events {
		if *asJSON {
			_ = enc.Encode(map[string]any{"id": e.ID, "at": e.At, "level": e.Level, "kind": e.Kind, "cert": e.CertName,
				"claim": e.Claim, "account": e.Account, "message": e.Message, "fields": e.Fields})
			continue
		}
		subject := e.CertName
		if subject == "" {
			subject = e.Claim
		}
		fmt.Fprintf(stdout, "%s  %-5s  %-16s %-24s %s%s\n", e.At.Local().Format("2006-01-02 15:04:05"), strings.ToUpper(e.Level),
			e.Kind, dash(subject), e.Message, fieldsNote(e.Fields))
	}
	return exitOK
}

func fieldsNote(f map[string]string) string {
	if len(f) == 0 {
		return ""
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+f[k])
	}
	return " (" + strings.Join(parts, " ") + ")"
}
