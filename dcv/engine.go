package dcv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/certd/certd/internal/failpoint"
)

// Record is one artefact the engine creates, as journaled: it is written
// before the artefact exists and updated as it is published and removed.
type Record struct {
	ID    int64
	Owner string // who it is for: "claim:<account>/<domain>", "cert:<name>", "order:<id>"
	// Kind is the challenge method the artefact serves: "dns-txt",
	// "dns-cname" or "http-file" (the values of Method).
	Kind     string
	Provider string // the DNS provider or HTTP target's name in config
	// Zone is the DNS zone (no trailing dot) of a DNS record and, for an
	// http-file, the host the file is served for (Challenge.Domain, lower
	// case): the column is reused so that the journal needs no new field.
	Zone  string
	Name  string // record name (lower case, no trailing dot) or URL path
	Value string // TXT value, CNAME target (no trailing dot) or file content
	// State is "intent" (journaled, maybe not published), "published" or
	// "removed".
	State    string
	Attempts int // failed removals
	LastErr  string
	Updated  time.Time
}

// Record kinds are the challenge methods they serve.
const (
	kindTXT   = string(DNSTXT)
	kindCNAME = string(DNSCNAME)
	kindHTTP  = string(HTTPFile)
)

// Record states.
const (
	stateIntent    = "intent"
	statePublished = "published"
	stateRemoved   = "removed"
)

// Journal persists Records. The engine never creates an artefact its
// journal has not recorded first (N6).
type Journal interface {
	// Record stores r in state intent and sets r.ID.
	Record(ctx context.Context, r *Record) error
	// Update saves r's state, zone, attempts and last error. It SHOULD
	// set the record's Updated time: ReconcileStale measures staleness
	// from it, and the engine updates a record it hands out again.
	Update(ctx context.Context, r Record) error
	// Live lists records not yet removed, with every field set.
	Live(ctx context.Context) ([]Record, error)
}

// Target says where one challenge is published, from configuration.
type Target struct {
	// DNS names the DNS provider for DNS challenges.
	DNS string
	// Delegate, when set, is where the TXT record goes instead of the
	// challenge's RecordName: the CA follows a CNAME from RecordName to it.
	// It applies to DNSTXT only.
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
	// Default: the zone's NS records, each at every address its A and
	// AAAA records give, on NSPort. Set it for split horizon.
	AuthServers map[string][]string
	// NSPort is the port the name servers found through NS records are
	// asked on (default 53). Tests run their name servers on another.
	NSPort int
	// HTTPDial, when set, replaces the dialer of the HTTP self-check
	// (tests, hosts whose web server is not on port 80 of the name).
	HTTPDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout bounds the wait for visibility, and the wait of Present for
	// a token path another host holds on a host-blind target (default 2
	// minutes).
	Timeout time.Duration
	// TTL of published TXT and CNAME records (default 60s).
	TTL time.Duration
	// Keep, when set, reports whether the artefacts of owner must stay
	// published: Reconcile and ReconcileStale leave them alone (they are
	// neither removed nor counted as stale). The scheduler keeps what an
	// open paid order ("order:<id>") published, because the CA may check
	// again hours later. Nil keeps nothing. Keep MUST be safe for
	// concurrent use and SHOULD answer from memory; when it cannot tell
	// (the store is unreachable) it SHOULD answer true: an artefact left
	// a while longer is harmless, one removed under an open order is not.
	Keep   func(owner string) bool
	Logger *zap.Logger
	// Observe, when set, is told how long each challenge took to become
	// visible, by provider (or HTTP target) and kind.
	Observe func(provider, kind string, d time.Duration)
}

// ErrNotVisible: a published challenge did not become visible in time.
var ErrNotVisible = errors.New("dcv: challenge not visible")

// ErrPathBusy: an HTTP token path of a host-blind target stayed published
// with other content (for another host or owner) for the whole wait.
// Nothing was published; trying again later can succeed.
var ErrPathBusy = errors.New("dcv: token path in use")

// ErrCNAMEConflict: the name already holds a CNAME to another target (in
// the zone or in the journal), or other records. A CNAME cannot coexist
// with other data, and adding one would replace the other CNAME (or be
// ignored), so nothing was published: what is there must go first, which
// is a person's decision.
var ErrCNAMEConflict = errors.New("dcv: the name already has another CNAME")

// Engine publishes challenges, waits until they are visible, and removes
// them. It is safe for concurrent use.
type Engine struct {
	opts  Options
	log   *zap.Logger
	dnsc  *dns.Client
	locks keyedLocks

	mu sync.Mutex
	// removed is closed, and replaced, whenever an artefact is removed:
	// it wakes Present calls waiting for a token path.
	removed chan struct{}
}

