package dcv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// Record is one artefact the engine creates, as journaled: it is written
// before the artefact exists and updated as it is published and removed.
type Record struct {
	ID       int64
	Owner    string // who it is for: "claim:<account>/<domain>", "cert:<name>"
	Kind     string // "dns-txt" or "http-file"
	Provider string // the DNS provider or HTTP target's name in config
	Zone     string // DNS zone (no trailing dot)
	Name     string // record name (no trailing dot) or URL path
	Value    string // TXT value or file content
	State    string // "intent", "published", "removed"
	Attempts int    // failed removals
	LastErr  string
	Updated  time.Time
}

// Journal persists Records. The engine never creates an artefact its
// journal has not recorded first (N6).
type Journal interface {
	// Record stores r in state intent and sets r.ID.
	Record(ctx context.Context, r *Record) error
	// Update saves r's state, zone, attempts and last error.
	Update(ctx context.Context, r Record) error
	// Live lists records not yet removed.
	Live(ctx context.Context) ([]Record, error)
}

// Target says where one challenge is published, from configuration.
type Target struct {
	// DNS names the DNS provider for DNS challenges.
	DNS string
	// Delegate, when set, is where the TXT record goes instead of the
	// challenge's RecordName: the CA follows a CNAME from RecordName to it.
	Delegate string
	// HTTP names the HTTP target for HTTP challenges.
	HTTP string
}

// Options configure an Engine.
type Options struct {
	DNS     map[string]DNSProvider
	HTTP    map[string]HTTPTarget
	Journal Journal
	// Resolvers (host:port) answer the engine's own queries: zone
	// discovery, NS lookup, CNAME checks. Default: /etc/resolv.conf.
	Resolvers []string
	// AuthServers, per DNS provider, are the authoritative servers
	// (host:port) that must all serve a record before the CA is asked.
	// Default: the zone's NS records, on port 53. Set it for split
	// horizon, and in tests.
	AuthServers map[string][]string
	// HTTPDial, when set, replaces the dialer of the HTTP self-check
	// (tests, hosts whose web server is not on port 80 of the name).
	HTTPDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout bounds the wait for visibility (default 2 minutes).
	Timeout time.Duration
	// TTL of published TXT records (default 60s).
	TTL    time.Duration
	Logger *zap.Logger
	// Observe, when set, is told how long each challenge took to become
	// visible, by provider (or HTTP target) and kind.
	Observe func(provider, kind string, d time.Duration)
}

// ErrNotVisible: a published challenge did not become visible in time.
var ErrNotVisible = errors.New("dcv: challenge not visible")

// Engine publishes challenges, waits until they are visible, and removes
// them.
type Engine struct {
	opts Options
	log  *zap.Logger
	dnsc *dns.Client
}

