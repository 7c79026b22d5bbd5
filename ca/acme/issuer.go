package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"

	"github.com/certd/certd/internal/ctxtime"
	"github.com/certd/certd/internal/pemutil"
)

// AccountRecord is an ACME account as kept by certd. KeyPEM is a secret.
type AccountRecord struct {
	Name      string
	Directory string
	KeyPEM    []byte
	URL       string // empty until registered
	EABKeyID  string
}

// AccountStore keeps account keys durably (cmd hands in the store).
type AccountStore interface {
	// LoadAccount returns found=false when there is none.
	LoadAccount(ctx context.Context, name, directory string) (rec AccountRecord, found bool, err error)
	SaveAccount(ctx context.Context, rec AccountRecord) error
}

// EABKey is an External Account Binding credential, the MAC key decoded.
type EABKey struct {
	KeyID  string
	MACKey []byte
}

// Options configure an Issuer.
type Options struct {
	// Name is the account's name in configuration (the store's key).
	Name      string
	Directory string
	Email     string
	EAB       *EABKey
	// HTTPClient talks to the ACME server (its TLS trust set); default
	// http.DefaultClient's transport.
	HTTPClient *http.Client
	// Roots are the anchors issued chains must verify to; nil means the
	// system's roots.
	Roots    []*x509.Certificate
	Accounts AccountStore
	Logger   *zap.Logger
	// Observe, when set, is told of every HTTP exchange by route.
	Observe func(route string, status int, d time.Duration)
	// FinalizeWait bounds how long one Fetch waits for a processing order
	// before reporting it pending (default 30s; OV/EV orders may take
	// hours and are polled again later).
	FinalizeWait time.Duration
	// AuthWait bounds how long Respond waits for the CA to check a
	// challenge (default 2m).
	AuthWait time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Profile, when set, is sent on every newOrder
	// (draft-aaron-acme-profiles) if the directory's meta.profiles offers
	// it. ProfileRequired: a CA that does not offer it fails the order
	// (permanently, naming the certificate); otherwise the CA's default
	// profile is used, with a warning.
	Profile         string
	ProfileRequired bool
}

// Issuer is an ACME account as a ca.Issuer, ca.OrderAuthorizer and
// ca.RenewalAdvisor. It is safe for concurrent use.
type Issuer struct {
	opts   Options
	log    *zap.Logger
	client *acme.Client
	http   *http.Client // for ARI: plain GETs through the same transport

	mu   sync.Mutex // guards acct, lost
	acct *acme.Account
	// lost: the CA said the stored account does not exist (a reset
	// staging CA, a deleted account); the next call registers again.
	lost bool
}

// New returns an Issuer; nothing is sent until it is used.
func New(opts Options) (*Issuer, error) {
	if opts.Directory == "" || opts.Name == "" || opts.Accounts == nil {
		return nil, errors.New("acme: Name, Directory and Accounts are required")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.FinalizeWait == 0 {
		opts.FinalizeWait = 30 * time.Second
	}
	if opts.AuthWait == 0 {
		opts.AuthWait = 2 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	base := http.DefaultTransport
	timeout := 60 * time.Second
	if opts.HTTPClient != nil {
		if opts.HTTPClient.Transport != nil {
			base = opts.HTTPClient.Transport
		}
		if opts.HTTPClient.Timeout != 0 {
			timeout = opts.HTTPClient.Timeout
		}
	}
	hc := &http.Client{Transport: &transport{base: base, observe: opts.Observe, log: opts.Logger}, Timeout: timeout,
		// ACME resources are never fetched through redirects.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &Issuer{
		opts: opts,
		log:  opts.Logger,
		http: hc,
		client: &acme.Client{
			Directory:  opts.Directory,
			HTTPClient: hc,
			UserAgent:  "certd",
			Logger:     newSlogLogger(opts.Logger),
			// certd polls orders itself (adaptive, Retry-After): acmez's
			// own finalize loop is cut short at once.
			PollTimeout: time.Nanosecond,
		},
	}, nil
}

// DecodeMACKey decodes an EAB MAC key as CAs hand it out: base64url
// without padding, with padding, or standard base64.
func DecodeMACKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) > 0 {
			return b, nil
		}
	}
	return nil, errors.New("the EAB HMAC key is not base64url (nor base64) text")
}