// SystemResolvers are the resolvers /etc/resolv.conf names, used when the
// configuration names none; an error when it is unreadable or names none.
func SystemResolvers() ([]string, error) { return resolversFrom("/etc/resolv.conf") }

func resolversFrom(path string) ([]string, error) {
	conf, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("dcv: no resolvers configured and %s unreadable: %w", path, err)
	}
	var out []string
	for _, s := range conf.Servers {
		out = append(out, net.JoinHostPort(s, conf.Port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("dcv: no resolvers configured and %s names none", path)
	}
	return out, nil
}

// NewEngine checks opts and returns an Engine.
func NewEngine(opts Options) (*Engine, error) {
	if opts.Journal == nil {
		return nil, errors.New("dcv: a journal is required")
	}
	if len(opts.Resolvers) == 0 {
		rs, err := SystemResolvers()
		if err != nil {
			return nil, err
		}
		opts.Resolvers = rs
	}
	switch {
	case opts.NSPort == 0:
		opts.NSPort = 53
	case opts.NSPort < 0 || opts.NSPort > 65535:
		return nil, fmt.Errorf("dcv: name server port %d out of range", opts.NSPort)
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
	return &Engine{opts: opts, log: opts.Logger, dnsc: &dns.Client{Timeout: 3 * time.Second}, removed: make(chan struct{})}, nil
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
// The one exception is an HTTP token path a host-blind target holds with
// other content: Present waits for it (see the package doc).
//
// When owner already has the same artefact live and published (same kind,
// provider, name, value and, for a file, host), Present returns it instead
// of publishing it again: no second journal record, no second TXT value.
//
// A Published returned with an error was journaled and may be partly in
// place: pass it to CleanUp.
func (e *Engine) Present(ctx context.Context, owner string, ch Challenge, t Target) (*Published, error) {
	switch ch.Method {
	case DNSTXT:
		return e.presentTXT(ctx, owner, ch, t)
	case DNSCNAME:
		return e.presentCNAME(ctx, owner, ch, t)
	case HTTPFile:
		return e.presentHTTP(ctx, owner, ch, t)
	case Email:
		return &Published{Challenge: ch, Target: t}, nil // nothing to publish: the CA mails the approver
	default:
		return nil, fmt.Errorf("dcv: cannot publish a %s challenge", ch.Method)
	}
}

func (e *Engine) presentTXT(ctx context.Context, owner string, ch Challenge, t Target) (*Published, error) {
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
	name = normName(name)
	unlock, err := e.locks.lock(ctx, dnsKey(t.DNS, name))
	if err != nil {
		return nil, fmt.Errorf("dcv: TXT %s: %w", name, err)
	}
	defer unlock()
	p := &Published{Challenge: ch, Target: t}
	want := Record{Owner: owner, Kind: kindTXT, Provider: t.DNS, Name: name, Value: ch.Value}
	if r, ok, err := e.findPublished(ctx, want); err != nil || ok {
		return e.reuse(ctx, p, r, err, nil)
	}
	zone, err := e.findZone(ctx, name)
	if err != nil {
		return nil, err
	}
	p.rec = want
	p.rec.Zone = zone
	return e.publish(ctx, p, func() error {
		rr := libdns.TXT{Name: libdns.RelativeName(name+".", zone+"."), TTL: e.opts.TTL, Text: ch.Value}
		if _, err := prov.AppendRecords(ctx, zone+".", []libdns.Record{rr}); err != nil {
			return fmt.Errorf("dcv: %s: adding TXT %s: %w", t.DNS, name, err)
		}
		e.log.Info("TXT record published", zap.String("domain", ch.Domain), zap.String("name", name), zap.String("zone", zone),
			zap.String("provider", t.DNS), zap.String("owner", owner))
		return nil
	})
}

func (e *Engine) presentCNAME(ctx context.Context, owner string, ch Challenge, t Target) (*Published, error) {
	prov, ok := e.opts.DNS[t.DNS]
	if !ok {
		return nil, fmt.Errorf("dcv: unknown DNS provider %q", t.DNS)
	}
	if t.Delegate != "" {
		return nil, fmt.Errorf("dcv: CNAME %s: delegation applies to TXT challenges only", ch.RecordName)
	}
	name, target := normName(ch.RecordName), normName(ch.Value)
	if name == "" || target == "" {
		return nil, fmt.Errorf("dcv: refusing to publish a CNAME with an empty name or target (%q -> %q)", ch.RecordName, ch.Value)
	}
	unlock, err := e.locks.lock(ctx, dnsKey(t.DNS, name))
	if err != nil {
		return nil, fmt.Errorf("dcv: CNAME %s: %w", name, err)
	}
	defer unlock()
	p := &Published{Challenge: ch, Target: t}
	want := Record{Owner: owner, Kind: kindCNAME, Provider: t.DNS, Name: name, Value: target}
	live, err := e.live(ctx)
	if err != nil {
		return nil, err
	}
	if r, ok := findSame(live, want); ok {
		return e.reuse(ctx, p, r, nil, nil)
	}
	for _, r := range live {
		if r.Kind == kindCNAME && r.Provider == t.DNS && strings.EqualFold(r.Name, name) && !strings.EqualFold(r.Value, target) {
			return nil, fmt.Errorf("%w: %s is journaled as CNAME %s for %s; refusing to point it at %s", ErrCNAMEConflict, name, r.Value, r.Owner, target)
		}
	}
	zone, err := e.findZone(ctx, name)
	if err != nil {
		return nil, err
	}
	if name == zone {
		return nil, fmt.Errorf("dcv: refusing to publish a CNAME at the apex of zone %s", zone)
	}
	servers, unresolved, err := e.authServers(ctx, t.DNS, zone)
	if err != nil {
		return nil, err
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("dcv: CNAME %s: %w", name, unresolvedErr(zone, unresolved))
	}
	// Adding a CNAME where one exists replaces it (RFC 2136 3.4.2.2), so
	// look first. Racy against other tools, as every read-then-write of
	// DNS through libdns is; certd's own writers are serialised by name.
	current, err := e.currentCNAMEs(ctx, servers, name)
	if err != nil {
		return nil, err
	}
	// A name server without an address could not be asked: it does not
	// count as agreeing (and Wait waits for it).
	agree := len(current) == len(servers) && len(unresolved) == 0
	if len(unresolved) > 0 {
		e.log.Warn("CNAME conflicts checked on the name servers that have an address only", zap.String("name", name),
			zap.Error(unresolvedErr(zone, unresolved)))
	}
	for _, cur := range current {
		if cur != target {
			return nil, fmt.Errorf("%w: %s CNAME %s exists; refusing to replace it with %s", ErrCNAMEConflict, name, cur, target)
		}
	}
	// An RFC 2136 server silently ignores a CNAME added next to other
	// data; say so now rather than time out in Wait.
	if held, err := e.otherData(ctx, servers, name); err != nil {
		return nil, err
	} else if len(held) > 0 {
		return nil, fmt.Errorf("%w: %s holds %s records, and a CNAME cannot coexist with other data", ErrCNAMEConflict, name, strings.Join(held, ", "))
	}
	p.rec = want
	p.rec.Zone = zone
	if agree && !slices.ContainsFunc(live, func(r Record) bool { return sameArtefact(r, want, false) }) {
		// Every server already answers this CNAME and no journal record
		// stands for it: someone else made it and keeps it. Use it as it
		// is; CleanUp leaves it alone (no journal ID).
		e.log.Info("CNAME already in place; not publishing it", zap.String("domain", ch.Domain), zap.String("name", name),
			zap.String("cname", target), zap.String("provider", t.DNS))
		return p, nil
	}
	return e.publish(ctx, p, func() error {
		rr := libdns.CNAME{Name: libdns.RelativeName(name+".", zone+"."), TTL: e.opts.TTL, Target: target + "."}
		if _, err := prov.AppendRecords(ctx, zone+".", []libdns.Record{rr}); err != nil {
			return fmt.Errorf("dcv: %s: adding CNAME %s: %w", t.DNS, name, err)
		}
		e.log.Info("CNAME record published", zap.String("domain", ch.Domain), zap.String("name", name), zap.String("cname", target),
			zap.String("zone", zone), zap.String("provider", t.DNS), zap.String("owner", owner))
		return nil
	})
}

func (e *Engine) presentHTTP(ctx context.Context, owner string, ch Challenge, t Target) (*Published, error) {
	tgt, ok := e.opts.HTTP[t.HTTP]
	if !ok {
		return nil, fmt.Errorf("dcv: unknown HTTP target %q", t.HTTP)
	}
	host, err := httpHost(ch.Domain)
	if err != nil {
		return nil, err
	}
	p := &Published{Challenge: ch, Target: t}
	want := Record{Owner: owner, Kind: kindHTTP, Provider: t.HTTP, Zone: host, Name: ch.Path, Value: ch.Content}
	blind := isHostBlind(tgt)
	put := func() error {
		if err := tgt.Put(ctx, host, ch.Path, []byte(ch.Content)); err != nil {
			return fmt.Errorf("dcv: %s: %w", t.HTTP, err)
		}
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	defer cancel()
	start := time.Now()
	interval := 100 * time.Millisecond
	for {
		unlock, err := e.locks.lock(wctx, e.keyOf(want))
		if err != nil {
			return nil, e.busy(ctx, want, nil, start, err)
		}
		live, err := e.live(ctx)
		if err != nil {
			unlock()
			return nil, err
		}
		if r, ok := findSame(live, want); ok {
			p, err := e.reuse(ctx, p, r, nil, put)
			unlock()
			return p, err
		}
		var holder *Record
		for i, r := range live {
			if sameSlot(r, want, blind) && r.Value != want.Value {
				holder = &live[i]
				break
			}
		}
		if holder == nil {
			p.rec = want
			p, err := e.publish(ctx, p, func() error {
				if err := put(); err != nil {
					return err
				}
				e.log.Info("token file published", zap.String("domain", ch.Domain), zap.String("path", ch.Path),
					zap.String("target", t.HTTP), zap.String("owner", owner))
				return nil
			})
			unlock()
			return p, err
		}
		// Another content holds the path on this target: wait until it
		// is removed, never overwrite it.
		removed := e.removedChan()
		unlock()
		if interval == 100*time.Millisecond {
			e.log.Info("token path in use on a host-blind target; waiting until it is removed", zap.String("domain", ch.Domain),
				zap.String("path", ch.Path), zap.String("target", t.HTTP), zap.String("holder_domain", holder.Zone),
				zap.String("holder_owner", holder.Owner))
		}
		select {
		case <-removed:
		case <-time.After(interval):
		case <-wctx.Done():
			return nil, e.busy(ctx, want, holder, start, wctx.Err())
		}
		interval = min(interval*2, 2*time.Second)
	}
}

// busy is the error of a Present that could not get a token path.
func (e *Engine) busy(ctx context.Context, want Record, holder *Record, start time.Time, cause error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("dcv: publishing %s for %s: %w", want.Name, want.Zone, ctx.Err())
	}
	if holder == nil {
		return fmt.Errorf("%w: %s on %s for %s, after %s: %w", ErrPathBusy, want.Name, want.Provider, want.Zone, time.Since(start).Round(time.Millisecond), cause)
	}
	return fmt.Errorf("%w: %s on %s still serves %s's token (owner %s) after %s; %s can be published once it is removed",
		ErrPathBusy, want.Name, want.Provider, holder.Zone, holder.Owner, time.Since(start).Round(time.Millisecond), want.Zone)
}

// publish journals p.rec, runs put, and marks the record published.
func (e *Engine) publish(ctx context.Context, p *Published, put func() error) (*Published, error) {
	p.rec.State = stateIntent
	if err := e.opts.Journal.Record(ctx, &p.rec); err != nil {
		return nil, fmt.Errorf("dcv: journaling %s %s: %w", p.rec.Kind, p.rec.Name, err)
	}
	failpoint.Hit(failpoint.DCVAfterJournal)
	if err := put(); err != nil {
		return p, err
	}
	failpoint.Hit(failpoint.DCVAfterPublish)
	p.rec.State = statePublished
	if err := e.opts.Journal.Update(ctx, p.rec); err != nil {
		return p, fmt.Errorf("dcv: journaling %s %s as published: %w", p.rec.Kind, p.rec.Name, err)
	}
	return p, nil
}

// reuse hands out r, an artefact owner already has published, again. The
// journal update refreshes its Updated time; restore, when set, puts an
// HTTP file in place again (identical content: idempotent).
func (e *Engine) reuse(ctx context.Context, p *Published, r Record, err error, restore func() error) (*Published, error) {
	if err != nil {
		return nil, err
	}
	p.rec = r
	if restore != nil {
		if err := restore(); err != nil {
			return p, err
		}
	}
	if err := e.opts.Journal.Update(ctx, p.rec); err != nil {
		return p, fmt.Errorf("dcv: journaling %s %s: %w", r.Kind, r.Name, err)
	}
	e.log.Info("DCV artefact already published; reusing it", zap.String("kind", r.Kind), zap.String("name", r.Name),
		zap.String("owner", r.Owner))
	return p, nil
}

// findPublished looks up a live published record equal to want.
func (e *Engine) findPublished(ctx context.Context, want Record) (Record, bool, error) {
	live, err := e.live(ctx)
	if err != nil {
		return Record{}, false, err
	}
	r, ok := findSame(live, want)
	return r, ok, nil
}

// findSame finds owner's published record of the same artefact as want.
func findSame(live []Record, want Record) (Record, bool) {
	for _, r := range live {
		if r.State == statePublished && r.Owner == want.Owner && r.Kind == want.Kind && r.Provider == want.Provider &&
			r.Name == want.Name && r.Value == want.Value && (r.Kind != kindHTTP || r.Zone == want.Zone) {
			return r, true
		}
	}
	return Record{}, false
}

// sameSlot: a and b occupy the same place on the same HTTP target, where
// only one content can be served.
func sameSlot(a, b Record, blind bool) bool {
	return a.Kind == kindHTTP && b.Kind == kindHTTP && a.Provider == b.Provider && a.Name == b.Name && (blind || a.Zone == b.Zone)
}

// sameArtefact: a and b stand for the same thing out there, so removing
// one must not withdraw it while the other is live. For a file, any
// record in the same slot counts: what is served there is not certd's
// to withdraw while another record stands for it.
func sameArtefact(a, b Record, blind bool) bool {
	switch {
	case a.Kind == kindHTTP:
		return sameSlot(a, b, blind)
	case a.Kind != b.Kind || a.Provider != b.Provider || !strings.EqualFold(a.Name, b.Name):
		return false
	case a.Kind == kindCNAME:
		return strings.EqualFold(a.Value, b.Value)
	default:
		return a.Value == b.Value
	}
}

// Wait returns when every challenge is visible to the CA: a TXT record on
// every authoritative server of its zone (and, for delegation, the CNAME
// in place), a CNAME with its target on every authoritative server, an
// HTTP file answering 2xx with the exact content and no redirect. All
// challenges wait in parallel, with short first intervals.
//
// The authoritative servers are Options.AuthServers or, by default, every
// address of every name server in the zone's NS records, on
// Options.NSPort. A name server whose address cannot be found (no A or
// AAAA record, or a failed lookup) does not serve the record yet: the wait
// looks it up again on every round, and names it when it runs out.
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
		check = e.onEveryServer(p.Target.DNS, p.rec.Zone, func(ctx context.Context, servers []string) error {
			return e.checkTXT(ctx, servers, p.rec.Name, p.rec.Value)
		})
	case DNSCNAME:
		check = e.onEveryServer(p.Target.DNS, p.rec.Zone, func(ctx context.Context, servers []string) error {
			return e.checkCNAME(ctx, servers, p.rec.Name, p.rec.Value)
		})
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

// Adopt returns the artefacts owner has live and published, rebuilt from
// the journal, so that a resumed job (an order after a restart) can Wait
// on them and CleanUp them without publishing them again. The rebuilt
// Challenge has the Method of the record's kind and its name and value
// (RecordName and Value; Domain, Path and Content for a file, the host
// from Record.Zone); Domain is empty for DNS records, and a delegated TXT
// record comes back as the TXT at the delegate, its CNAME no longer
// checked. Records still in state intent are not adopted (whether they
// reached the provider is unknown): CleanUpOwner removes them. HTTP files
// are put in place again (identical content), because a target such as
// the built-in responder loses them when the process restarts.
func (e *Engine) Adopt(ctx context.Context, owner string) ([]*Published, error) {
	live, err := e.live(ctx)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(live, func(a, b Record) int { return cmp.Compare(a.ID, b.ID) })
	var out []*Published
	var errs []error
	for _, r := range live {
		if r.Owner != owner || r.State != statePublished {
			continue
		}
		p := adopted(r)
		if r.Kind == kindHTTP {
			if err := e.restore(ctx, r); err != nil {
				errs = append(errs, err)
			}
		}
		out = append(out, p)
	}
	if len(out) > 0 {
		e.log.Info("adopted published DCV artefacts", zap.String("owner", owner), zap.Int("count", len(out)))
	}
	return out, errors.Join(errs...)
}

// adopted rebuilds the Published of a journal record.
func adopted(r Record) *Published {
	p := &Published{rec: r, Challenge: Challenge{Method: Method(r.Kind)}}
	switch r.Kind {
	case kindHTTP:
		p.Challenge.Domain, p.Challenge.Path, p.Challenge.Content = r.Zone, r.Name, r.Value
		p.Target.HTTP = r.Provider
	default:
		p.Challenge.RecordName, p.Challenge.Value = r.Name, r.Value
		p.Target.DNS = r.Provider
	}
	return p
}

// restore puts a journaled HTTP file in place again.
func (e *Engine) restore(ctx context.Context, r Record) error {
	tgt, ok := e.opts.HTTP[r.Provider]
	if !ok {
		return fmt.Errorf("dcv: restoring %s for %s: HTTP target %q is no longer configured", r.Name, r.Zone, r.Provider)
	}
	unlock, err := e.locks.lock(ctx, e.keyOf(r))
	if err != nil {
		return fmt.Errorf("dcv: restoring %s for %s: %w", r.Name, r.Zone, err)
	}
	defer unlock()
	if err := tgt.Put(ctx, r.Zone, r.Name, []byte(r.Value)); err != nil {
		return fmt.Errorf("dcv: %s: restoring %s for %s: %w", r.Provider, r.Name, r.Zone, err)
	}
	return nil
}

// CleanUpOwner removes every live artefact of owner, published or not,
// whatever Keep says: the scheduler calls it when an order ends. Like
// CleanUp it goes on after ctx is cancelled, and a removal that fails
// stays journaled.
func (e *Engine) CleanUpOwner(ctx context.Context, owner string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	live, err := e.live(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for i := range live {
		if live[i].Owner != owner {
			continue
		}
		if err := e.remove(ctx, &live[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Reconcile removes every artefact the journal says is still out there:
// leftovers of failed removals and of a crash between publishing and
// cleaning up. Artefacts of owners Keep reports are left in place, and
// their HTTP files put back (a restart empties the built-in responder).
// The daemon runs it once at start, before any job.
func (e *Engine) Reconcile(ctx context.Context) error {
	live, err := e.live(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for i := range live {
		r := &live[i]
		if e.kept(r.Owner) {
			if r.Kind == kindHTTP && r.State == statePublished {
				if err := e.restore(ctx, *r); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		if err := e.remove(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ReconcileStale removes journaled artefacts no job can still be using:
// those whose removal failed before, and those untouched for longer than
// olderThan; artefacts of owners Keep reports are neither. Unlike
// Reconcile, it is safe while proofs are in flight, so the daemon runs it
// on every pass.
func (e *Engine) ReconcileStale(ctx context.Context, olderThan time.Duration, now time.Time) error {
	live, err := e.live(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for i := range live {
		r := &live[i]
		if e.kept(r.Owner) {
			continue
		}
		if r.Attempts == 0 && (r.Updated.IsZero() || now.Sub(r.Updated) < olderThan) {
			continue
		}
		if err := e.remove(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (e *Engine) kept(owner string) bool { return e.opts.Keep != nil && e.opts.Keep(owner) }

func (e *Engine) live(ctx context.Context) ([]Record, error) {
	live, err := e.opts.Journal.Live(ctx)
	if err != nil {
		return nil, fmt.Errorf("dcv: reading the journal: %w", err)
	}
	return live, nil
}

// remove deletes exactly the journaled artefact: the TXT value (never the
// RRset), the CNAME with its target, or the file for its host. When
// another live record stands for the same artefact (two owners publishing
// the same value, two hosts sharing a file on a host-blind target), only
// the record is marked removed: the artefact stays for the other.
func (e *Engine) remove(ctx context.Context, r *Record) error {
	unlock, err := e.locks.lock(ctx, e.keyOf(*r))
	if err != nil {
		return e.removeFailed(ctx, r, err)
	}
	defer unlock()
	live, err := e.live(ctx)
	if err != nil {
		return e.removeFailed(ctx, r, err)
	}
	blind := r.Kind == kindHTTP && isHostBlind(e.opts.HTTP[r.Provider])
	shared := slices.ContainsFunc(live, func(o Record) bool { return o.ID != r.ID && sameArtefact(o, *r, blind) })
	if !shared {
		if err := e.withdraw(ctx, r); err != nil {
			return e.removeFailed(ctx, r, err)
		}
	}
	r.State = stateRemoved
	if err := e.opts.Journal.Update(ctx, *r); err != nil {
		return fmt.Errorf("dcv: journaling removal of %s: %w", r.Name, err)
	}
	e.signalRemoved()
	e.log.Info("DCV artefact removed", zap.String("kind", r.Kind), zap.String("name", r.Name), zap.String("owner", r.Owner),
		zap.Bool("still_used_by_another_record", shared))
	return nil
}

func (e *Engine) removeFailed(ctx context.Context, r *Record, err error) error {
	r.Attempts++
	r.LastErr = err.Error()
	_ = e.opts.Journal.Update(ctx, *r)
	e.log.Warn("removing a DCV artefact failed; it stays journaled and will be retried", zap.String("kind", r.Kind),
		zap.String("name", r.Name), zap.String("owner", r.Owner), zap.Error(err))
	return fmt.Errorf("dcv: removing %s %s: %w", r.Kind, r.Name, err)
}

// withdraw asks the provider or target to take the artefact away.
func (e *Engine) withdraw(ctx context.Context, r *Record) error {
	switch r.Kind {
	case kindTXT, kindCNAME:
		prov, ok := e.opts.DNS[r.Provider]
		switch {
		case !ok:
			return fmt.Errorf("DNS provider %q is no longer configured", r.Provider)
		case r.Value == "":
			return errors.New("refusing to delete with an empty value (it would remove the whole RRset)")
		}
		var rr libdns.Record = libdns.TXT{Name: libdns.RelativeName(r.Name+".", r.Zone+"."), TTL: e.opts.TTL, Text: r.Value}
		if r.Kind == kindCNAME {
			rr = libdns.CNAME{Name: libdns.RelativeName(r.Name+".", r.Zone+"."), TTL: e.opts.TTL, Target: r.Value + "."}
		}
		_, err := prov.DeleteRecords(ctx, r.Zone+".", []libdns.Record{rr})
		return err
	case kindHTTP:
		tgt, ok := e.opts.HTTP[r.Provider]
		if !ok {
			return fmt.Errorf("HTTP target %q is no longer configured", r.Provider)
		}
		return tgt.Remove(ctx, r.Zone, r.Name)
	default:
		return fmt.Errorf("unknown artefact kind %q", r.Kind)
	}
}

func (e *Engine) removedChan() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.removed
}

func (e *Engine) signalRemoved() {
	e.mu.Lock()
	defer e.mu.Unlock()
	close(e.removed)
	e.removed = make(chan struct{})
}

// keyOf is the lock key of the place r occupies: a DNS name of a
// provider, or a token path of an HTTP target (for a host on a host-aware
// target).
func (e *Engine) keyOf(r Record) string {
	if r.Kind != kindHTTP {
		return dnsKey(r.Provider, r.Name)
	}
	host := r.Zone
	if isHostBlind(e.opts.HTTP[r.Provider]) {
		host = ""
	}
	return "http\x00" + r.Provider + "\x00" + host + "\x00" + r.Name
}

func dnsKey(provider, name string) string {
	return "dns\x00" + provider + "\x00" + strings.ToLower(name)
}

func isHostBlind(t HTTPTarget) bool {
	hb, ok := t.(HostBlind)
	return ok && hb.HostBlind()
}

// normName is a DNS name as the journal keeps it: lower case, no trailing
// dot.
func normName(name string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
}

// httpHost is the host an HTTP challenge is served for.
func httpHost(domain string) (string, error) {
	host := normName(domain)
	if host == "" {
		return "", errors.New("dcv: an HTTP challenge needs the domain it is served for")
	}
	if _, _, err := net.SplitHostPort(host); err == nil || strings.ContainsAny(host, "/\\ *@") {
		return "", fmt.Errorf("dcv: HTTP challenge domain %q is not a host name (no port, path or wildcard)", domain)
	}
	return host, nil
}

// keyedLocks are mutexes by key, created on demand and forgotten when no
// one holds or waits for them; lock honours ctx.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	ch    chan struct{}
	users int
}

func (k *keyedLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.users++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		if l.users--; l.users == 0 {
			delete(k.m, key)
		}
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
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
			// Only a SOA at name or above it: a recursive resolver
			// follows a CNAME at name (a DCV CNAME already in place) and
			// answers with the SOA of the target's zone.
			if soa, ok := rr.(*dns.SOA); ok && dns.IsSubDomain(soa.Hdr.Name, dns.Fqdn(name)) {
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

// authServers are the servers (host:port) every record of zone must be
// visible on, and the name servers of the zone that have no address: their
// address lookup failed or found nothing. Those cannot be asked, so they
// do not serve the record yet; they are never left out of "every".
func (e *Engine) authServers(ctx context.Context, provider, zone string) (servers []string, unresolved []error, err error) {
	if s := e.opts.AuthServers[provider]; len(s) > 0 {
		return s, nil, nil
	}
	resp, err := e.query(ctx, e.opts.Resolvers, zone, dns.TypeNS)
	if err != nil {
		return nil, nil, fmt.Errorf("dcv: finding the name servers of %s: %w", zone, err)
	}
	var names []string
	for _, rr := range resp.Answer {
		if ns, ok := rr.(*dns.NS); ok && strings.EqualFold(ns.Hdr.Name, dns.Fqdn(zone)) && !slices.Contains(names, normName(ns.Ns)) {
			names = append(names, normName(ns.Ns))
		}
	}
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("dcv: no NS records found for %s (%s)", zone, dns.RcodeToString[resp.Rcode])
	}
	slices.Sort(names)
	for _, ns := range names {
		addrs, err := e.nsAddrs(ctx, ns)
		if err != nil {
			unresolved = append(unresolved, fmt.Errorf("%s: %w", ns, err))
			continue
		}
		servers = append(servers, addrs...)
	}
	return servers, unresolved, nil
}

// nsAddrs are the addresses (host:NSPort) of the name server ns. A failed
// lookup of one family is forgiven when the other gives an address (a
// server reached over IPv4 answers as it does over IPv6); none at all is
// an error.
func (e *Engine) nsAddrs(ctx context.Context, ns string) ([]string, error) {
	port := fmt.Sprint(e.opts.NSPort)
	var addrs []string
	var errs []error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		r, err := e.query(ctx, e.opts.Resolvers, ns, qt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
			errs = append(errs, fmt.Errorf("%s %s: %s", dns.TypeToString[qt], ns, dns.RcodeToString[r.Rcode]))
			continue
		}
		for _, a := range r.Answer {
			switch a := a.(type) {
			case *dns.A:
				addrs = append(addrs, net.JoinHostPort(a.A.String(), port))
			case *dns.AAAA:
				addrs = append(addrs, net.JoinHostPort(a.AAAA.String(), port))
			}
		}
	}
	if len(addrs) == 0 {
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		return nil, errors.New("no A or AAAA record")
	}
	return addrs, nil
}

// unresolvedError names the name servers of a zone that could not be
// asked for want of an address, each with why.
type unresolvedError struct {
	zone string
	errs []error
}

func (u *unresolvedError) Error() string {
	msgs := make([]string, len(u.errs))
	for i, err := range u.errs {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("a name server of %s without an address cannot be asked, and does not serve the record until it has one: %s",
		u.zone, strings.Join(msgs, "; "))
}

func (u *unresolvedError) Unwrap() []error { return u.errs }

func unresolvedErr(zone string, unresolved []error) error {
	return &unresolvedError{zone: zone, errs: unresolved}
}

// onEveryServer makes a Wait check that runs check against every
// authoritative server of zone. The servers are looked up again on each
// round until every name server has an address: one without counts as not
// serving the record yet, and a Wait that runs out names it.
func (e *Engine) onEveryServer(provider, zone string, check func(ctx context.Context, servers []string) error) func(context.Context) error {
	var servers []string
	warned := false
	return func(ctx context.Context) error {
		if servers == nil {
			found, unresolved, err := e.authServers(ctx, provider, zone)
			if err != nil {
				return err
			}
			if len(unresolved) > 0 {
				err := unresolvedErr(zone, unresolved)
				if !warned {
					e.log.Warn("waiting for a name server to have an address", zap.String("zone", zone), zap.Error(err))
					warned = true
				}
				return fmt.Errorf("dcv: %w", err)
			}
			servers = found
		}
		return check(ctx, servers)
	}
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

// currentCNAMEs are the CNAME targets (lower case, no trailing dot) the
// servers answer for name, one per server that has one.
func (e *Engine) currentCNAMEs(ctx context.Context, servers []string, name string) ([]string, error) {
	var out []string
	for _, s := range servers {
		resp, err := e.query(ctx, []string{s}, name, dns.TypeCNAME)
		if err != nil {
			return nil, fmt.Errorf("dcv: looking for a CNAME at %s: %w", name, err)
		}
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, dns.Fqdn(name)) {
				out = append(out, normName(c.Target))
				break
			}
		}
	}
	return out, nil
}

// otherData lists the types of the records other than a CNAME that the
// servers hold at name, as far as an ANY query tells (servers that refuse
// ANY, or answer it with RFC 8482's HINFO, tell nothing).
func (e *Engine) otherData(ctx context.Context, servers []string, name string) ([]string, error) {
	var held []string
	for _, s := range servers {
		resp, err := e.query(ctx, []string{s}, name, dns.TypeANY)
		if err != nil {
			return nil, fmt.Errorf("dcv: looking for records at %s: %w", name, err)
		}
		for _, rr := range resp.Answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, dns.Fqdn(name)) {
				continue
			}
			switch rr := rr.(type) {
			case *dns.CNAME, *dns.RRSIG, *dns.NSEC, *dns.NSEC3:
				continue
			case *dns.HINFO:
				if rr.Cpu == "RFC8482" {
					continue
				}
			}
			if t := dns.TypeToString[h.Rrtype]; !slices.Contains(held, t) {
				held = append(held, t)
			}
		}
	}
	return held, nil
}

// checkCNAME succeeds when every server answers CNAME name with target
// (case-insensitively, trailing dots aside).
func (e *Engine) checkCNAME(ctx context.Context, servers []string, name, target string) error {
	for _, s := range servers {
		got, err := e.currentCNAMEs(ctx, []string{s}, name)
		if err != nil {
			return err
		}
		switch {
		case len(got) == 0:
			return fmt.Errorf("%s does not serve the CNAME at %s yet", s, name)
		case got[0] != normName(target):
			return fmt.Errorf("%s answers %s CNAME %s, not %s", s, name, got[0], normName(target))
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
	host := domain
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // an IPv6 identifier (RFC 8738)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+path, nil)
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
