// Package metrics is certd's Prometheus exposition and its liveness
// endpoint. Certificate and claim state is read from the store at scrape
// time, so the gauges are never out of step with what status shows;
// counters and histograms are fed by hooks that cmd/certd wires into the
// CA clients, the DCV engine and the scheduler. Only cmd/certd imports it.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/certd/certd/store"
)

// Source is the state the gauges are read from.
type Source interface {
	ListCertificates(ctx context.Context) ([]store.Certificate, error)
	ListClaims(ctx context.Context) ([]store.Claim, error)
	// LastPass is the scheduler's last completed pass (store.ErrNotFound
	// when none was).
	LastPass(ctx context.Context) (store.Pass, error)
}

// Metrics holds certd's collectors.
type Metrics struct {
	reg *prometheus.Registry

	Renewals   *prometheus.CounterVec   // account
	Failures   *prometheus.CounterVec   // account, reason
	CARequests *prometheus.CounterVec   // account, endpoint, code
	CALatency  *prometheus.HistogramVec // account, endpoint
	DCVVisible *prometheus.HistogramVec // provider, kind
	Deploys    *prometheus.CounterVec   // cert, result
	LiveChecks *prometheus.CounterVec   // cert, result
	Quota      *prometheus.GaugeVec     // account
	BuildInfo  *prometheus.GaugeVec     // version, goversion

	state *stateCollector
}

// SetFleet turns on the per-host gauges of fleet mode. Call it before
// Serve.
func (m *Metrics) SetFleet() { m.state.fleet = true }

