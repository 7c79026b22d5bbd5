package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/store"
)

func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the exposition: %v", err)
	}
	return fams
}

// value is the sample of fam whose labels include all of want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	fam, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range fam.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetricsAfterIssuanceAndFailure(t *testing.T) {
	w := newAtlasWorld(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := strings.Replace(w.config(), "log: {level: debug, format: json}", "log: {level: debug, format: json}\nmetrics: {listen: "+addr+"}", 1)
	// A reseller account whose API refuses the credentials.
	refusing := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusUnauthorized)
		_, _ = rw.Write([]byte(`{"detail": "Invalid username/password."}`))
	}))
	defer refusing.Close()
	cfg = strings.Replace(cfg, "dns:\n", "  le: {type: reseller, url: \""+refusing.URL+"/api\", username: u, api_key: file:api-key, plan: 3f2a6b1c-1d2e-4f5a-8b9c-0d1e2f3a4b5c}\ndns:\n", 1)
	cfg += "  - name: acme-one\n    account: le\n    domains: [acme.example.com]\n    dcv: {method: dns, provider: knot}\n"
	// Notifications go to a webhook inside the test.
	var hookMu sync.Mutex
	var hooks []map[string]any
	hookSrv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		hookMu.Lock()
		hooks = append(hooks, body)
		hookMu.Unlock()
	}))
	defer hookSrv.Close()
	if err := os.WriteFile(filepath.Join(w.dir, "webhook-url"), []byte(hookSrv.URL+"/hook/SECRET-TOKEN\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = strings.Replace(cfg, "dcv:\n", "notify:\n  after_failures: 1\n  on_success: true\n  webhook: {url: file:webhook-url}\ndcv:\n", 1)
	cfgPath := filepath.Join(w.dir, "certd.yaml")
	writeFile(t, cfgPath, cfg)

	var logs syncBuffer
	cmd := exec.Command(binary(t), "run", "-config", cfgPath)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	logs.waitFor(t, "metrics listening")
	dbPath := filepath.Join(w.dir, "state", "certd.db")
	deadline := time.Now().Add(30 * time.Second)
	for !allValid(dbPath, []string{"www", "shop"}) {
		if time.Now().After(deadline) {
			t.Fatalf("not issued; log:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	logs.waitFor(t, `"cert":"acme-one"`)

	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}

	fams := scrape(t, addr)
	st, err := store.Open(context.Background(), dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	www, _ := st.GetCertificate(context.Background(), "www")
	if v, ok := value(fams, "certd_certificate_expiration_timestamp_seconds", map[string]string{"name": "www", "account": "atlas"}); !ok || int64(v) != www.Current.NotAfter.Unix() {
		t.Errorf("expiration of www: %v %v, want %d", v, ok, www.Current.NotAfter.Unix())
	}
	if v, ok := value(fams, "certd_certificate_renewal_timestamp_seconds", map[string]string{"name": "www"}); !ok || int64(v) != www.NextActionAt.Unix() {
		t.Errorf("renewal of www: %v %v, want %d", v, ok, www.NextActionAt.Unix())
	}
	for name, want := range map[string]float64{"www": 1, "shop": 1, "acme-one": 0} {
		if v, ok := value(fams, "certd_certificate_ready", map[string]string{"name": name}); !ok || v != want {
			t.Errorf("ready %s: %v %v, want %v", name, v, ok, want)
		}
	}
	claim, _ := st.GetClaim(context.Background(), "atlas", "example.com")
	if v, ok := value(fams, "certd_dcv_expiration_timestamp_seconds", map[string]string{"domain": "example.com", "account": "atlas"}); !ok || int64(v) != claim.ExpiresAt.Unix() {
		t.Errorf("claim expiry: %v %v", v, ok)
	}
	if v, _ := value(fams, "certd_renewals_total", map[string]string{"account": "atlas"}); v != 2 {
		t.Errorf("renewals: %v, want 2", v)
	}
	if v, _ := value(fams, "certd_failures_total", map[string]string{"account": "le", "reason": "ca_401"}); v < 1 {
		t.Errorf("failures of the account whose CA refuses the credentials: %v", v)
	}
	if v, _ := value(fams, "certd_ca_requests_total", map[string]string{"account": "atlas", "endpoint": "POST /certificates", "code": "201"}); v != 2 {
		t.Errorf("POST /certificates 201: %v, want 2", v)
	}
	if v, _ := value(fams, "certd_ca_request_duration_seconds", map[string]string{"endpoint": "GET /certificates/{serial}"}); v < 2 {
		t.Errorf("latency samples of GET /certificates/{serial}: %v", v)
	}
	if v, _ := value(fams, "certd_dcv_propagation_seconds", map[string]string{"provider": "knot", "kind": "dns-txt"}); v < 2 {
		t.Errorf("propagation samples: %v", v)
	}
	if v, _ := value(fams, "certd_deploys_total", map[string]string{"cert": "www", "result": "success"}); v != 1 {
		t.Errorf("deploys of www: %v", v)
	}
	time.Sleep(200 * time.Millisecond) // the quota refresh runs in the background
	fams = scrape(t, addr)
	if _, ok := value(fams, "certd_ca_quota_remaining", map[string]string{"account": "atlas"}); !ok {
		t.Error("no quota gauge after an issuance")
	}

	// certd status -json matches the store: two issued, one failing, and
	// the exit code says a certificate is failing.
	var sout, serr strings.Builder
	if code := run([]string{"status", "-config", cfgPath, "-json"}, &sout, &serr); code != exitFailure {
		t.Errorf("status with a failing certificate: exit %d, want %d", code, exitFailure)
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(sout.String()), &rep); err != nil {
		t.Fatal(err)
	}
	got := map[string]certStatus{}
	for _, c := range rep.Certificates {
		got[c.Name] = c
	}
	if g := got["www"]; g.Serial != www.Current.Serial || g.State != "valid" || g.NotAfter == nil || !g.NotAfter.Equal(www.Current.NotAfter) || g.Issuer != "globalsign-atlas" {
		t.Errorf("status of www: %+v, store %+v", g, www.Current)
	}
	acme, _ := st.GetCertificate(context.Background(), "acme-one")
	if g := got["acme-one"]; g.State != "needs-operator" || g.Failures != acme.Failures || g.LastError != acme.LastError || !strings.Contains(g.LastError, "refused") || rep.Unhealthy != 1 {
		t.Errorf("status of acme-one: %+v (unhealthy %d), store %+v", g, rep.Unhealthy, acme)
	}

	// Notifications: a failure for the certificate that cannot be issued,
	// a success for each renewal, and no secret in any of them.
	deadline = time.Now().Add(10 * time.Second)
	for {
		hookMu.Lock()
		n := len(hooks)
		hookMu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	hookMu.Lock()
	defer hookMu.Unlock()
	kinds := map[string]string{}
	for _, h := range hooks {
		kinds[fmt.Sprint(h["certificate"])] = fmt.Sprint(h["kind"])
		raw, _ := json.Marshal(h)
		for _, secret := range []string{"e2e-secret", w.knot.Secret, "SECRET-TOKEN", "PRIVATE KEY"} {
			if strings.Contains(string(raw), secret) {
				t.Errorf("a notification carries a secret: %s", raw)
			}
		}
	}
	if kinds["acme-one"] != "failure" || kinds["www"] != "success" || kinds["shop"] != "success" {
		t.Errorf("notifications: %v (all: %v)", kinds, hooks)
	}
	if subj := fmt.Sprint(hooks[0]["subject"]) + fmt.Sprint(hooks[1]["subject"]) + fmt.Sprint(hooks[2]["subject"]); !strings.Contains(subj, "needs an operator (ca_401)") {
		t.Errorf("the failure's reason is not named: %s", subj)
	}
}
