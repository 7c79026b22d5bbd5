package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/certd/certd/config"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/logkey"
	"github.com/certd/certd/metrics"
	"github.com/certd/certd/notify"
	"github.com/certd/certd/providers"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// stopGrace is how long SIGTERM waits for running jobs to finish their
// current step before cancelling them; below systemd's TimeoutStopSec.
const stopGrace = 30 * time.Second

func cmdRun(args []string, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	cfgPath := fs.String("config", DefaultConfig, "configuration file")
	once := fs.Bool("once", false, "work everything due now, then exit: 0 when every certificate is valid, 1 otherwise")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	// Signals are caught from the first instant: a SIGTERM during start-up
	// is handled (cleanly) once start-up is done, not by dying mid-step.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	return runDaemon(*cfgPath, stderr, sigs, *once)
}

// runDaemon runs the daemon on the configuration at path until a SIGTERM
// or SIGINT arrives on sigs (SIGHUP reloads), or, with once, until nothing
// is due any more. It returns the exit code.
func runDaemon(path string, stderr io.Writer, sigs <-chan os.Signal, once bool) int {
	cfg, ok := loadOrReport(path, stderr)
	if !ok {
		return exitUsage
	}
	level := zap.NewAtomicLevel()
	lc := cfg.Log
	if once && isTerminal(stderr) {
		lc.Format = "console" // a person is watching: each step as it happens, with the time spent
	}
	log := newLogger(lc, level, stderr)
	defer func() { _ = log.Sync() }()

	ctx := context.Background()
	st, err := openConfiguredStore(ctx, cfg, true)
	if err != nil {
		log.Error("cannot open the store", zap.String(logkey.Store, storeName(cfg)), zap.Error(err))
		if errors.Is(err, store.ErrLocked) || errors.Is(err, store.ErrSchemaNewer) || errors.Is(err, store.ErrSealed) {
			return exitStore
		}
		return exitFailure
	}
	defer st.Close()
	log.Debug("store open", zap.String(logkey.Store, storeName(cfg)))
	fleet := fleetOf(cfg, st)
	if fleet != nil {
		log.Info("fleet mode: this host works what it holds a lease on and deploys every certificate it lists",
			zap.String("host", fleet.Host), zap.String("holder", fleet.Holder), zap.Duration("lease", fleet.TTL))
	}

	d := &daemonState{log: log, level: level, store: st, path: path}
	d.cfg.Store(cfg)
	if cfg.Metrics.Listen != "" {
		m := metrics.New(st, nil)
		m.SetBuild(buildVersion(), runtime.Version())
		if fleet != nil {
			m.SetFleet()
		}
		initMetrics(m, cfg)
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			log.Error("cannot listen for metrics", zap.String("address", cfg.Metrics.Listen), zap.Error(err))
			return exitFailure
		}
		mctx, stopMetrics := context.WithCancel(context.Background())
		defer stopMetrics()
		go func() {
			if err := m.Serve(mctx, ln); err != nil {
				log.Error("metrics endpoint stopped", zap.Error(err))
			}
		}()
		d.obs = observers{m: m}
		log.Info("metrics listening", zap.String("address", ln.Addr().String()), zap.String("paths", "/metrics /healthz"))
	}
	built, err := build(cfg, st, log, d.obs)
	if err != nil {
		log.Error("cannot set up from the configuration", zap.Error(err))
		return exitUsage
	}
	d.parts.Store(built)
	// Leftover DNS records and token files of an earlier run are removed
	// before anything new is published.
	if err := built.engine.Reconcile(ctx); err != nil {
		log.Warn("removing leftover DCV artefacts failed; will retry", zap.Error(err))
	}
	stopResponders, err := serveResponders(built.responders, log)
	if err != nil {
		log.Error("cannot start the HTTP responder", zap.Error(err))
		return exitFailure
	}
	defer stopResponders()
	senders, err := notifySenders(cfg.Notify)
	if err != nil {
		log.Error("cannot set up notifications", zap.Error(err))
		return exitUsage
	}
	nf := &notifier{log: log.Named("notify"), cfg: func() config.Notify { return d.cfg.Load().Notify },
		n: &notify.Notifier{MinInterval: cfg.Notify.MinInterval.D(), MaxPerHour: cfg.Notify.MaxPerHour}}
	nf.setSenders(senders)
	d.notifier = nf
	claims := &scheduler.Claims{Store: st, Log: log.Named("claims"), Fleet: fleet}
	// Hooks' output is redacted of the secrets of the configuration in
	// force (a reload may change them).
	deployer := &deploy.Deployer{Log: log.Named("deploy"), Redact: func() []string { return d.secrets.Load().([]string) }}
	d.secrets.Store(secretValues(cfg)())
	post := &postHooks{}
	issuing := &scheduler.Issuing{
		Store:    st,
		Plans:    func(name string) (scheduler.Plan, error) { return d.parts.Load().plan(name) },
		Claims:   claims,
		Deployer: deployer,
		Log:      log.Named("issue"),
		Host:     cfg.Fleet.Host,
		Rand:     mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64())),
		OnDeploy: func(c store.Certificate, p scheduler.Plan, err error) {
			if err == nil {
				post.add(c.Name)
			}
			d.obs.deployed(c, p, err)
			nf.deployed(c, p, err)
		},
	}
	// The files of valid certificates are checked at start and then
	// hourly (missing, altered, key mismatch, names changed).
	var lastSweep time.Time
	const sweepEvery = time.Hour
	claimWork := func(ctx context.Context, c store.Claim) error {
		err := d.parts.Load().ensureClaim(ctx, claims, c.Account, c.Domain, false)
		if err != nil && strings.HasPrefix(err.Error(), "no configured certificate") {
			// Nothing needs this claim any more: stop reasserting it.
			return st.UpdateClaim(ctx, c.Account, c.Domain, func(c *store.Claim) error {
				c.NextAction, c.NextActionAt = "", time.Time{}
				return nil
			})
		}
		return err
	}
	sched, err := scheduler.New(scheduler.Options{
		Store: st, Work: issuing.Work, ClaimWork: claimWork, Logger: log.Named("scheduler"), Schedule: cfg.Schedule,
		Workers:   cfg.Workers,
		Fleet:     fleet,
		Tick:      fleetTick(cfg),
		HostWork:  hostWork(cfg, fleet, issuing, d),
		OnFailure: func(c store.Certificate, err error) { d.obs.failure(c, err); nf.failed(c, err) },
		// The time of the last completed pass, for status and metrics.
		PassDone: func(ctx context.Context, worked int) {
			if err := st.RecordPass(ctx, store.Pass{Host: cfg.Fleet.Host, FinishedAt: time.Now(), PID: os.Getpid(), Worked: worked}); err != nil {
				log.Warn("recording the pass failed", zap.Error(err))
			}
			// defaults.post_hook: once for the whole pass.
			post.run(ctx, d.cfg.Load(), deployer, st, log.Named("deploy"))
		},
		// A certificate left the configuration (a reload, or a start with
		// a changed file): loud, since its files are no longer renewed.
		OnRetire: func(c store.Certificate) {
			fields := []zap.Field{zap.String(logkey.Cert, c.Name), zap.String(logkey.Account, c.Account), zap.Strings("domains", c.Domains)}
			if c.Current != nil {
				fields = append(fields, zap.String(logkey.Serial, c.Current.Serial), zap.Time(logkey.NotAfter, c.Current.NotAfter))
			}
			log.Warn("certificate retired: it is no longer in the configuration; its deployed files stay in place and are no longer renewed", fields...)
			nf.retired(c)
		},
		// Slots are sized at first use; a changed max_concurrent applies
		// after a restart.
		AccountLimit: func(account string) int {
			if a, ok := d.cfg.Load().Accounts[account]; ok {
				return a.Limits.MaxConcurrent
			}
			return 1
		},
		// A DCV artefact whose removal failed is retried on every pass;
		// one untouched for an hour is a leftover no proof still needs.
		Housekeeping: func(ctx context.Context) error {
			err := d.parts.Load().engine.ReconcileStale(ctx, time.Hour, time.Now())
			if time.Since(lastSweep) >= sweepEvery {
				lastSweep = time.Now()
				err = errors.Join(err, issuing.Sweep(ctx))
			}
			return err
		},
	})
	if err != nil {
		log.Error("cannot start the scheduler", zap.Error(err))
		return exitFailure
	}
	d.sched = sched

	if err := sched.Apply(ctx, certSpecs(cfg)); err != nil {
		log.Error("cannot reconcile the configuration with the store", zap.Error(err))
		return exitFailure
	}
	adoptConfigured(ctx, log, cfg, st, &deploy.Deployer{Redact: secretValues(cfg)})
	if once {
		log.Info("certd started for one run", zap.String(logkey.Version, versionString()), zap.String(logkey.Config, path),
			zap.String(logkey.Store, storeName(cfg)), zap.Int("certificates", len(cfg.Certificates)))
		code := runOnce(ctx, log, st, sched, cfg, sigs)
		nf.flush(30 * time.Second)
		return code
	}
	sched.Start()
	log.Info("certd started", zap.String(logkey.Version, versionString()), zap.String(logkey.Config, path),
		zap.String(logkey.Store, storeName(cfg)), zap.Int("certificates", len(cfg.Certificates)), zap.String("schedule", cfg.Schedule))
	sdNotify(log, daemon.SdNotifyReady, "STATUS=running")

	stopWatchdog := startWatchdog(log)
	defer stopWatchdog()

	for sig := range sigs {
		switch sig {
		case syscall.SIGHUP:
			d.reload(ctx)
		default:
			log.Info("stopping: finishing the current step of running jobs", zap.String(logkey.Signal, sig.String()))
			sdNotify(log, daemon.SdNotifyStopping)
			sched.Stop(stopGrace)
			// Certificates deployed by a pass cut short still get their
			// post hook.
			post.run(ctx, d.cfg.Load(), deployer, st, log.Named("deploy"))
			nf.flush(10 * time.Second)
			log.Info("certd stopped")
			return exitOK
		}
	}
	return exitOK
}