// --- account

// account returns the registered account, registering it the first time.
// The key is stored before registration, so a crash in between registers
// the same key again, which the CA answers with the existing account.
func (i *Issuer) account(ctx context.Context) (acme.Account, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.acct != nil {
		return *i.acct, nil
	}
	rec, found, err := i.opts.Accounts.LoadAccount(ctx, i.opts.Name, i.opts.Directory)
	if err != nil {
		return acme.Account{}, fmt.Errorf("acme: loading account %s: %w", i.opts.Name, err)
	}
	var key crypto.Signer
	if found {
		if key, err = pemutil.Key(rec.KeyPEM); err != nil {
			return acme.Account{}, fmt.Errorf("acme: account %s: %w", i.opts.Name, err)
		}
		if i.opts.EAB != nil && rec.URL != "" && rec.EABKeyID != i.opts.EAB.KeyID {
			i.log.Warn("the account was registered with another EAB key id; it is kept (an EAB key binds only at registration)",
				zap.String("registered_kid", rec.EABKeyID), zap.String("configured_kid", i.opts.EAB.KeyID), zap.String("account_url", rec.URL))
		}
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return acme.Account{}, err
		}
		keyPEM, err := pemutil.EncodeKey(k)
		if err != nil {
			return acme.Account{}, err
		}
		key = k
		rec = AccountRecord{Name: i.opts.Name, Directory: i.opts.Directory, KeyPEM: keyPEM}
		if i.opts.EAB != nil {
			rec.EABKeyID = i.opts.EAB.KeyID
		}
		if err := i.opts.Accounts.SaveAccount(ctx, rec); err != nil {
			return acme.Account{}, fmt.Errorf("acme: storing the account key: %w", err)
		}
	}
	acct := acme.Account{PrivateKey: key, Location: rec.URL}
	if i.lost && rec.URL != "" {
		i.log.Warn("the CA does not know the stored account; registering again", zap.String("account_url", rec.URL))
		acct.Location, rec.URL = "", ""
	}
	i.lost = false
	if rec.URL == "" {
		acct.TermsOfServiceAgreed = true
		if i.opts.Email != "" {
			acct.Contact = []string{"mailto:" + i.opts.Email}
		}
		if i.opts.EAB != nil {
			if err := acct.SetExternalAccountBinding(ctx, i.client, acme.EAB{KeyID: i.opts.EAB.KeyID,
				MACKey: base64.RawURLEncoding.EncodeToString(i.opts.EAB.MACKey)}); err != nil {
				return acme.Account{}, fmt.Errorf("acme: external account binding: %w", err)
			}
		}
		x := &exchange{route: "newAccount"}
		reg, err := i.client.NewAccount(withExchange(ctx, x), acct)
		if err != nil {
			return acme.Account{}, i.describe(x, "registering the account", err) // i.mu is held
		}
		reg.PrivateKey = key
		acct = reg
		rec.URL = reg.Location
		if err := i.opts.Accounts.SaveAccount(ctx, rec); err != nil {
			return acme.Account{}, fmt.Errorf("acme: storing the account URL: %w", err)
		}
		i.log.Info("ACME account registered", zap.String("account_url", reg.Location), zap.Bool("eab", i.opts.EAB != nil))
	}
	i.acct = &acct
	return acct, nil
}

// --- ca.Issuer

