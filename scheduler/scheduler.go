package scheduler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/internal/logkey"
	"github.com/certd/certd/store"
)

// CertSpec is what the configuration asks for one certificate.
type CertSpec struct {
	Name    string
	Account string
	Domains []string
	KeyType string
	// Base, when set, makes this a host's own certificate of the fleet's
	// certificate Base (per-host keys): the same names, a key that never
	// leaves the host, issued as a reissue of Base's order, never bought.
	Base string
}

// HostCertName is the name of host's own certificate of the fleet's
// certificate base (per-host keys).
func HostCertName(base, host string) string { return base + "@" + host }

// Hash identifies the parts of the spec whose change needs a new
// certificate: the names and the key type (not the account: moving a
// certificate to another account of the same CA needs no reissue until
// renewal).
func (c CertSpec) Hash() string {
	d := slices.Clone(c.Domains)
	slices.Sort(d)
	sum := sha256.Sum256([]byte(c.KeyType + "\n" + strings.Join(d, "\n")))
	return hex.EncodeToString(sum[:])
}

// Store is what the scheduler needs of persistence.
type Store interface {
	store.Certificates
	store.Events
	DueClaims(ctx context.Context, now time.Time, limit int) ([]store.Claim, error)
}

// Work does the due action of one certificate. It returns nil when the
// action is done and the certificate saved with its next action, or an
// error, in which case the scheduler records the failure and schedules a
// retry. Work must honour ctx between atomic steps.
type Work func(ctx context.Context, cert store.Certificate) error

// RetryAfterError is implemented by errors that carry a server's
// Retry-After; the next attempt is never sooner.
type RetryAfterError interface {
	error
	RetryAfter() time.Duration
}

// ClaimWork does the due action of one account-level claim (reassertion
// ahead of expiry); like Work, it records its own outcome.
type ClaimWork func(ctx context.Context, claim store.Claim) error

// Options configure a Scheduler.
type Options struct {
	Store Store
	Work  Work
	// ClaimWork, when set, is run for every claim whose next action is due.
	ClaimWork ClaimWork
	// OnFailure, when set, is told of every failed job (metrics,
	// notifications) after the failure is recorded.
	OnFailure func(cert store.Certificate, err error)
	// Housekeeping, when set, runs at the start of every pass (retrying
	// the removal of DCV artefacts, say). Its failures are logged.
	Housekeeping func(ctx context.Context) error
	// PassDone, when set, is told when a pass has worked everything that
	// was due (worked: how many certificates and claims), so that the time
	// of the last completed pass can be kept. A pass cut short by Stop is
	// not reported.
	PassDone func(ctx context.Context, worked int)
	// OnRetire, when set, is told of every certificate Apply retires
	// because the configuration no longer lists it (after the event is
	// recorded): its files stay deployed and are no longer renewed, which
	// a person must hear about.
	OnRetire func(cert store.Certificate)
	Logger   *zap.Logger
	// Schedule is the cron spec of the periodic pass.
	Schedule string
	// Workers bounds how many certificates are worked at once (default 4).
	Workers int
	// AccountLimit, when set, bounds how many certificates of one account
	// are worked at once (the account's max_concurrent).
	AccountLimit func(account string) int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// NeedsOperatorRecheck is how soon a certificate that needs an
	// operator is tried again on its own (default 12h).
	NeedsOperatorRecheck time.Duration
	// Rand draws jitter (default seeded from the runtime).
	Rand *rand.Rand
	// Fleet, when set, works only what this host claims with a lease,
	// each job fenced by it (see Fleet).
	Fleet *Fleet
	// HostWork, when set, runs at the end of every pass: this host's own
	// work that needs no lease (deploying versions other hosts issued).
	HostWork func(ctx context.Context) error
	// Tick, when set, runs a pass at least this often besides Schedule
	// (fleet mode: versions issued elsewhere are deployed soon).
	Tick time.Duration
}

// Scheduler runs the periodic pass: it reads what is due from the store by
// index and works it with bounded concurrency.
type Scheduler struct {
	opts Options
	log  *zap.Logger

	mu    sync.Mutex // guards specs, rand
	specs []CertSpec

	cron     *cron.Cron
	accounts sync.Map   // account -> chan struct{} (its concurrency slots)
	passMu   sync.Mutex // one pass at a time
	jobs     sync.WaitGroup
	jobCtx   context.Context
	stopJob  context.CancelFunc
	kick     chan struct{}
	done     chan struct{}
	wake     *time.Timer // guarded by mu
}