// runOnce works what is due until nothing is due now (an order the CA is
// still processing is left for a later run), then reports: exit 0 when
// every configured certificate is valid. For provisioning and cron.
func runOnce(ctx context.Context, log *zap.Logger, st store.Store, sched *scheduler.Scheduler, cfg *config.Config, sigs <-chan os.Signal) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for sig := range sigs {
			if sig != syscall.SIGHUP {
				log.Info("stopping", zap.String(logkey.Signal, sig.String()))
				cancel()
				return
			}
		}
	}()
	start := time.Now()
	for pass := 0; pass < 10 && ctx.Err() == nil; pass++ {
		if err := sched.Pass(ctx); err != nil {
			log.Error("pass failed", zap.Error(err))
			return exitFailure
		}
		due, err := st.DueCertificates(ctx, time.Now(), 1)
		if err != nil || len(due) == 0 {
			break
		}
	}
	bad := 0
	for _, c := range cfg.Certificates {
		sc, err := st.GetCertificate(context.WithoutCancel(ctx), c.Name)
		if err != nil || sc.State != store.StateValid {
			bad++
			log.Warn("certificate not valid after this run", zap.String(logkey.Cert, c.Name), zap.String("state", sc.State), zap.String("last_error", sc.LastError))
		}
	}
	log.Info("run finished", zap.Int("certificates", len(cfg.Certificates)), zap.Int("not_valid", bad), zap.Duration("took", time.Since(start)))
	if bad > 0 {
		return exitFailure
	}
	return exitOK
}