// Submit implements ca.Issuer: a newOrder, sent at most once. A lost
// answer is ca.ErrAmbiguous (Reconcile looks the order up).
func (i *Issuer) Submit(ctx context.Context, req ca.Request) (ca.Order, error) {
	acct, err := i.account(ctx)
	if err != nil {
		return ca.Order{}, err
	}
	dir, err := i.client.GetDirectory(ctx)
	if err != nil {
		return ca.Order{}, fmt.Errorf("acme: reading the directory: %w", err)
	}
	o := acme.Order{Identifiers: identifiers(req.Domains)}
	if o.Profile, err = i.profileFor(dir, req); err != nil {
		return ca.Order{}, err
	}
	if req.Replaces != nil && dir.RenewalInfo != "" {
		if id, err := acme.ARIUniqueIdentifier(req.Replaces); err == nil {
			o.Replaces = id
		}
	}
	placed, err := i.newOrder(ctx, dir, acct, o)
	if err != nil && o.Replaces != "" && !errors.Is(err, ca.ErrAmbiguous) && replacesRefused(err) {
		i.log.Info("the CA refused the replaces hint; ordering without it", zap.String("replaces", o.Replaces), zap.Error(err))
		o.Replaces = ""
		placed, err = i.newOrder(ctx, dir, acct, o)
	}
	if err != nil {
		return ca.Order{}, err
	}
	return ca.Order{Ref: placed.Location}, nil
}

func (i *Issuer) newOrder(ctx context.Context, dir acme.Directory, acct acme.Account, o acme.Order) (acme.Order, error) {
	x := &exchange{route: "newOrder", once: dir.NewOrder}
	placed, err := i.client.NewOrder(withExchange(ctx, x), acct, o)
	if err != nil {
		if x.wasLost() {
			return placed, fmt.Errorf("%w: newOrder: %v", ca.ErrAmbiguous, err)
		}
		return placed, i.wrap(x, "placing the order", err)
	}
	if placed.Location == "" {
		return placed, fmt.Errorf("%w: the CA created an order without saying where", ca.ErrAmbiguous)
	}
	return placed, nil
}

// profileInvalid is the draft's problem type for a profile the CA does
// not know (draft-aaron-acme-profiles §4).
const profileInvalid = acme.ProblemTypeNamespace + "invalidProfile"

// profile is the profile to send on a newOrder for who (certificate X): the
// configured one when the directory offers it; none when none is
// configured, or when it is only preferred and not offered (a warning);
// a permanent error naming the certificate when it is required and not
// offered.
func (i *Issuer) profile(dir acme.Directory, who string) (string, error) {
	return i.chooseProfile(dir, who, i.opts.Profile, i.opts.ProfileRequired)
}

// profileFor is the profile for req: the certificate's own when it names
// one, else the account's.
func (i *Issuer) profileFor(dir acme.Directory, req ca.Request) (string, error) {
	if req.Profile != "" {
		return i.chooseProfile(dir, "certificate "+req.CertName, req.Profile, req.ProfileRequired)
	}
	return i.profile(dir, "certificate "+req.CertName)
}

func (i *Issuer) chooseProfile(dir acme.Directory, who, want string, required bool) (string, error) {
	if want == "" {
		return "", nil
	}
	var offered map[string]string
	if dir.Meta != nil {
		offered = dir.Meta.Profiles
	}
	if _, ok := offered[want]; ok {
		return want, nil
	}
	names := slices.Sorted(maps.Keys(offered))
	what := "the CA advertises no profiles"
	if len(names) > 0 {
		what = "it offers " + strings.Join(names, ", ")
	}
	if !required {
		i.log.Warn("the CA does not offer the preferred profile; ordering with the CA's default",
			zap.String("for", who), zap.String("profile", want), zap.Strings("offered", names))
		return "", nil
	}
	return "", &Error{CA: "acme", Op: "placing the order", Code: profileInvalid, Permanent: true,
		Detail: fmt.Sprintf("%s: profile %q is not offered by %s (%s); fix the profile or set profile_required: false",
			who, want, i.opts.Directory, what)}
}

func replacesRefused(err error) bool {
	var p acme.Problem
	if !errors.As(err, &p) {
		return false
	}
	return p.Type == acme.ProblemTypeNamespace+"alreadyReplaced" ||
		(p.Type == acme.ProblemTypeMalformed && strings.Contains(strings.ToLower(p.Detail), "replaces"))
}

// identifiers are the order's identifiers: "ip" for an IP address (RFC
// 8738), "dns" for every other name.
func identifiers(domains []string) []acme.Identifier {
	ids := make([]acme.Identifier, len(domains))
	for k, d := range domains {
		ids[k] = acme.Identifier{Type: "dns", Value: d}
		if a, err := netip.ParseAddr(d); err == nil {
			ids[k] = acme.Identifier{Type: "ip", Value: a.Unmap().String()}
		}
	}
	return ids
}

