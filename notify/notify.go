// Package notify tells people when certd needs them: a webhook (JSON, or
// a Slack-compatible body) and email over SMTP with STARTTLS. Messages are
// deduplicated (the same problem is not repeated within an interval) and
// rate-limited (a broken account does not flood anyone). It imports
// nothing of certd; cmd/certd decides what to send.
package notify

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Kinds of message.
const (
	KindFailure   = "failure"   // attempts keep failing
	KindExpiring  = "expiring"  // the deployed certificate expires soon and renewal fails
	KindRecovered = "recovered" // a reported problem is over
	KindSuccess   = "success"   // a certificate was renewed (when asked for)
)

// Message is one notification.
type Message struct {
	Kind    string
	Cert    string
	Account string
	Domains []string
	// Key identifies the problem for deduplication (default Kind+Cert).
	Key     string
	Subject string
	Text    string
	At      time.Time
}

// Sender delivers a message somewhere. Implementations MUST honour ctx.
type Sender interface {
	Name() string
	Send(ctx context.Context, m Message) error
}

// Notifier sends messages through every sender, at most once per key per
// MinInterval and at most MaxPerHour in any hour.
type Notifier struct {
	MinInterval time.Duration // default 6h
	MaxPerHour  int           // default 20
	Now         func() time.Time

	mu       sync.Mutex
	senders  []Sender
	last     map[string]time.Time
	window   []time.Time
	reported map[string]bool // certs with an open failure report
}

func (n *Notifier) now() time.Time {
	if n.Now == nil {
		return time.Now()
	}
	return n.Now()
}

// ErrSuppressed: the message was a duplicate or over the rate limit.
var ErrSuppressed = errors.New("notify: suppressed (duplicate or rate limit)")

// Notify sends m unless it repeats a message sent within MinInterval or
// the hourly budget is spent. A send failure of one sender does not stop
// the others; their errors are joined.
func (n *Notifier) Notify(ctx context.Context, m Message) error {
	n.mu.Lock()
	senders := n.senders
	n.mu.Unlock()
	if len(senders) == 0 {
		return nil
	}
	if m.At.IsZero() {
		m.At = n.now()
	}
	if m.Key == "" {
		m.Key = m.Kind + "/" + m.Cert
	}
	minInterval, maxPerHour := n.MinInterval, n.MaxPerHour
	if minInterval == 0 {
		minInterval = 6 * time.Hour
	}
	if maxPerHour == 0 {
		maxPerHour = 20
	}
	n.mu.Lock()
	if n.last == nil {
		n.last, n.reported = map[string]time.Time{}, map[string]bool{}
	}
	now := n.now()
	if t, ok := n.last[m.Key]; ok && now.Sub(t) < minInterval {
		n.mu.Unlock()
		return ErrSuppressed
	}
	kept := n.window[:0]
	for _, t := range n.window {
		if now.Sub(t) < time.Hour {
			kept = append(kept, t)
		}
	}
	n.window = kept
	if len(n.window) >= maxPerHour {
		n.mu.Unlock()
		return ErrSuppressed
	}
	n.last[m.Key] = now
	n.window = append(n.window, now)
	switch m.Kind {
	case KindFailure, KindExpiring:
		n.reported[m.Cert] = true
	case KindRecovered, KindSuccess:
		delete(n.reported, m.Cert)
		delete(n.last, KindFailure+"/"+m.Cert)
		delete(n.last, KindExpiring+"/"+m.Cert)
	}
	n.mu.Unlock()
	var errs []error
	for _, s := range senders {
		if err := s.Send(ctx, m); err != nil {
			errs = append(errs, fmt.Errorf("notify: %s: %w", s.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// SetSenders replaces where messages go (after a reload); what was sent
// and when is kept.
func (n *Notifier) SetSenders(s []Sender) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.senders = s
}

// Reported reports whether a failure of cert was notified and not yet
// followed by a recovery.
func (n *Notifier) Reported(cert string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reported[cert]
}

// render is the plain-text body shared by the senders.
func render(m Message) string {
	var b strings.Builder
	b.WriteString(m.Text)
	b.WriteString("\n\n")
	fields := map[string]string{"certificate": m.Cert, "account": m.Account, "domains": strings.Join(m.Domains, ", "),
		"kind": m.Kind, "time": m.At.UTC().Format(time.RFC3339)}
	keys := make([]string, 0, len(fields))
	for k, v := range fields {
		if v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %s\n", k, fields[k])
	}
	return b.String()
}
