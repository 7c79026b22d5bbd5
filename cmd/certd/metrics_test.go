package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
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
	cfg = strings.Replace(cfg, "dns:\n", "  le: {type: acme, directory: letsencrypt}\ndns:\n", 1)
	cfg += "  - name: acme-one\n    account: le\n    domains: [acme.example.com]\n    dcv: {method: dns, provider: knot}\n"
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
	if v, _ := value(fams, "certd_failures_total", map[string]string{"account": "le", "reason": "issuer_unavailable"}); v < 1 {
		t.Errorf("failures of the acme account: %v", v)
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
}