// csrFor returns the CSR to finalize with: req.CSR, unless it lists an IP
// address as a DNS name (certd's scheduler writes every identifier into
// DNSNames), in which case the same request is made again with the
// addresses as IP SANs, signed by the order's key, as RFC 8738 §3 and the
// CA's finalize check ask.
func csrFor(req ca.Request) ([]byte, error) {
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("acme: the order's CSR: %w", err)
	}
	var names []string
	var ips []net.IP
	for _, n := range csr.DNSNames {
		if a, err := netip.ParseAddr(n); err == nil {
			ips = append(ips, net.IP(a.Unmap().AsSlice()))
			continue
		}
		names = append(names, n)
	}
	if len(ips) == 0 {
		return req.CSR, nil
	}
	if req.Key == nil {
		return nil, errors.New("acme: the CSR lists IP addresses as DNS names and the order's key is not at hand to write it again")
	}
	tmpl := &x509.CertificateRequest{DNSNames: names, IPAddresses: append(ips, csr.IPAddresses...)}
	if len(names) > 0 {
		tmpl.Subject.CommonName = names[0]
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, req.Key)
	if err != nil {
		return nil, fmt.Errorf("acme: writing the CSR with IP addresses: %w", err)
	}
	return der, nil
}

// Reconcile implements ca.Issuer. It walks the account's order list (RFC
// 8555 §7.1.2.1) for an open order with exactly the request's names: an
// order no one finalized can only be the one whose answer was lost. A CA
// that lists no orders (Let's Encrypt) gets "not found": an unfinalized
// ACME order costs nothing and lapses, and certd finalizes only orders it
// journaled, so no certificate is ever bought twice.
func (i *Issuer) Reconcile(ctx context.Context, req ca.Request) (ca.Order, bool, error) {
	acct, err := i.account(ctx)
	if err != nil {
		return ca.Order{}, false, err
	}
	urls, listed, err := i.orders(ctx, acct)
	if err != nil {
		return ca.Order{}, false, err
	}
	if !listed {
		i.log.Info("the CA lists no orders; an order whose answer was lost is left to lapse", zap.Strings("domains", req.Domains))
		return ca.Order{}, false, nil
	}
	want := slices.Clone(req.Domains)
	slices.Sort(want)
	now := i.opts.Now()
	// Newest last: look back from the end, a bounded number of orders.
	for k, seen := len(urls)-1, 0; k >= 0 && seen < 100; k, seen = k-1, seen+1 {
		x := &exchange{route: "order"}
		o, err := i.client.GetOrder(withExchange(ctx, x), acct, acme.Order{Location: urls[k]})
		if err != nil {
			return ca.Order{}, false, i.wrap(x, "reading an order", err)
		}
		if o.Status != acme.StatusPending && o.Status != acme.StatusReady {
			continue // finalized or dead: not a lost order of certd's
		}
		if !o.Expires.IsZero() && !o.Expires.After(now) {
			continue
		}
		got := make([]string, 0, len(o.Identifiers))
		for _, id := range o.Identifiers {
			got = append(got, id.Value)
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			return ca.Order{Ref: urls[k]}, true, nil
		}
	}
	return ca.Order{}, false, nil
}

// Orders lists the account's order URLs, oldest first (RFC 8555
// §7.1.2.1); listed=false when the CA does not list orders.
func (i *Issuer) Orders(ctx context.Context) (urls []string, listed bool, err error) {
	acct, err := i.account(ctx)
	if err != nil {
		return nil, false, err
	}
	return i.orders(ctx, acct)
}

