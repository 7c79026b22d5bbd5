package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/config"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/providers"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// parts are the working pieces built from one configuration.
type parts struct {
	cfg         *config.Config
	issuers     map[string]ca.Issuer // by account name
	unavailable map[string]string    // account name -> type not in this release
	engine      *dcv.Engine
	responders  []*providers.Responder
}

// build turns a configuration into issuers, providers and the DCV engine.
// Secrets are resolved here, so an unresolvable one fails the start (or
// the reload) with its file:line.
func build(cfg *config.Config, st store.Store, log *zap.Logger, obs observers) (*parts, error) {
	p := &parts{cfg: cfg, issuers: map[string]ca.Issuer{}, unavailable: map[string]string{}}
	kinds := caKinds()
	for name, acct := range cfg.Accounts {
		kind := kinds[acct.Type]
		if kind.New == nil {
			p.unavailable[name] = acct.Type
			continue
		}
		iss, err := kind.New(ca.Env{Name: name, Settings: acct.Settings, Limits: acct.Limits, Keys: accountKeys{st},
			Logger: log.Named(acct.Type).With(zap.String("account", name)), Observe: obs.caRequests(name)})
		if err != nil {
			return nil, fmt.Errorf("account %s (%s): %w", name, acct.Pos, err)
		}
		if _, ok := iss.(ca.Reissuer); perHostKeys(cfg, name) && !ok {
			return nil, fmt.Errorf("account %s (%s): per_host_keys: %s cannot reissue for another key without a purchase; "+
				"per-host keys need GlobalSign Atlas, Sectigo, the reseller API or Markmonitor", name, acct.Pos, acct.Type)
		}
		p.issuers[name] = iss
	}
	dnsTable, httpTable := providers.DNSTypes(), providers.HTTPTypes()
	opts := dcv.Options{
		DNS: map[string]dcv.DNSProvider{}, HTTP: map[string]dcv.HTTPTarget{},
		Journal: storeJournal{st}, Resolvers: cfg.DCV.Resolvers, AuthServers: cfg.DCV.CheckServers,
		Timeout: cfg.DCV.Timeout.D(), Logger: log.Named("dcv"), Observe: obs.dcv(),
		// An open order's proofs stay published across passes and
		// restarts: the CA may check again hours later.
		Keep: scheduler.KeepOrderArtefacts(context.Background(), st),
	}
	for name, d := range cfg.DNS {
		prov, err := dnsTable[d.Type].New(d.Settings)
		if err != nil {
			return nil, fmt.Errorf("DNS provider %s (%s): %w", name, d.Pos, err)
		}
		opts.DNS[name] = prov
	}
	for name, h := range cfg.HTTP {
		tgt, err := httpTable[h.Type].New(h.Settings)
		if err != nil {
			return nil, fmt.Errorf("HTTP target %s (%s): %w", name, h.Pos, err)
		}
		opts.HTTP[name] = tgt
		if r, ok := tgt.(*providers.Responder); ok {
			p.responders = append(p.responders, r)
		}
	}
	if addr := cfg.DCV.HTTPCheckAddress; addr != "" {
		opts.HTTPDial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
	}
	engine, err := dcv.NewEngine(opts)
	if err != nil {
		return nil, err
	}
	p.engine = engine
	return p, nil
}

// plan resolves one certificate's configuration into a scheduler.Plan.
func (p *parts) plan(name string) (scheduler.Plan, error) {
	var c *config.Certificate
	base := ""
	for _, cc := range p.cfg.Certificates {
		if cc.Name == name {
			c = cc
		}
		if perHostKeys(p.cfg, cc.Account) && name == scheduler.HostCertName(cc.Name, p.cfg.Fleet.Host) {
			c, base = cc, cc.Name // this host's own certificate of cc
		}
	}
	if c == nil {
		return scheduler.Plan{}, fmt.Errorf("%s is not in the configuration", name)
	}
	issuer, ok := p.issuers[c.Account]
	if !ok {
		return scheduler.Plan{}, fmt.Errorf("%w: issuing through %s accounts is not available in this certd release", errIssuerUnavailable, p.unavailable[c.Account])
	}
	proofs := map[string]scheduler.Proof{}
	for _, d := range c.Domains {
		m := c.DCVFor(d)
		switch m.Method {
		case config.MethodDNS:
			proofs[d] = scheduler.Proof{CA: ca.Proof{Method: dcv.DNSTXT}, Target: dcv.Target{DNS: m.Provider}}
		case config.MethodDNSDelegated:
			proofs[d] = scheduler.Proof{CA: ca.Proof{Method: dcv.DNSTXT, Delegated: true}, Target: dcv.Target{DNS: m.Provider, Delegate: m.Delegate}}
		case config.MethodHTTP:
			proofs[d] = scheduler.Proof{CA: ca.Proof{Method: dcv.HTTPFile}, Target: dcv.Target{HTTP: m.Target}}
		case config.MethodEmail:
			proofs[d] = scheduler.Proof{CA: ca.Proof{Method: dcv.Email, Email: m.Email}}
		}
	}
	plan := scheduler.Plan{
		Spec:           specOf(c),
		Issuer:         issuer,
		Engine:         p.engine,
		Policy:         scheduler.Policy{RemainingFraction: c.Renew.RemainingFraction, Before: c.Renew.Before.D()},
		Deploy:         deploySpec(c),
		Proofs:         proofs,
		Lifetime:       c.Lifetime.D(),
		OrderWait:      p.cfg.Accounts[c.Account].Limits.OrderWait.D(),
		RequestTimeout: p.cfg.Accounts[c.Account].Limits.RequestTimeout.D(),
		PerHostKeys:    perHostKeys(p.cfg, c.Account),
		KeyDir:         p.cfg.Fleet.KeyDir,
		Profile:        c.Profile, ProfileRequired: c.ProfileIsRequired(),
	}
	if base != "" {
		plan.Spec.Name, plan.Spec.Base = name, base
	}
	return plan, nil
}