// daemonState is what the running daemon swaps on reload.
type daemonState struct {
	log      *zap.Logger
	level    zap.AtomicLevel
	store    store.Store
	sched    *scheduler.Scheduler
	path     string
	cfg      atomic.Pointer[config.Config] // swapped by reload, read by jobs
	parts    atomic.Pointer[parts]         // built from cfg
	obs      observers                     // metrics hooks (no-ops without metrics)
	secrets  atomic.Value                  // []string: resolved secrets of cfg, redacted from hooks' output
	notifier *notifier
}

// reload loads the configuration again; an invalid one is refused whole
// and the running configuration stays.
func (d *daemonState) reload(ctx context.Context) {
	sdNotify(d.log, daemon.SdNotifyReloading, "MONOTONIC_USEC="+strconv.FormatInt(monotonicUsec(), 10))
	defer sdNotify(d.log, daemon.SdNotifyReady, "STATUS=running")
	cfg, err := loadConfig(d.path)
	if err != nil {
		d.log.Error("reload refused: the new configuration is invalid; keeping the running one",
			zap.String(logkey.Config, d.path), zap.String("errors", err.Error()))
		_, _ = d.store.AppendEvent(ctx, store.Event{Level: "error", Kind: "reload_refused", Message: "configuration reload refused: " + err.Error()})
		return
	}
	old := d.cfg.Load()
	if cfg.Store != old.Store {
		d.log.Warn("the store setting changed; it takes effect at the next restart")
		cfg.Store = old.Store
	}
	built, err := build(cfg, d.store, d.log, d.obs)
	if err != nil {
		d.log.Error("reload refused: the new configuration cannot be set up; keeping the running one", zap.Error(err))
		_, _ = d.store.AppendEvent(ctx, store.Event{Level: "error", Kind: "reload_refused", Message: "configuration reload refused: " + err.Error()})
		return
	}
	senders, err := notifySenders(cfg.Notify)
	if err != nil {
		d.log.Error("reload refused: notifications cannot be set up; keeping the running configuration", zap.Error(err))
		return
	}
	if len(built.responders) > 0 {
		d.log.Warn("HTTP responders keep their listeners from the start; changes to them take effect at the next restart")
		built.responders = d.parts.Load().responders
	}
	if err := d.sched.SetSchedule(cfg.Schedule); err != nil {
		d.log.Error("reload refused: schedule", zap.Error(err))
		return
	}
	if lvl, err := zapcore.ParseLevel(cfg.Log.Level); err == nil {
		d.level.SetLevel(lvl)
	}
	if err := d.sched.Apply(ctx, certSpecs(cfg)); err != nil {
		d.log.Error("reload: reconciling the configuration failed; will retry at the next reload", zap.Error(err))
		return
	}
	adoptConfigured(ctx, d.log, cfg, d.store, &deploy.Deployer{Redact: secretValues(cfg)})
	d.cfg.Store(cfg)
	d.secrets.Store(secretValues(cfg)())
	d.parts.Store(built)
	d.notifier.setSenders(senders)
	if d.obs.m != nil {
		initMetrics(d.obs.m, cfg)
	}
	d.sched.Kick()
	d.log.Info("configuration reloaded", zap.String(logkey.Config, d.path), zap.Int("certificates", len(cfg.Certificates)))
	_, _ = d.store.AppendEvent(ctx, store.Event{Level: "info", Kind: "reloaded", Message: "configuration reloaded"})
}