func (i *Issuer) orders(ctx context.Context, acct acme.Account) ([]string, bool, error) {
	x := &exchange{route: "account"}
	cur, err := i.client.GetAccount(withExchange(ctx, x), acme.Account{PrivateKey: acct.PrivateKey})
	if err != nil {
		return nil, false, i.wrap(x, "reading the account", err)
	}
	if cur.Orders == "" {
		return nil, false, nil
	}
	var urls []string
	next := cur.Orders
	for page := 0; next != "" && page < 1000; page++ {
		body, hdr, err := i.postAsGet(ctx, acct, next, "orders")
		if err != nil {
			return nil, true, err
		}
		var list struct {
			Orders []string `json:"orders"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, true, fmt.Errorf("acme: the order list is not JSON: %w", err)
		}
		urls = append(urls, list.Orders...)
		next = link(hdr, "next")
	}
	return urls, true, nil
}

// Fetch implements ca.Issuer: finalize a ready order, wait (adaptively)
// for a processing one, download a valid one.
func (i *Issuer) Fetch(ctx context.Context, order ca.Order, req ca.Request) (*ca.Result, error) {
	acct, o, err := i.order(ctx, order.Ref)
	if err != nil {
		return nil, err
	}
	x := &exchange{route: "order"} // no Retry-After seen yet
	if o.Status == acme.StatusReady {
		csr, err := csrFor(req)
		if err != nil {
			return nil, err
		}
		x = &exchange{route: "finalize"}
		fin, err := i.client.FinalizeOrder(withExchange(ctx, x), acct, o, csr)
		if err != nil && fin.Status != acme.StatusProcessing && fin.Status != acme.StatusValid {
			// An earlier run's finalize may be under way: the order as it
			// stands now decides.
			_, now, gerr := i.order(ctx, order.Ref)
			switch {
			case gerr != nil:
				return nil, i.wrap(x, "finalizing the order", err)
			case now.Status == acme.StatusProcessing || now.Status == acme.StatusValid:
				fin = now
			case now.Status == acme.StatusInvalid || fin.Status == acme.StatusInvalid:
				return nil, fmt.Errorf("%w: %v", ca.ErrRejected, err)
			default:
				return nil, i.wrap(x, "finalizing the order", err)
			}
		}
		fin.Location = order.Ref
		o = fin
	}
	pl := newPoller(i.opts.FinalizeWait)
	for o.Status == acme.StatusProcessing {
		if d, err := pl.wait(ctx, x.retryAfter(i.opts.Now())); err != nil {
			if errors.Is(err, errPollTimeout) {
				return nil, &Error{CA: "acme", Op: "fetch", Detail: "the order is still processing at the CA", Retry: d, Err: ca.ErrPending}
			}
			return nil, err
		}
		x = &exchange{route: "order"}
		if o, err = i.client.GetOrder(withExchange(ctx, x), acct, acme.Order{Location: order.Ref}); err != nil {
			return nil, i.wrap(x, "polling the order", err)
		}
	}
	switch o.Status {
	case acme.StatusValid:
	case acme.StatusInvalid:
		return nil, fmt.Errorf("%w: %s", ca.ErrRejected, problemText(o.Error, "the order is invalid"))
	case acme.StatusPending:
		return nil, errors.New("acme: the order still has authorizations to prove")
	default:
		return nil, fmt.Errorf("acme: the order is %q", o.Status)
	}
	if o.Certificate == "" {
		return nil, errors.New("acme: the valid order names no certificate")
	}
	body, _, err := i.postAsGet(ctx, acct, o.Certificate, "certificate")
	if err != nil {
		return nil, err
	}
	certs, err := pemutil.Certificates(body)
	if err != nil {
		return nil, fmt.Errorf("acme: the certificate at %s: %w", o.Certificate, err)
	}
	return &ca.Result{Leaf: certs[0], Chain: certs[1:], Roots: i.opts.Roots}, nil
}

// order reads the order at url with the account.
func (i *Issuer) order(ctx context.Context, url string) (acme.Account, acme.Order, error) {
	acct, err := i.account(ctx)
	if err != nil {
		return acct, acme.Order{}, err
	}
	x := &exchange{route: "order"}
	o, err := i.client.GetOrder(withExchange(ctx, x), acct, acme.Order{Location: url})
	if err != nil {
		return acct, o, i.wrap(x, "reading the order", err)
	}
	o.Location = url
	return acct, o, nil
}

// postAsGet is a signed POST-as-GET through acmez (nonces, badNonce
// retries) whose raw body is read from the exchange: acmez decodes only
// the resources it knows.
func (i *Issuer) postAsGet(ctx context.Context, acct acme.Account, url, route string) ([]byte, http.Header, error) {
	x := &exchange{route: route, capture: true}
	_, err := i.client.GetOrder(withExchange(ctx, x), acct, acme.Order{Location: url})
	x.mu.Lock()
	body, hdr, status := x.body, x.header, x.status
	x.mu.Unlock()
	if status/100 == 2 && body != nil {
		return body, hdr, nil
	}
	if err == nil {
		err = fmt.Errorf("HTTP %d without a body", status)
	}
	return nil, nil, i.wrap(x, "fetching "+route, err)
}

var linkRE = regexp.MustCompile(`<([^>]+)>\s*;\s*rel="?([^";]+)"?`)

// link returns the first Link header URL with relation rel.
func link(h http.Header, rel string) string {
	for _, v := range h.Values("Link") {
		for _, m := range linkRE.FindAllStringSubmatch(v, -1) {
			if m[2] == rel {
				return m[1]
			}
		}
	}
	return ""
}

// --- ca.OrderAuthorizer

// Authorizations implements ca.OrderAuthorizer.
func (i *Issuer) Authorizations(ctx context.Context, order ca.Order, req ca.Request) ([]ca.OrderAuthorization, error) {
	acct, o, err := i.order(ctx, order.Ref)
	if err != nil {
		return nil, err
	}
	out := make([]ca.OrderAuthorization, 0, len(o.Authorizations))
	for _, u := range o.Authorizations {
		x := &exchange{route: "authz"}
		a, err := i.client.GetAuthorization(withExchange(ctx, x), acct, u)
		if err != nil {
			return nil, i.wrap(x, "reading an authorization", err)
		}
		out = append(out, authorization(a))
	}
	return out, nil
}

func authorization(a acme.Authorization) ca.OrderAuthorization {
	oa := ca.OrderAuthorization{Ref: a.Location, Domain: a.Identifier.Value, Expires: a.Expires}
	if a.Wildcard {
		oa.Domain = "*." + a.Identifier.Value
	}
	switch a.Status {
	case acme.StatusValid:
		oa.Status = ca.AuthValid
	case acme.StatusPending:
		oa.Status = ca.AuthPending
	default:
		oa.Status = ca.AuthInvalid
	}
	for _, ch := range a.Challenges {
		if ch.Status == acme.StatusProcessing {
			oa.Checking = true
		}
		if ch.Error != nil && oa.Detail == "" {
			oa.Detail = problemText(ch.Error, "")
		}
		switch ch.Type {
		case acme.ChallengeTypeDNS01:
			oa.Challenges = append(oa.Challenges, dcv.Challenge{Domain: a.Identifier.Value, Method: dcv.DNSTXT,
				RecordName: "_acme-challenge." + a.Identifier.Value, Value: ch.DNS01KeyAuthorization(), Expires: a.Expires, CARef: ch.URL})
		case acme.ChallengeTypeHTTP01:
			if a.Wildcard {
				continue
			}
			oa.Challenges = append(oa.Challenges, dcv.Challenge{Domain: a.Identifier.Value, Method: dcv.HTTPFile,
				Path: ch.HTTP01ResourcePath(), Content: ch.KeyAuthorization, Expires: a.Expires, CARef: ch.URL})
		}
	}
	return oa
}

// Respond implements ca.OrderAuthorizer: the challenge is started unless
// the CA is already at it, then the authorization is polled adaptively
// (short first intervals, Retry-After when given) until it is decided.
func (i *Issuer) Respond(ctx context.Context, auth ca.OrderAuthorization, ch dcv.Challenge) (ca.OrderAuthorization, error) {
	acct, err := i.account(ctx)
	if err != nil {
		return auth, err
	}
	x := &exchange{route: "authz"}
	a, err := i.client.GetAuthorization(withExchange(ctx, x), acct, auth.Ref)
	if err != nil {
		return auth, i.wrap(x, "reading the authorization", err)
	}
	if a.Status == acme.StatusPending {
		for _, c := range a.Challenges {
			if c.URL != ch.CARef || c.Status != acme.StatusPending {
				continue
			}
			x := &exchange{route: "challenge"}
			if _, err := i.client.InitiateChallenge(withExchange(ctx, x), acct, c); err != nil {
				// Started meanwhile (an earlier run's request being
				// processed)? Then its outcome is what to wait for.
				y := &exchange{route: "authz"}
				now, gerr := i.client.GetAuthorization(withExchange(ctx, y), acct, auth.Ref)
				if gerr != nil || (now.Status == acme.StatusPending && challengeStatus(now, c.URL) == acme.StatusPending) {
					return auth, i.wrap(x, "starting the challenge", err)
				}
				a = now
			}
		}
	}
	pl := newPoller(i.opts.AuthWait)
	for a.Status == acme.StatusPending {
		if _, err := pl.wait(ctx, x.retryAfter(i.opts.Now())); err != nil {
			if errors.Is(err, errPollTimeout) {
				return auth, fmt.Errorf("acme: the CA has not checked the challenge for %s within %s; it is looked at again later", auth.Domain, i.opts.AuthWait)
			}
			return auth, err
		}
		x = &exchange{route: "authz"}
		if a, err = i.client.GetAuthorization(withExchange(ctx, x), acct, auth.Ref); err != nil {
			return auth, i.wrap(x, "polling the authorization", err)
		}
	}
	a.Location = auth.Ref
	return authorization(a), nil
}

// Locate implements ca.ChallengeLocator: where dns-01 and http-01 look.
func (i *Issuer) Locate(domain string, how ca.Proof, value string) (dcv.Challenge, bool) {
	domain = strings.TrimPrefix(domain, "*.")
	ch := dcv.Challenge{Domain: domain, Method: how.Method}
	_, ipErr := netip.ParseAddr(domain)
	switch how.Method {
	case dcv.DNSTXT:
		if ipErr == nil {
			return dcv.Challenge{}, false // RFC 8738: no dns-01 for an IP address
		}
		ch.RecordName, ch.Value = "_acme-challenge."+domain, value
	case dcv.HTTPFile:
		ch.Path, ch.Content = "/.well-known/acme-challenge/"+value, value
	default:
		return dcv.Challenge{}, false
	}
	return ch, true
}

func challengeStatus(a acme.Authorization, url string) string {
	for _, c := range a.Challenges {
		if c.URL == url {
			return c.Status
		}
	}
	return ""
}

// --- ca.RenewalAdvisor

// RenewalWindow implements ca.RenewalAdvisor (RFC 9773): a plain GET of
// the directory's renewalInfo URL with the certificate's ARI id.
func (i *Issuer) RenewalWindow(ctx context.Context, leaf *x509.Certificate) (ca.RenewalWindow, error) {
	dir, err := i.client.GetDirectory(ctx)
	if err != nil {
		return ca.RenewalWindow{}, fmt.Errorf("acme: reading the directory: %w", err)
	}
	if dir.RenewalInfo == "" {
		return ca.RenewalWindow{}, fmt.Errorf("%w: the directory has no renewalInfo", ca.ErrNoAdvice)
	}
	id, err := acme.ARIUniqueIdentifier(leaf)
	if err != nil || len(leaf.AuthorityKeyId) == 0 {
		return ca.RenewalWindow{}, fmt.Errorf("%w: the certificate has no ARI id: %v", ca.ErrNoAdvice, err)
	}
	x := &exchange{route: "renewalInfo"}
	req, err := http.NewRequestWithContext(withExchange(ctx, x), http.MethodGet, strings.TrimSuffix(dir.RenewalInfo, "/")+"/"+id, nil)
	if err != nil {
		return ca.RenewalWindow{}, err
	}
	resp, err := i.http.Do(req)
	if err != nil {
		return ca.RenewalWindow{}, fmt.Errorf("acme: renewalInfo: %w", err)
	}
	defer resp.Body.Close()
	ra := parseRetryAfter(resp.Header.Get("Retry-After"), i.opts.Now())
	if resp.StatusCode != http.StatusOK {
		return ca.RenewalWindow{}, &Error{CA: "acme", Op: "renewalInfo", Status: resp.StatusCode, Detail: "renewalInfo answered " + resp.Status, Retry: ra}
	}
	return decodeRenewalInfo(resp.Body, resp.StatusCode, ra)
}

// decodeRenewalInfo reads a 200 answer of renewalInfo (RFC 9773). The
// window is returned as sent; callers check Valid.
func decodeRenewalInfo(r io.Reader, status int, ra time.Duration) (ca.RenewalWindow, error) {
	var body struct {
		SuggestedWindow struct {
			Start time.Time `json:"start"`
			End   time.Time `json:"end"`
		} `json:"suggestedWindow"`
		ExplanationURL string `json:"explanationURL"`
	}
	if err := json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(&body); err != nil {
		return ca.RenewalWindow{}, &Error{CA: "acme", Op: "renewalInfo", Status: status, Detail: "renewalInfo is not JSON: " + err.Error(), Retry: ra}
	}
	return ca.RenewalWindow{Start: body.SuggestedWindow.Start, End: body.SuggestedWindow.End, RetryAfter: ra,
		ExplanationURL: body.ExplanationURL}, nil
}

// --- errors

// Error is an ACME failure: a ca.Error with CA "acme" and the problem
// type as Code.
type Error = ca.Error

// OrderCost implements ca.Coster: an ACME order costs nothing until it is
// finalized.
func (i *Issuer) OrderCost() ca.Cost { return ca.FreeUntilFinalized }

// permanentProblems are ACME problem types that retrying cannot fix.
var permanentProblems = map[string]bool{
	acme.ProblemTypeNamespace + "unauthorized":            true,
	acme.ProblemTypeNamespace + "externalAccountRequired": true,
	acme.ProblemTypeNamespace + "userActionRequired":      true,
	acme.ProblemTypeNamespace + "unsupportedContact":      true,
	acme.ProblemTypeNamespace + "invalidContact":          true,
	profileInvalid: true,
}

// wrap turns an acmez error into an *Error with the exchange's Retry-After.
// An accountDoesNotExist answer makes the next call register again.
func (i *Issuer) wrap(x *exchange, doing string, err error) error {
	werr := i.describe(x, doing, err)
	var e *Error
	if errors.As(werr, &e) && e.Code == acme.ProblemTypeAccountDoesNotExist {
		i.mu.Lock()
		i.acct, i.lost = nil, true
		i.mu.Unlock()
	}
	return werr
}

// describe is wrap without side effects (for use under i.mu).
func (i *Issuer) describe(x *exchange, doing string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("acme: %s: %w", doing, err)
	}
	e := &Error{CA: "acme", Op: doing, Detail: err.Error(), Retry: x.retryAfter(i.opts.Now()), Err: err}
	var p acme.Problem
	if errors.As(err, &p) {
		e.Status, e.Code = p.Status, p.Type
		e.Detail = problemText(&p, err.Error())
		e.Permanent = permanentProblems[p.Type]
	}
	return e
}