// claimPlan finds how the account's claim on domain is proved: through
// the first configured certificate that needs it.
func (p *parts) claimPlan(account, domain string) (scheduler.Plan, scheduler.Proof, bool) {
	for _, c := range p.cfg.Certificates {
		if c.Account != account {
			continue
		}
		pl, err := p.plan(c.Name)
		if err != nil {
			continue
		}
		for _, d := range c.Domains {
			if pl.ClaimDomainOf(d) == domain {
				return pl, pl.Proofs[d], true
			}
		}
	}
	return scheduler.Plan{}, scheduler.Proof{}, false
}

// ensureClaim proves the account's claim on domain as configuration says.
func (p *parts) ensureClaim(ctx context.Context, claims *scheduler.Claims, account, domain string, force bool) error {
	pl, proof, ok := p.claimPlan(account, domain)
	if !ok {
		return fmt.Errorf("no configured certificate of account %s needs a claim on %s", account, domain)
	}
	da, ok := pl.Issuer.(ca.DomainAuthorizer)
	if !ok {
		return fmt.Errorf("account %s's CA has no account-level claims", account)
	}
	return claims.Ensure(ctx, p.engine, account, da, domain, proof, pl.ReassertBeforeOf(), force)
}

func specOf(c *config.Certificate) scheduler.CertSpec {
	return scheduler.CertSpec{Name: c.Name, Account: c.Account, Domains: c.Domains, KeyType: c.KeyType}
}

func deploySpec(c *config.Certificate) deploy.Spec {
	d := c.Deploy
	s := deploy.Spec{Name: c.Name, Dir: d.Dir, Owner: d.Owner, Group: d.Group, CertMode: d.CertMode.Mode(), KeyMode: d.KeyMode.Mode(),
		Combined: d.Combined, Keep: d.Keep, Check: d.Check, Timeout: d.HookTimeout.D()}
	for _, r := range d.Reload {
		s.Reload = append(s.Reload, r)
	}
	if v := d.Verify; v != nil {
		s.Verify = &deploy.Verify{Address: v.Address, ServerName: v.ServerName, Timeout: v.Timeout.D()}
	}
	return s
}

// accountKeys keeps CA account keys in the store.
type accountKeys struct{ s store.CAAccounts }

func (a accountKeys) LoadAccountKey(ctx context.Context, account, endpoint string) (ca.AccountKey, bool, error) {
	r, err := a.s.GetCAAccount(ctx, account, endpoint)
	if errors.Is(err, store.ErrNotFound) {
		return ca.AccountKey{}, false, nil
	}
	if err != nil {
		return ca.AccountKey{}, false, err
	}
	return ca.AccountKey{Account: r.Account, Endpoint: r.Endpoint, KeyPEM: r.KeyPEM, Ref: r.Ref, BindingID: r.BindingID}, true, nil
}

func (a accountKeys) SaveAccountKey(ctx context.Context, k ca.AccountKey) error {
	return a.s.SaveCAAccount(ctx, store.CAAccount{Account: k.Account, Endpoint: k.Endpoint, KeyPEM: k.KeyPEM, Ref: k.Ref, BindingID: k.BindingID})
}

// storeJournal is the DCV journal kept in the store's dcv_artefacts.
type storeJournal struct{ s store.Artefacts }

func (j storeJournal) Record(ctx context.Context, r *dcv.Record) error {
	id, err := j.s.JournalArtefact(ctx, store.Artefact{Owner: r.Owner, Kind: r.Kind, Provider: r.Provider, Zone: r.Zone,
		Name: r.Name, Value: r.Value, State: store.ArtefactIntent})
	r.ID = id
	return err
}

func (j storeJournal) Update(ctx context.Context, r dcv.Record) error {
	return j.s.SaveArtefact(ctx, store.Artefact{ID: r.ID, Zone: r.Zone, State: r.State, Attempts: r.Attempts, LastError: r.LastErr})
}

func (j storeJournal) Live(ctx context.Context) ([]dcv.Record, error) {
	live, err := j.s.LiveArtefacts(ctx)
	out := make([]dcv.Record, len(live))
	for i, a := range live {
		out[i] = dcv.Record{ID: a.ID, Owner: a.Owner, Kind: a.Kind, Provider: a.Provider, Zone: a.Zone, Name: a.Name,
			Value: a.Value, State: a.State, Attempts: a.Attempts, LastErr: a.LastError, Updated: a.UpdatedAt}
	}
	return out, err
}