// New validates opts and returns a Scheduler that is not yet running.
func New(opts Options) (*Scheduler, error) {
	if opts.Store == nil || opts.Work == nil {
		return nil, errors.New("scheduler: Store and Work are required")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	s := &Scheduler{opts: opts, log: opts.Logger, kick: make(chan struct{}, 1), done: make(chan struct{})}
	if err := s.SetSchedule(opts.Schedule); err != nil {
		return nil, err
	}
	return s, nil
}

// SetSchedule replaces the cron spec of the periodic pass. Call it before
// Start, or after a reload (it takes effect at once).
func (s *Scheduler) SetSchedule(spec string) error {
	c := cron.New(cron.WithLocation(time.UTC))
	if _, err := c.AddFunc(spec, s.Kick); err != nil {
		return fmt.Errorf("scheduler: schedule %q: %w", spec, err)
	}
	s.mu.Lock()
	old := s.cron
	s.cron = c
	running := s.jobCtx != nil
	s.mu.Unlock()
	if old != nil {
		old.Stop()
	}
	if running {
		c.Start()
	}
	return nil
}

// Apply makes specs the configured certificates and reconciles the store
// with them: new ones become due at once, changed ones are due for
// reissue, removed ones are retired (their history is kept).
func (s *Scheduler) Apply(ctx context.Context, specs []CertSpec) error {
	s.mu.Lock()
	s.specs = slices.Clone(specs)
	s.mu.Unlock()

	now := s.opts.Now()
	// Other hosts' listings keep a certificate this host dropped, and
	// their specs hold a change back until every live host asks for it.
	listedElsewhere := map[string]bool{}
	var others map[string]map[string]string
	if f := s.opts.Fleet; f != nil {
		mine := make(map[string]string, len(specs))
		for _, sp := range specs {
			mine[sp.Name] = sp.Hash()
		}
		if err := f.Store.SetHostCertificates(ctx, f.Host, mine); err != nil {
			return fmt.Errorf("scheduler: recording this host's certificates: %w", err)
		}
		hosts, err := f.Store.HostCertificates(ctx)
		if err != nil {
			return fmt.Errorf("scheduler: reading the fleet's certificates: %w", err)
		}
		if others, listedElsewhere, err = f.otherSpecs(ctx, hosts, now); err != nil {
			return fmt.Errorf("scheduler: reading the fleet's hosts: %w", err)
		}
	}
	stored, err := s.opts.Store.ListCertificates(ctx)
	if err != nil {
		return fmt.Errorf("scheduler: reconciling configuration: %w", err)
	}
	byName := make(map[string]store.Certificate, len(stored))
	for _, c := range stored {
		byName[c.Name] = c
	}
	for _, spec := range specs {
		_, ok := byName[spec.Name]
		delete(byName, spec.Name)
		if !ok {
			// Created only if no other host of a fleet created it since
			// the listing above; then it is reconciled like any other.
			c := store.Certificate{Name: spec.Name, State: store.StatePending, NextAction: ActionIssue, NextActionAt: now,
				Account: spec.Account, Domains: spec.Domains, KeyType: spec.KeyType, SpecHash: spec.Hash()}
			err := s.opts.Store.InsertCertificate(ctx, c)
			if err == nil {
				s.event(ctx, "info", "configured", spec.Name, spec.Account, "certificate added to the configuration; first issuance is due")
				continue
			}
			if !errors.Is(err, store.ErrExists) {
				return fmt.Errorf("scheduler: reconciling %s: %w", spec.Name, err)
			}
		}
		// In a fleet, a host whose configuration asks for other names or
		// another key type than a live host's does not change the stored
		// spec (each would order its own, paid, in turn): the change
		// waits until every live host asks for it, and meanwhile only the
		// hosts agreeing with the store work the certificate.
		hash := spec.Hash()
		var disagree []string
		for h, hh := range others[spec.Name] {
			if hh != hash {
				disagree = append(disagree, h)
			}
		}
		slices.Sort(disagree)
		// The decision is taken on the row as it is inside the update's
		// transaction, not on the listing above (another host may have
		// moved it on since).
		var kind, msg string
		held := false
		err := s.opts.Store.UpdateCertificate(ctx, spec.Name, func(c *store.Certificate) error {
			kind, msg, held = "", "", false
			if c.SpecHash != hash && len(disagree) > 0 {
				held = true
				return errUnchanged
			}
			switch {
			case c.State == store.StateRetired && c.SpecHash == hash && c.Current != nil && now.Before(c.Current.NotAfter):
				// The same names and key type back again: the stored
				// version is put back in place (a redeploy, no order) and
				// its renewal scheduled as before.
				c.State, c.NextAction, c.NextActionAt = store.StateValid, ActionRedeploy, now
				kind, msg = "configured", fmt.Sprintf("certificate back in the configuration; its stored version (serial %s, valid until %s) is deployed again, nothing is ordered",
					c.Current.Serial, c.Current.NotAfter.UTC().Format(time.RFC3339))
			case c.State == store.StateRetired:
				c.State, c.NextAction, c.NextActionAt = store.StatePending, ActionIssue, now
				kind, msg = "configured", "certificate back in the configuration; issuance is due"
			case c.SpecHash != hash && c.CurrentVersion != 0:
				c.NextAction, c.NextActionAt = ActionReissue, now
				kind, msg = "changed", "names or key type changed in the configuration; reissue is due"
			case c.SpecHash == hash && c.Account == spec.Account && slices.Equal(c.Domains, spec.Domains) && c.KeyType == spec.KeyType:
				return errUnchanged
			}
			c.Account, c.Domains, c.KeyType, c.SpecHash = spec.Account, spec.Domains, spec.KeyType, hash
			return nil
		})
		switch {
		case held:
			s.log.Warn("the fleet's hosts ask for different names or key types for this certificate; the stored one stays until every live host asks for the same",
				zap.String(logkey.Cert, spec.Name), zap.Strings("hosts_differing", disagree))
			s.event(ctx, "warn", "spec_disagreement", spec.Name, spec.Account, fmt.Sprintf("this host's configuration of %s differs from host(s) %s; "+
				"it changes when every live host's configuration asks for the same names and key type, and meanwhile only hosts that agree with the store work it",
				spec.Name, strings.Join(disagree, ", ")))
		case errors.Is(err, errUnchanged):
		case err != nil:
			return fmt.Errorf("scheduler: reconciling %s: %w", spec.Name, err)
		case kind != "":
			s.event(ctx, "info", kind, spec.Name, spec.Account, msg)
		}
	}
	for name, c := range byName {
		if c.State == store.StateRetired {
			continue
		}
		if listedElsewhere[name] {
			continue // another host of the fleet still lists it
		}
		var retired store.Certificate
		err := s.opts.Store.UpdateCertificate(ctx, name, func(c *store.Certificate) error {
			if c.State == store.StateRetired {
				return errUnchanged
			}
			c.State, c.NextAction, c.NextActionAt = store.StateRetired, "", time.Time{}
			retired = *c
			return nil
		})
		if errors.Is(err, errUnchanged) {
			continue
		}
		if err != nil {
			return fmt.Errorf("scheduler: retiring %s: %w", name, err)
		}
		c = retired
		msg := "certificate removed from the configuration and retired; its history is kept and it is no longer renewed"
		if c.Current != nil {
			msg = fmt.Sprintf("certificate removed from the configuration and retired: its deployed files (serial %s, valid until %s) stay in place and are no longer renewed; "+
				"put it back in the configuration to keep it valid (its stored version is adopted, nothing is ordered), or remove its files once nothing uses them",
				c.Current.Serial, c.Current.NotAfter.UTC().Format(time.RFC3339))
		}
		s.event(ctx, "warn", "retired", name, c.Account, msg)
		if s.opts.OnRetire != nil {
			s.opts.OnRetire(c)
		}
	}
	return nil
}

// errUnchanged ends an update that has nothing to write.
var errUnchanged = errors.New("unchanged")

// Actions a certificate can be due for.
const (
	ActionIssue   = "issue"
	ActionReissue = "reissue"
	ActionRenew   = "renew"
)

func (s *Scheduler) event(ctx context.Context, level, kind, cert, account, msg string) {
	if _, err := s.opts.Store.AppendEvent(ctx, store.Event{Level: level, Kind: kind, CertName: cert, Account: account, Message: msg}); err != nil {
		s.log.Error("recording event failed", zap.String(logkey.Cert, cert), zap.Error(err))
	}
}

// Start runs a pass now and then on the schedule, until Stop.
func (s *Scheduler) Start() {
	s.mu.Lock()
	s.jobCtx, s.stopJob = context.WithCancel(context.Background())
	c := s.cron
	s.mu.Unlock()
	c.Start()
	go s.loop()
	if s.opts.Tick > 0 {
		go func() {
			t := time.NewTicker(s.opts.Tick)
			defer t.Stop()
			for {
				select {
				case <-s.done:
					return
				case <-t.C:
					s.Kick()
				}
			}
		}()
	}
	s.Kick()
}

// Kick asks for a pass as soon as the current one (if any) ends.
func (s *Scheduler) Kick() {
	select {
	case s.kick <- struct{}{}:
	default: // a pass is already pending
	}
}

func (s *Scheduler) loop() {
	for {
		select {
		case <-s.done:
			return
		case <-s.kick:
			s.mu.Lock()
			ctx := s.jobCtx
			s.mu.Unlock()
			if err := s.Pass(ctx); err != nil {
				s.log.Error("scheduler pass failed", zap.Error(err))
			}
			s.wakeAtNextDue(ctx)
		}
	}
}

// wakeAtNextDue asks for a pass when the earliest certificate falls due,
// when that is before the next scheduled pass: an order being polled or a
// retry a minute away is not left to the cron schedule.
func (s *Scheduler) wakeAtNextDue(ctx context.Context) {
	now := s.opts.Now()
	next, err := s.opts.Store.DueCertificates(ctx, now.Add(time.Hour), 1)
	if err != nil || len(next) == 0 {
		return
	}
	d := max(next[0].NextActionAt.Sub(now), 100*time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wake != nil {
		s.wake.Stop()
	}
	s.wake = time.AfterFunc(d, s.Kick)
}

// Stop stops scheduling new work and waits for running jobs to finish
// their current step. If grace runs out first, their context is cancelled
// and Stop waits for them to return.
func (s *Scheduler) Stop(grace time.Duration) {
	s.mu.Lock()
	c, cancel := s.cron, s.stopJob
	s.mu.Unlock()
	c.Stop()
	s.mu.Lock()
	if s.wake != nil {
		s.wake.Stop()
	}
	s.mu.Unlock()
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	// The pass in progress (if any) launches no new job once done is
	// closed; wait for it and its jobs, cancelling them after grace.
	finished := make(chan struct{})
	go func() {
		s.passMu.Lock()
		s.jobs.Wait()
		s.passMu.Unlock()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(grace):
		s.log.Warn("stopping: cancelling jobs still running after the grace period", zap.Duration("grace", grace))
		if cancel != nil {
			cancel()
		}
		<-finished
	}
	if cancel != nil {
		cancel()
	}
}

// Pass works everything due now, at most Workers at a time, and returns
// when all of it is done. Only one pass runs at a time.
func (s *Scheduler) Pass(ctx context.Context) error {
	s.passMu.Lock()
	defer s.passMu.Unlock()
	select {
	case <-s.done:
		return nil
	default:
	}
	if s.opts.Housekeeping != nil {
		if err := s.opts.Housekeeping(ctx); err != nil {
			s.log.Warn("housekeeping failed; will retry at the next pass", zap.Error(err))
		}
	}
	const batch = 1000
	sem := make(chan struct{}, s.opts.Workers)
	worked, full := 0, false
	if s.opts.Fleet != nil {
		// A fleet host claims work only when it has a worker free for it:
		// what it cannot start at once stays for the other hosts, and no
		// lease ages in a queue.
		for worked < batch {
			sem <- struct{}{}
			select {
			case <-s.done:
				<-sem
				return nil
			default:
			}
			due, err := s.due(ctx, 1)
			if err != nil {
				<-sem
				s.waitWorkers(sem)
				return fmt.Errorf("scheduler: claiming due certificates: %w", err)
			}
			if len(due) == 0 {
				<-sem
				break
			}
			worked++
			s.launch(ctx, sem, due[0])
		}
		full = worked == batch
	} else {
		due, err := s.due(ctx, batch)
		if err != nil {
			return fmt.Errorf("scheduler: reading due certificates: %w", err)
		}
		for _, j := range due {
			sem <- struct{}{}
			select {
			case <-s.done: // stopping: leave the rest due for the next start
				<-sem
				return nil
			default:
			}
			s.launch(ctx, sem, j)
		}
		worked, full = len(due), len(due) == batch
	}
	claimsWorked := 0
	if s.opts.ClaimWork != nil {
		claims, err := s.opts.Store.DueClaims(ctx, s.opts.Now(), batch)
		if err != nil {
			return fmt.Errorf("scheduler: reading due claims: %w", err)
		}
		for _, c := range claims {
			jctx, end := ctx, func() {}
			if f := s.opts.Fleet; f != nil {
				l, err := f.Store.AcquireLease(ctx, store.ClaimResource(c.Account, c.Domain), f.Holder, f.TTL)
				if errors.Is(err, store.ErrLeaseHeld) {
					continue // another host works it
				}
				if err != nil {
					s.log.Warn("leasing a claim failed; it stays due", zap.String(logkey.Domain, c.Domain), zap.Error(err))
					continue
				}
				jctx, _, end = hold(ctx, f.Store, l, f.TTL, s.log.With(zap.String(logkey.Domain, c.Domain)))
			}
			claimsWorked++
			sem <- struct{}{}
			s.jobs.Add(1)
			go func(c store.Claim) {
				defer func() { <-sem; s.jobs.Done() }()
				defer end()
				defer func() {
					if r := recover(); r != nil {
						s.log.Error("claim job panicked", zap.String(logkey.Domain, c.Domain), zap.Any("panic", r))
					}
				}()
				if err := s.opts.ClaimWork(jctx, c); err != nil {
					s.log.Warn("claim job failed; retry scheduled", zap.String(logkey.Account, c.Account), zap.String(logkey.Domain, c.Domain), zap.Error(err))
				}
			}(c)
		}
	}
	worked += claimsWorked
	s.waitWorkers(sem)
	if full {
		s.Kick() // more than one batch is due: go on after this one
	}
	if s.opts.HostWork != nil {
		if err := s.opts.HostWork(ctx); err != nil {
			s.log.Warn("this host's deploys failed; retried at the next pass", zap.Error(err))
		}
	}
	if s.opts.PassDone != nil {
		select {
		case <-s.done: // stopped while it ran: not a completed pass
		default:
			s.opts.PassDone(context.WithoutCancel(ctx), worked)
		}
	}
	return nil
}

// launch works j on a worker whose slot the caller took from sem.
func (s *Scheduler) launch(ctx context.Context, sem chan struct{}, j dueJob) {
	s.jobs.Add(1)
	go func() {
		defer func() { <-sem; s.jobs.Done() }()
		jctx := ctx
		if j.lease != nil {
			// Held (and renewed) while the job waits for its account's
			// slot too.
			var end func()
			jctx, _, end = hold(ctx, s.opts.Fleet.Store, *j.lease, s.opts.Fleet.TTL, s.log.With(zap.String(logkey.Cert, j.cert.Name)))
			defer end()
		}
		release := s.accountSlot(j.cert.Account)
		defer release()
		_ = s.run(jctx, j.cert) // recorded in the store; nothing more to do here
	}()
}

// waitWorkers waits until every worker of the pass is done.
func (s *Scheduler) waitWorkers(sem chan struct{}) {
	for range cap(sem) {
		sem <- struct{}{}
	}
	for range cap(sem) {
		<-sem
	}
}

// dueJob is a certificate to work, with its lease in fleet mode.
type dueJob struct {
	cert  store.Certificate
	lease *store.Lease
}

// due reads what is due: by index on one host, claimed with leases in a
// fleet (what another host is working is skipped).
func (s *Scheduler) due(ctx context.Context, limit int) ([]dueJob, error) {
	if f := s.opts.Fleet; f != nil {
		got, err := f.Store.ClaimDueCertificates(ctx, f.Host, f.Holder, s.opts.Now(), f.TTL, limit)
		if err != nil {
			return nil, err
		}
		out := make([]dueJob, len(got))
		for i, g := range got {
			out[i] = dueJob{cert: g.Certificate, lease: &g.Lease}
		}
		return out, nil
	}
	certs, err := s.opts.Store.DueCertificates(ctx, s.opts.Now(), limit)
	if err != nil {
		return nil, err
	}
	out := make([]dueJob, len(certs))
	for i, c := range certs {
		out[i] = dueJob{cert: c}
	}
	return out, nil
}

func (s *Scheduler) needsOperatorRecheck() time.Duration {
	if s.opts.NeedsOperatorRecheck > 0 {
		return s.opts.NeedsOperatorRecheck
	}
	return 12 * time.Hour
}

// accountSlot takes one of the account's concurrency slots.
func (s *Scheduler) accountSlot(account string) func() {
	if s.opts.AccountLimit == nil {
		return func() {}
	}
	n := s.opts.AccountLimit(account)
	if n < 1 {
		n = 1
	}
	v, _ := s.accounts.LoadOrStore(account, make(chan struct{}, n))
	slots := v.(chan struct{})
	slots <- struct{}{}
	return func() { <-slots }
}

// RunNow works one certificate at once, outside any pass (certd renew
// with no daemon), recording a failure exactly as a pass would; it returns
// the job's error.
func (s *Scheduler) RunNow(ctx context.Context, c store.Certificate) error {
	return s.run(ctx, c)
}

// run works one certificate, turning a failure or a panic into a persisted
// retry: no certificate is left due-less after a failure (N8).
func (s *Scheduler) run(ctx context.Context, c store.Certificate) error {
	log := s.log.With(zap.String(logkey.Cert, c.Name), zap.String(logkey.Account, c.Account), zap.String(logkey.Action, c.NextAction))
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("job panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
				err = fmt.Errorf("internal error (panic): %v", r)
			}
		}()
		return s.opts.Work(ctx, c)
	}()
	if err == nil {
		return nil
	}
	if lost := leaseLost(ctx); lost != nil || errors.Is(err, store.ErrLeaseLost) {
		// Another host holds the certificate now: it records what
		// happens; this host's writes would be refused anyway.
		log.Warn("lease lost while working; another host carries on and nothing more is written here", zap.Error(err), zap.NamedError("lease", lost))
		return err
	}
	if ctx.Err() != nil {
		log.Info("job interrupted by shutdown; it stays due", zap.Error(err))
		return err
	}
	retryAfter := ca.RetryAfterOf(err)
	now := s.opts.Now()
	var cur store.Certificate
	var delay time.Duration
	// Read, decide and write in one transaction: the job may have saved
	// progress before failing.
	uerr := s.opts.Store.UpdateCertificate(context.WithoutCancel(ctx), c.Name, func(x *store.Certificate) error {
		x.Failures++
		s.mu.Lock()
		delay = Backoff(x.Failures, retryAfter, s.opts.Rand)
		s.mu.Unlock()
		x.State = store.StateFailing
		x.LastError = err.Error()
		if ca.IsPermanent(err) {
			// Retrying cannot help until a person acts: say so loudly,
			// and look again only slowly (a reload or `certd renew` is
			// at once).
			x.State = store.StateNeedsOperator
			delay = max(delay, s.needsOperatorRecheck())
		}
		// A retry never lands past the emergency time of the deployed
		// certificate (short lifetimes, a long backoff), unless the CA
		// itself said to wait longer.
		if x.Current != nil && x.State != store.StateNeedsOperator {
			if e := EmergencyTime(x.Current.NotBefore, x.Current.NotAfter); e.After(now) && now.Add(delay).After(e) {
				delay = max(e.Sub(now), retryAfter)
			}
		}
		x.NextActionAt = now.Add(delay)
		if retryAfter > 0 {
			x.RetryAfter = now.Add(retryAfter)
		}
		cur = *x
		return nil
	})
	if uerr != nil {
		log.Error("cannot record failure", zap.Error(uerr), zap.NamedError("failure", err))
		return err
	}
	if cur.State == store.StateNeedsOperator {
		log.Error("job failed in a way retrying cannot fix; an operator must act", zap.Error(err), zap.Int(logkey.Attempt, cur.Failures), zap.Duration(logkey.RetryIn, delay))
	} else {
		log.Warn("job failed; retry scheduled", zap.Error(err), zap.Int(logkey.Attempt, cur.Failures), zap.Duration(logkey.RetryIn, delay))
	}
	if s.opts.OnFailure != nil {
		s.opts.OnFailure(cur, err)
	}
	kind, msg := "failed", fmt.Sprintf("%s failed (attempt %d): %v; next attempt in %s", c.NextAction, cur.Failures, err, delay.Round(time.Second))
	if cur.State == store.StateNeedsOperator {
		kind, msg = "needs_operator", fmt.Sprintf("%s failed and needs an operator: %v; checked again in %s, or at once after a reload or `certd renew %s`",
			c.NextAction, err, delay.Round(time.Second), c.Name)
	}
	s.event(context.WithoutCancel(ctx), "error", kind, c.Name, c.Account, msg)
	return err
}