func problemText(p *acme.Problem, fallback string) string {
	if p == nil {
		return fallback
	}
	s := p.Detail
	if s == "" {
		s = p.Title
	}
	for _, sp := range p.Subproblems {
		s += "; " + sp.Identifier.Value + ": " + sp.Detail
	}
	if s == "" {
		return fallback
	}
	return s
}

// poller paces polls: the server's Retry-After when it gave one, else
// 10 ms doubling up to 2 s; never past its deadline.
type poller struct {
	step     time.Duration
	deadline time.Time
}

var errPollTimeout = errors.New("acme: poll deadline reached")

func newPoller(limit time.Duration) *poller {
	return &poller{deadline: time.Now().Add(limit)}
}

// wait sleeps until the next poll; errPollTimeout (with the wait that
// would have been) when that is past the deadline.
func (p *poller) wait(ctx context.Context, retryAfter time.Duration) (time.Duration, error) {
	if p.step == 0 {
		p.step = 10 * time.Millisecond
	} else {
		p.step = min(p.step*2, 2*time.Second)
	}
	d := p.step
	if retryAfter > 0 {
		d = retryAfter
	}
	if time.Now().Add(d).After(p.deadline) {
		return d, errPollTimeout
	}
	return d, ctxtime.Sleep(ctx, d)
}
