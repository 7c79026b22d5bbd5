package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
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
	follow := fs.Bool("f", false, "follow: after the log so far, print events as they are appended until interrupted")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	f := store.EventFilter{Limit: *limit}
	if fs.NArg() > 1 {
		fmt.Fprintln(stderr, "usage: certd events [-config FILE] [-since D] [-n N] [-json] [-f] [NAME]")
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
	ctx := context.Background()
	if *follow {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	if err := printEvents(ctx, st, f, *follow, time.Second, *asJSON, stdout); err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// printEvents prints the events f selects; with follow, it then looks for
// newer ones every interval and prints them as they come, until ctx ends.
func printEvents(ctx context.Context, st store.Events, f store.EventFilter, follow bool, interval time.Duration, asJSON bool, stdout io.Writer) error {
	events, err := st.ListEvents(ctx, f)
	if err != nil {
		return err
	}
	var last store.Event
	enc := json.NewEncoder(stdout)
	print := func(events []store.Event) {
		for _, e := range events {
			if e.ID <= last.ID {
				continue
			}
			last = e
			if asJSON {
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
	}
	print(events)
	if !follow {
		return nil
	}
	f.Limit = 0
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if last.ID > 0 {
			// Events are appended in time order; ids above last's are new.
			f.Since = last.At.Add(-time.Second)
		}
		events, err := st.ListEvents(ctx, f)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		print(events)
	}
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