// New registers every collector on a fresh registry.
func New(src Source, now func() time.Time) *Metrics {
	if now == nil {
		now = time.Now
	}
	m := &Metrics{reg: prometheus.NewRegistry(), state: &stateCollector{src: src, now: now}}
	m.Renewals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certd_renewals_total",
		Help: "Certificates issued and deployed."}, []string{"account"})
	m.Failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certd_failures_total",
		Help: "Failed attempts, by account and reason."}, []string{"account", "reason"})
	m.CARequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certd_ca_requests_total",
		Help: "Requests to CA APIs, by account, endpoint and HTTP status (0: no answer)."}, []string{"account", "endpoint", "code"})
	m.CALatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "certd_ca_request_duration_seconds",
		Help: "Latency of CA API requests.", Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10)}, []string{"account", "endpoint"})
	m.DCVVisible = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "certd_dcv_propagation_seconds",
		Help:    "Time from publishing a challenge to it being visible everywhere the CA looks.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2.5, 10)}, []string{"provider", "kind"})
	m.Deploys = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certd_deploys_total",
		Help: "Deploys, by certificate and result (success, failure)."}, []string{"cert", "result"})
	m.LiveChecks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certd_live_verifications_total",
		Help: "Live TLS verifications after a reload, by certificate and result."}, []string{"cert", "result"})
	m.Quota = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "certd_ca_quota_remaining",
		Help: "Issuances left on the account (Atlas /quotas/issuance)."}, []string{"account"})
	m.BuildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "certd_build_info",
		Help: "Always 1; the labels say which certd runs."}, []string{"version", "goversion"})
	m.reg.MustRegister(m.Renewals, m.Failures, m.CARequests, m.CALatency, m.DCVVisible, m.Deploys, m.LiveChecks, m.Quota, m.BuildInfo,
		m.state,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetBuild sets certd_build_info.
func (m *Metrics) SetBuild(version, goVersion string) {
	m.BuildInfo.Reset()
	m.BuildInfo.WithLabelValues(version, goVersion).Set(1)
}

// Init exports the counters of every configured account and certificate
// at zero before anything happened, so that rate() and absent() alerts
// work from the start: renewals per account, failures per account for
// each of reasons, deploys and live verifications per certificate. It may
// be called again after a reload; counts already made stay.
func (m *Metrics) Init(accounts, certs, reasons []string) {
	for _, a := range accounts {
		m.Renewals.WithLabelValues(a)
		for _, r := range reasons {
			m.Failures.WithLabelValues(a, r)
		}
	}
	for _, c := range certs {
		for _, result := range []string{"success", "failure"} {
			m.Deploys.WithLabelValues(c, result)
			m.LiveChecks.WithLabelValues(c, result)
		}
	}
}

// Handler serves /metrics and /healthz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// Serve serves the handler on ln until ctx is done.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

var (
	descExpiry = prometheus.NewDesc("certd_certificate_expiration_timestamp_seconds",
		"NotAfter of the deployed certificate.", []string{"name", "account"}, nil)
	descRenewal = prometheus.NewDesc("certd_certificate_renewal_timestamp_seconds",
		"When the certificate is next due (renewal, retry or poll).", []string{"name", "account"}, nil)
	descReady = prometheus.NewDesc("certd_certificate_ready",
		"1 when a valid certificate is deployed and not expired, else 0.", []string{"name", "account"}, nil)
	descFailing = prometheus.NewDesc("certd_certificate_consecutive_failures",
		"Failed attempts since the last success.", []string{"name", "account"}, nil)
	descClaim = prometheus.NewDesc("certd_dcv_expiration_timestamp_seconds",
		"When the account's verified claim on the domain lapses.", []string{"domain", "account"}, nil)
	descScrapeErr = prometheus.NewDesc("certd_state_scrape_errors",
		"1 when the store could not be read for this scrape.", nil, nil)
	descLastPass = prometheus.NewDesc("certd_last_pass_timestamp_seconds",
		"When the scheduler last completed a pass over what was due (0: never).", nil, nil)
	descStoreUp = prometheus.NewDesc("certd_store_up",
		"1 when the store (SQLite, or a fleet's PostgreSQL) answered this scrape, else 0: with 0, nothing is renewed or deployed anew.", nil, nil)
	descHostPass = prometheus.NewDesc("certd_fleet_host_last_pass_timestamp_seconds",
		"When each host of a fleet last completed a pass (fleet mode).", []string{"host"}, nil)
)

// hostPasses is what a fleet's store adds to Source: each host's last pass.
type hostPasses interface {
	ListPasses(ctx context.Context) ([]store.Pass, error)
}

// stateCollector reads certificate and claim state from the store.
type stateCollector struct {
	src   Source
	now   func() time.Time
	fleet bool
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descExpiry, descRenewal, descReady, descFailing, descClaim, descScrapeErr, descLastPass, descStoreUp, descHostPass} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	failed := 0.0
	certs, err := c.src.ListCertificates(ctx)
	if err != nil {
		failed = 1
	}
	now := c.now()
	for _, ct := range certs {
		if ct.State == store.StateRetired {
			continue
		}
		ready := 0.0
		if ct.Current != nil {
			ch <- prometheus.MustNewConstMetric(descExpiry, prometheus.GaugeValue, float64(ct.Current.NotAfter.Unix()), ct.Name, ct.Account)
			if ct.State == store.StateValid && now.Before(ct.Current.NotAfter) {
				ready = 1
			}
		}
		if !ct.NextActionAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(descRenewal, prometheus.GaugeValue, float64(ct.NextActionAt.Unix()), ct.Name, ct.Account)
		}
		ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready, ct.Name, ct.Account)
		ch <- prometheus.MustNewConstMetric(descFailing, prometheus.GaugeValue, float64(ct.Failures), ct.Name, ct.Account)
	}
	claims, err := c.src.ListClaims(ctx)
	if err != nil {
		failed = 1
	}
	for _, cl := range claims {
		if cl.Status == "VERIFIED" && !cl.ExpiresAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(descClaim, prometheus.GaugeValue, float64(cl.ExpiresAt.Unix()), cl.Domain, cl.Account)
		}
	}
	last := 0.0
	switch p, err := c.src.LastPass(ctx); {
	case err == nil:
		last = float64(p.FinishedAt.UnixMilli()) / 1000
	case !errors.Is(err, store.ErrNotFound):
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(descLastPass, prometheus.GaugeValue, last)
	if hp, ok := c.src.(hostPasses); ok && c.fleet {
		passes, err := hp.ListPasses(ctx)
		if err != nil {
			failed = 1
		}
		for _, p := range passes {
			ch <- prometheus.MustNewConstMetric(descHostPass, prometheus.GaugeValue, float64(p.FinishedAt.UnixMilli())/1000, p.Host)
		}
	}
	ch <- prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, failed)
	ch <- prometheus.MustNewConstMetric(descStoreUp, prometheus.GaugeValue, 1-failed)
}