func certSpecs(cfg *config.Config) []scheduler.CertSpec {
	specs := make([]scheduler.CertSpec, 0, len(cfg.Certificates))
	for _, c := range cfg.Certificates {
		spec := scheduler.CertSpec{Name: c.Name, Account: c.Account, Domains: c.Domains, KeyType: c.KeyType}
		specs = append(specs, spec)
		if perHostKeys(cfg, c.Account) {
			// This host's own certificate of it (per-host keys).
			spec.Name, spec.Base = scheduler.HostCertName(c.Name, cfg.Fleet.Host), c.Name
			specs = append(specs, spec)
		}
	}
	return specs
}

// perHostKeys reports whether account gives every host a key of its own.
func perHostKeys(cfg *config.Config, account string) bool {
	a, ok := cfg.Accounts[account]
	return ok && fleetMode(cfg) && a.Limits.PerHostKeys
}

// serveResponders starts the built-in HTTP responders on their addresses.
func serveResponders(rs []*providers.Responder, log *zap.Logger) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	for _, r := range rs {
		ln, err := net.Listen("tcp", r.Addr)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("responder on %s: %w", r.Addr, err)
		}
		go func() {
			if err := r.Serve(ctx, ln); err != nil {
				log.Error("HTTP responder stopped", zap.Error(err))
			}
		}()
		log.Info("HTTP responder listening", zap.String("address", r.Addr))
	}
	return cancel, nil
}

func newLogger(c config.Log, level zap.AtomicLevel, w io.Writer) *zap.Logger {
	return buildLogger(c, level, w, logTarget{terminal: isTerminal(w), journal: underJournal(w)})
}

