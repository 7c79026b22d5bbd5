package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/certd/certd/config"
	"github.com/certd/certd/store"
)

// TestJournalPrioritiesAndDurationUnits: under journald every line starts
// with its syslog priority; durations always carry their unit; on a
// terminal, console lines carry the time since the start.
func TestJournalPrioritiesAndDurationUnits(t *testing.T) {
	for _, format := range []string{"json", "console"} {
		var buf bytes.Buffer
		log := buildLogger(config.Log{Level: "debug", Format: format}, zap.NewAtomicLevel(), &buf, logTarget{journal: true})
		log.Debug("d")
		log.Info("i", zap.Duration("took", 4200*time.Microsecond))
		log.Warn("w")
		log.Error("e")
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 4 {
			t.Fatalf("%s: %d lines: %q", format, len(lines), lines)
		}
		for i, p := range []string{"<7>", "<6>", "<4>", "<3>"} {
			if !strings.HasPrefix(lines[i], p) {
				t.Errorf("%s: line %d %q does not start with %s", format, i, lines[i], p)
			}
		}
		if !strings.Contains(lines[1], "4.2ms") {
			t.Errorf("%s: duration without its unit: %s", format, lines[1])
		}
	}
	var buf bytes.Buffer
	log := buildLogger(config.Log{Level: "info", Format: "json"}, zap.NewAtomicLevel(), &buf, logTarget{})
	log.Info("i", zap.Duration("took", 1500*time.Millisecond))
	if !strings.Contains(buf.String(), `"took":"1.5s"`) || strings.HasPrefix(buf.String(), "<") {
		t.Errorf("plain JSON line: %s", buf.String())
	}
	buf.Reset()
	log = buildLogger(config.Log{Level: "info", Format: "console"}, zap.NewAtomicLevel(), &buf, logTarget{terminal: true})
	log.Info("step")
	if !regexp.MustCompile(`^\d\d:\d\d:\d\d +\+\d+\.\d{3}s\s+INFO\s+step`).MatchString(buf.String()) {
		t.Errorf("terminal line without the elapsed time: %q", buf.String())
	}
	// JOURNAL_STREAM must name the very stream written to.
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t.Setenv("JOURNAL_STREAM", "1:2")
	if underJournal(f) || underJournal(&buf) {
		t.Error("a file that is not the journal stream taken for it")
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	if !underJournal(f) {
		t.Error("the stream JOURNAL_STREAM names is not recognised")
	}
}

func TestEventsFollow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "certd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, _ = st.AppendEvent(ctx, store.Event{Level: "info", Kind: "first", Message: "before"})
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- printEvents(ctx, st, store.EventFilter{}, true, 20*time.Millisecond, false, out) }()
	out.waitFor(t, "before")
	_, _ = st.AppendEvent(ctx, store.Event{Level: "warn", Kind: "second", CertName: "www", Message: "after"})
	_, _ = st.AppendEvent(ctx, store.Event{Level: "info", Kind: "third", Message: "later"})
	out.waitFor(t, "later")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.Count(s, "before") != 1 || strings.Count(s, "after") != 1 || strings.Index(s, "after") > strings.Index(s, "later") {
		t.Errorf("followed events, each once and in order:\n%s", s)
	}
}