// NewEngine checks opts and returns an Engine.
func NewEngine(opts Options) (*Engine, error) {
	if opts.Journal == nil {
		return nil, errors.New("dcv: a journal is required")
	}
	if len(opts.Resolvers) == 0 {
		conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("dcv: no resolvers configured and /etc/resolv.conf unreadable: %w", err)
		}
		for _, s := range conf.Servers {
			opts.Resolvers = append(opts.Resolvers, net.JoinHostPort(s, conf.Port))
		}
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.TTL == 0 {
		opts.TTL = 60 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Engine{opts: opts, log: opts.Logger, dnsc: &dns.Client{Timeout: 3 * time.Second}}, nil
}

// Published is a challenge the engine has put in place.
type Published struct {
	Challenge Challenge
	Target    Target
	rec       Record
}

// Where is the DNS name or URL path that was published.
func (p *Published) Where() string { return p.rec.Name }

// Present publishes ch for owner, journaling it first. It returns quickly:
// waiting for visibility is Wait's job, so many challenges wait together.
func (e *Engine) Present(ctx context.Context, owner string, ch Challenge, t Target) (*Published, error) {
	p := &Published{Challenge: ch, Target: t}
	switch ch.Method {
	case DNSTXT:
		prov, ok := e.opts.DNS[t.DNS]
		if !ok {
			return nil, fmt.Errorf("dcv: unknown DNS provider %q", t.DNS)
		}
		if ch.Value == "" {
			return nil, errors.New("dcv: refusing to publish an empty TXT value")
		}
		name := ch.RecordName
		if t.Delegate != "" {
			name = t.Delegate
		}
		zone, err := e.findZone(ctx, name)
		if err != nil {
			return nil, err
		}
		p.rec = Record{Owner: owner, Kind: "dns-txt", Provider: t.DNS, Zone: zone, Name: name, Value: ch.Value, State: "intent"}
		if err := e.opts.Journal.Record(ctx, &p.rec); err != nil {
			return nil, fmt.Errorf("dcv: journaling TXT %s: %w", name, err)
		}
		rr := libdns.TXT{Name: libdns.RelativeName(name+".", zone+"."), TTL: e.opts.TTL, Text: ch.Value}
		if _, err := prov.AppendRecords(ctx, zone+".", []libdns.Record{rr}); err != nil {
			return p, fmt.Errorf("dcv: %s: adding TXT %s: %w", t.DNS, name, err)
		}
		e.log.Info("TXT record published", zap.String("domain", ch.Domain), zap.String("name", name), zap.String("zone", zone), zap.String("provider", t.DNS))
	case HTTPFile:
		tgt, ok := e.opts.HTTP[t.HTTP]
		if !ok {
			return nil, fmt.Errorf("dcv: unknown HTTP target %q", t.HTTP)
		}
		p.rec = Record{Owner: owner, Kind: "http-file", Provider: t.HTTP, Name: ch.Path, Value: ch.Content, State: "intent"}
		if err := e.opts.Journal.Record(ctx, &p.rec); err != nil {
			return nil, fmt.Errorf("dcv: journaling %s: %w", ch.Path, err)
		}
		if err := tgt.Put(ctx, ch.Path, []byte(ch.Content)); err != nil {
			return p, fmt.Errorf("dcv: %s: %w", t.HTTP, err)
		}
		e.log.Info("token file published", zap.String("domain", ch.Domain), zap.String("path", ch.Path), zap.String("target", t.HTTP))
	case Email:
		return p, nil // nothing to publish: the CA mails the approver
	default:
		return nil, fmt.Errorf("dcv: cannot publish a %s challenge", ch.Method)
	}
	p.rec.State = "published"
	if err := e.opts.Journal.Update(ctx, p.rec); err != nil {
		return p, fmt.Errorf("dcv: journaling: %w", err)
	}
	return p, nil
}

// Wait returns when every challenge is visible to the CA: a TXT record on
// every authoritative server of its zone (and, for delegation, the CNAME
// in place), an HTTP file answering 2xx with the exact content and no
// redirect. All challenges wait in parallel, with short first intervals.
func (e *Engine) Wait(ctx context.Context, ps []*Published) error {
	ctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	defer cancel()
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.wait(ctx, p)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (e *Engine) wait(ctx context.Context, p *Published) error {
	var check func(context.Context) error
	switch p.Challenge.Method {
	case DNSTXT:
		if p.Target.Delegate != "" {
			if err := e.checkDelegation(ctx, p.Challenge.RecordName, p.Target.Delegate); err != nil {
				return err
			}
		}
		servers, err := e.authServers(ctx, p.Target.DNS, p.rec.Zone)
		if err != nil {
			return err
		}
		check = func(ctx context.Context) error { return e.checkTXT(ctx, servers, p.rec.Name, p.rec.Value) }
	case HTTPFile:
		check = func(ctx context.Context) error {
			return e.checkHTTP(ctx, p.Challenge.Domain, p.Challenge.Path, p.Challenge.Content)
		}
	default:
		return nil
	}
	start := time.Now()
	interval := 100 * time.Millisecond
	for {
		err := check(ctx)
		if err == nil {
			e.log.Info("challenge visible", zap.String("domain", p.Challenge.Domain), zap.String("name", p.rec.Name), zap.Duration("after", time.Since(start)))
			if e.opts.Observe != nil {
				e.opts.Observe(p.rec.Provider, p.rec.Kind, time.Since(start))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s after %s: %w", ErrNotVisible, p.rec.Name, time.Since(start).Round(time.Millisecond), err)
		case <-time.After(interval):
		}
		interval = min(interval*2, 2*time.Second)
	}
}

// CleanUp removes what Present published, even after ctx is cancelled (a
// shutdown still cleans up). A removal that fails stays journaled and is
// retried by Reconcile.
func (e *Engine) CleanUp(ctx context.Context, ps []*Published) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	var errs []error
	for _, p := range ps {
		if p == nil || p.rec.ID == 0 {
			continue
		}
		if err := e.remove(ctx, &p.rec); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Reconcile removes every artefact the journal says is still out there:
// leftovers of failed removals and of a crash between publishing and
// cleaning up.
func (e *Engine) Reconcile(ctx context.Context) error {
	live, err := e.opts.Journal.Live(ctx)
	if err != nil {
		return fmt.Errorf("dcv: reading the journal: %w", err)
	}
	var errs []error
	for i := range live {
		if err := e.remove(ctx, &live[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ReconcileStale removes journaled artefacts no job can still be using:
// those whose removal failed before, and those untouched for longer than
// olderThan. Unlike Reconcile, it is safe while proofs are in flight, so
// the daemon runs it on every pass.
func (e *Engine) ReconcileStale(ctx context.Context, olderThan time.Duration, now time.Time) error {
	live, err := e.opts.Journal.Live(ctx)
	if err != nil {
		return fmt.Errorf("dcv: reading the journal: %w", err)
	}
	var errs []error
	for i := range live {
		r := &live[i]
		if r.Attempts == 0 && (r.Updated.IsZero() || now.Sub(r.Updated) < olderThan) {
			continue
		}
		if err := e.remove(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// remove deletes exactly the journaled record: the TXT value (never the
// RRset), or the file.
func (e *Engine) remove(ctx context.Context, r *Record) error {
	var err error
	switch r.Kind {
	case "dns-txt":
		prov, ok := e.opts.DNS[r.Provider]
		switch {
		case !ok:
			err = fmt.Errorf("DNS provider %q is no longer configured", r.Provider)
		case r.Value == "":
			err = errors.New("refusing to delete with an empty value (it would remove the whole RRset)")
		default:
			rr := libdns.TXT{Name: libdns.RelativeName(r.Name+".", r.Zone+"."), TTL: e.opts.TTL, Text: r.Value}
			_, err = prov.DeleteRecords(ctx, r.Zone+".", []libdns.Record{rr})
		}
	case "http-file":
		tgt, ok := e.opts.HTTP[r.Provider]
		if !ok {
			err = fmt.Errorf("HTTP target %q is no longer configured", r.Provider)
		} else {
			err = tgt.Remove(ctx, r.Name)
		}
	}
	if err != nil {
		r.Attempts++
		r.LastErr = err.Error()
		_ = e.opts.Journal.Update(ctx, *r)
		e.log.Warn("removing a DCV artefact failed; it stays journaled and will be retried", zap.String("name", r.Name), zap.Error(err))
		return fmt.Errorf("dcv: removing %s %s: %w", r.Kind, r.Name, err)
	}
	r.State = "removed"
	if err := e.opts.Journal.Update(ctx, *r); err != nil {
		return fmt.Errorf("dcv: journaling removal of %s: %w", r.Name, err)
	}
	e.log.Info("DCV artefact removed", zap.String("kind", r.Kind), zap.String("name", r.Name))
	return nil
}

// --- DNS queries

func (e *Engine) query(ctx context.Context, servers []string, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	var last error
	for _, s := range servers {
		resp, _, err := e.dnsc.ExchangeContext(ctx, m, s)
		if err == nil {
			return resp, nil
		}
		last = err
	}
	return nil, fmt.Errorf("querying %s %s: %w", dns.TypeToString[qtype], name, last)
}

// findZone walks from name towards the root until a SOA owner answers:
// the zone the record belongs in (delegated subzones included).
func (e *Engine) findZone(ctx context.Context, name string) (string, error) {
	resp, err := e.query(ctx, e.opts.Resolvers, name, dns.TypeSOA)
	if err != nil {
		return "", fmt.Errorf("dcv: finding the zone of %s: %w", name, err)
	}
	for _, sec := range [][]dns.RR{resp.Answer, resp.Ns} {
		for _, rr := range sec {
			if soa, ok := rr.(*dns.SOA); ok {
				return strings.TrimSuffix(strings.ToLower(soa.Hdr.Name), "."), nil
			}
		}
	}
	// Some resolvers answer a CNAME'd name without a SOA; walk up.
	if i := strings.IndexByte(name, '.'); i > 0 && strings.Contains(name[i+1:], ".") {
		return e.findZone(ctx, name[i+1:])
	}
	return "", fmt.Errorf("dcv: no zone found for %s", name)
}

// authServers are the servers every record must be visible on.
func (e *Engine) authServers(ctx context.Context, provider, zone string) ([]string, error) {
	if s := e.opts.AuthServers[provider]; len(s) > 0 {
		return s, nil
	}
	resp, err := e.query(ctx, e.opts.Resolvers, zone, dns.TypeNS)
	if err != nil {
		return nil, fmt.Errorf("dcv: %w", err)
	}
	var servers []string
	for _, rr := range resp.Answer {
		ns, ok := rr.(*dns.NS)
		if !ok {
			continue
		}
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			r, err := e.query(ctx, e.opts.Resolvers, ns.Ns, qt)
			if err != nil {
				continue
			}
			for _, a := range r.Answer {
				switch a := a.(type) {
				case *dns.A:
					servers = append(servers, net.JoinHostPort(a.A.String(), "53"))
				case *dns.AAAA:
					servers = append(servers, net.JoinHostPort(a.AAAA.String(), "53"))
				}
			}
		}
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("dcv: no authoritative servers found for %s", zone)
	}
	return servers, nil
}

// checkTXT succeeds when every server answers TXT name with value.
func (e *Engine) checkTXT(ctx context.Context, servers []string, name, value string) error {
	for _, s := range servers {
		resp, err := e.query(ctx, []string{s}, name, dns.TypeTXT)
		if err != nil {
			return err
		}
		found := false
		for _, rr := range resp.Answer {
			if txt, ok := rr.(*dns.TXT); ok && strings.Join(txt.Txt, "") == value {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("%s does not serve the TXT value at %s yet", s, name)
		}
	}
	return nil
}

// checkDelegation follows CNAMEs from name (at most 8 hops) and expects
// to reach delegate: otherwise the CA would look somewhere else.
func (e *Engine) checkDelegation(ctx context.Context, name, delegate string) error {
	want := dns.Fqdn(strings.ToLower(delegate))
	cur := dns.Fqdn(strings.ToLower(name))
	seen := map[string]bool{}
	for hop := 0; hop < 8; hop++ {
		if cur == want {
			return nil
		}
		if seen[cur] {
			return fmt.Errorf("dcv: CNAME loop at %s while following %s", cur, name)
		}
		seen[cur] = true
		resp, err := e.query(ctx, e.opts.Resolvers, cur, dns.TypeCNAME)
		if err != nil {
			return fmt.Errorf("dcv: %w", err)
		}
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, cur) {
				next = strings.ToLower(c.Target)
			}
		}
		if next == "" {
			return fmt.Errorf("dcv: %s has no CNAME to %s; create it once (%s CNAME %s) so the CA finds the record", name, delegate, name, want)
		}
		cur = next
	}
	return fmt.Errorf("dcv: more than 8 CNAME hops from %s", name)
}

// checkHTTP fetches http://domain/path as the CA will: 2xx, the exact
// content, no redirect followed.
func (e *Engine) checkHTTP(ctx context.Context, domain, path, content string) error {
	tr := &http.Transport{DisableKeepAlives: true}
	if e.opts.HTTPDial != nil {
		tr.DialContext = e.opts.HTTPDial
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+domain+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return fmt.Errorf("http://%s%s redirects (%d to %s); CAs do not follow redirects", domain, path, resp.StatusCode, resp.Header.Get("Location"))
	case resp.StatusCode/100 != 2:
		return fmt.Errorf("http://%s%s answers %d", domain, path, resp.StatusCode)
	case string(body) != content:
		return fmt.Errorf("http://%s%s serves other content than the token", domain, path)
	}
	return nil
}