// logTarget is where log lines go: a person's terminal (console lines
// carry the time since the command started, so each step shows what it
// took), or journald's stream (each line carries its syslog priority, so
// `journalctl -p warning` shows certd's warnings and errors).
type logTarget struct {
	terminal bool
	journal  bool
}

func buildLogger(c config.Log, level zap.AtomicLevel, w io.Writer, t logTarget) *zap.Logger {
	if lvl, err := zapcore.ParseLevel(c.Level); err == nil {
		level.SetLevel(lvl)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	// Every duration carries its unit: "took":"4.2ms", "retry_in":"10m0s".
	enc.EncodeDuration = zapcore.StringDurationEncoder
	var encoder zapcore.Encoder
	if c.Format == "console" {
		enc.EncodeLevel = zapcore.CapitalLevelEncoder
		if t.terminal {
			start := time.Now()
			enc.EncodeTime = func(at time.Time, pae zapcore.PrimitiveArrayEncoder) {
				pae.AppendString(fmt.Sprintf("%s %+8.3fs", at.Format(time.TimeOnly), at.Sub(start).Seconds()))
			}
		}
		encoder = zapcore.NewConsoleEncoder(enc)
	} else {
		encoder = zapcore.NewJSONEncoder(enc)
	}
	if t.journal {
		encoder = journalEncoder{encoder}
	}
	return zap.New(zapcore.NewCore(encoder, zapcore.Lock(zapcore.AddSync(w)), level)) // jobs log concurrently
}

// journalEncoder prefixes each line with its syslog priority as journald's
// stream protocol reads it (<3> error, <4> warning, <6> info, <7> debug).
type journalEncoder struct{ zapcore.Encoder }

func (j journalEncoder) Clone() zapcore.Encoder { return journalEncoder{j.Encoder.Clone()} }

func (j journalEncoder) EncodeEntry(e zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	line, err := j.Encoder.EncodeEntry(e, fields)
	if err != nil {
		return nil, err
	}
	out := journalBuffers.Get()
	out.AppendString(fmt.Sprintf("<%d>", journalPriority(e.Level)))
	_, _ = out.Write(line.Bytes())
	line.Free()
	return out, nil
}

var journalBuffers = buffer.NewPool()

func journalPriority(l zapcore.Level) int {
	switch {
	case l >= zapcore.DPanicLevel:
		return 2 // crit
	case l == zapcore.ErrorLevel:
		return 3
	case l == zapcore.WarnLevel:
		return 4
	case l == zapcore.InfoLevel:
		return 6
	}
	return 7
}

// underJournal reports whether w is the stream systemd connected to the
// journal ($JOURNAL_STREAM names its device and inode).
func underJournal(w io.Writer) bool {
	f, ok := w.(*os.File)
	js := os.Getenv("JOURNAL_STREAM")
	if !ok || js == "" {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return js == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// sdNotify tells systemd about a state change when it asked for that
// (NOTIFY_SOCKET set); otherwise it does nothing.
func sdNotify(log *zap.Logger, states ...string) {
	msg := ""
	for i, s := range states {
		if i > 0 {
			msg += "\n"
		}
		msg += s
	}
	if _, err := daemon.SdNotify(false, msg); err != nil {
		log.Warn("sd_notify failed", zap.Error(err))
	}
}

// startWatchdog pings systemd at half the WatchdogSec interval when the
// unit asks for it.
func startWatchdog(log *zap.Logger) (stop func()) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return func() {}
	}
	t := time.NewTicker(interval / 2)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sdNotify(log, daemon.SdNotifyWatchdog)
			}
		}
	}()
	return func() { t.Stop(); close(done) }
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1e3
}

// initMetrics exports the counters of the configured accounts and
// certificates at zero.
func initMetrics(m *metrics.Metrics, cfg *config.Config) {
	accounts := make([]string, 0, len(cfg.Accounts))
	for name := range cfg.Accounts {
		accounts = append(accounts, name)
	}
	certs := make([]string, 0, len(cfg.Certificates))
	for _, c := range cfg.Certificates {
		certs = append(certs, c.Name)
	}
	m.Init(accounts, certs, failureReasons)
}
