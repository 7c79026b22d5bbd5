package acme

import (
	"context"
	"fmt"
	"strings"

	"github.com/mholt/acmez/v3/acme"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/pemutil"
)

var _ ca.Prober = (*Issuer)(nil)

// Probe implements ca.Prober. It reads the directory and the stored
// account (never registering one), then places a new order for the names,
// which an ACME CA does not charge for until it is finalized, to read the
// authorizations the CA would ask for: already valid, or pending with the
// configured challenge type offered. The order is never answered nor
// finalized; it lapses at the CA.
func (i *Issuer) Probe(ctx context.Context, req ca.ProbeRequest, report func(ca.ProbeStep)) error {
	step := func(name string, r ca.ProbeResult, format string, args ...any) {
		report(ca.ProbeStep{Name: name, Result: r, Detail: fmt.Sprintf(format, args...)})
	}
	dir, err := i.client.GetDirectory(ctx)
	if err != nil {
		err = fmt.Errorf("acme: reading the directory %s: %w", i.opts.Directory, err)
		step("directory", ca.ProbeFailed, "%v", err)
		return err
	}
	step("directory", ca.ProbeOK, "read %s", i.opts.Directory)
	profile, perr := i.profile(dir, "the order for "+strings.Join(req.Domains, ", "))
	switch {
	case perr != nil:
		step("profile", ca.ProbeFailed, "%v", perr)
	case i.opts.Profile != "" && profile == "":
		step("profile", ca.ProbeFailed, "profile %q is not offered; the CA's default is used instead (profile_required: false)", i.opts.Profile)
	case profile != "":
		step("profile", ca.ProbeOK, "the CA offers profile %q (%s)", profile, dir.Meta.Profiles[profile])
	}
	if dir.Meta != nil && dir.Meta.ExternalAccountRequired && i.opts.EAB == nil {
		step("account", ca.ProbeFailed, "the CA requires External Account Binding and the account has no eab (kid, hmac_key)")
		return nil
	}
	rec, found, err := i.opts.Accounts.LoadAccount(ctx, i.opts.Name, i.opts.Directory)
	if err != nil {
		step("account", ca.ProbeFailed, "loading the stored account: %v", err)
		return err
	}
	if !found || rec.URL == "" {
		step("account", ca.ProbeUnchecked, "not registered yet: certd registers it (its key stored first) at the first issuance; "+
			"the authorizations the CA asks for cannot be read without it")
		return nil
	}
	key, err := pemutil.Key(rec.KeyPEM)
	if err != nil {
		step("account", ca.ProbeFailed, "the stored account key: %v", err)
		return err
	}
	x := &exchange{route: "account"}
	cur, err := i.client.GetAccount(withExchange(ctx, x), acme.Account{PrivateKey: key})
	if err != nil {
		err = i.describe(x, "reading the account", err)
		step("account", ca.ProbeFailed, "%v", err)
		return err
	}
	if cur.Status != acme.StatusValid {
		step("account", ca.ProbeFailed, "the account %s is %s at the CA", rec.URL, cur.Status)
		return fmt.Errorf("acme: the account is %s", cur.Status)
	}
	step("account", ca.ProbeOK, "%s is valid", rec.URL)

	acct := acme.Account{PrivateKey: key, Location: rec.URL}
	x = &exchange{route: "newOrder", once: dir.NewOrder}
	o, err := i.client.NewOrder(withExchange(ctx, x), acct, acme.Order{Identifiers: identifiers(req.Domains), Profile: profile})
	if err != nil {
		step("order", ca.ProbeFailed, "%v", i.describe(x, "placing an order to read its authorizations", err))
		return nil
	}
	step("order", ca.ProbeOK, "the CA accepts an order for %s (%s: free until finalized; certd never finalizes it and it lapses)",
		strings.Join(req.Domains, ", "), o.Location)
	for _, u := range o.Authorizations {
		x := &exchange{route: "authz"}
		a, err := i.client.GetAuthorization(withExchange(ctx, x), acct, u)
		if err != nil {
			step("authorization", ca.ProbeFailed, "%v", i.describe(x, "reading an authorization", err))
			continue
		}
		oa := authorization(a)
		name := "authorization " + oa.Domain
		switch oa.Status {
		case ca.AuthValid:
			step(name, ca.ProbeOK, "already valid until %s: nothing to prove", a.Expires.UTC().Format("2006-01-02T15:04Z"))
			continue
		case ca.AuthInvalid:
			step(name, ca.ProbeFailed, "%s at the CA: %s", a.Status, oa.Detail)
			continue
		}
		how, ok := req.Proofs[oa.Domain]
		if !ok {
			how = req.Proofs[strings.TrimPrefix(oa.Domain, "*.")]
		}
		var offered []string
		match := false
		for _, ch := range oa.Challenges {
			offered = append(offered, string(ch.Method))
			// A DNS proof answers a TXT challenge, or a CNAME one (as the
			// issuance picks it).
			match = match || ch.Method == how.Method || how.Method == dcv.DNSTXT && ch.Method == dcv.DNSCNAME
		}
		if !match {
			step(name, ca.ProbeFailed, "the CA offers %s, not the configured %s", strings.Join(offered, ", "), how.Method)
			continue
		}
		step(name, ca.ProbeOK, "pending; the CA offers %s, and the configuration proves it by %s", strings.Join(offered, ", "), how.Method)
	}
	return nil
}
