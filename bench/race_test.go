// Package bench races certd against the ACME clients operators compare
// it with (lego and certbot, from Debian's packages) on one Pebble and one
// DNS-01 path (Knot over RFC 2136), and prints wall time, CPU time and
// peak RSS per tool and number of certificates. Run it with bench/race.sh
// (make race); `go test ./...` skips it.
package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/certd/certd/internal/testenv"
)

// raceEnv is Pebble at full speed, as the figures were measured:
// no validation sleeps, no nonce rejection, no authorization reuse.
var raceEnv = []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"}

type result struct {
	tool   string
	n      int
	wall   time.Duration
	cpu    time.Duration
	rssKiB int64
	note   string
}

func TestRace(t *testing.T) {
	if os.Getenv("CERTD_RACE") == "" {
		t.Skip("the race against lego and certbot runs with bench/race.sh (make race)")
	}
	ns := []int{1, 10, 50}
	if v := os.Getenv("CERTD_RACE_N"); v != "" {
		ns = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				t.Fatalf("CERTD_RACE_N: %q", v)
			}
			ns = append(ns, n)
		}
	}
	tools := []string{"certd", "lego", "certbot"}
	if v := os.Getenv("CERTD_RACE_TOOLS"); v != "" {
		tools = strings.Split(v, ",")
	}
	certd := filepath.Join(t.TempDir(), "certd")
	if out, err := exec.Command("go", "build", "-o", certd, "../cmd/certd").CombinedOutput(); err != nil {
		t.Fatalf("building certd: %v\n%s", err, out)
	}
	knot := testenv.StartKnot(t, map[string]string{"example.com": testenv.Zone("example.com")})
	var results []result
	for _, n := range ns {
		for _, tool := range tools {
			// A fresh Pebble per run: it stalls past about 50 clients.
			pebble := testenv.StartPebble(t, testenv.PebbleOptions{DNSServer: knot.Addr, Env: raceEnv})
			dir := t.TempDir()
			var r result
			switch tool {
			case "certd":
				r = runCertd(t, certd, pebble, knot, dir, n)
			case "lego":
				r = runLego(t, pebble, knot, dir, n)
			case "certbot":
				r = runCertbot(t, pebble, knot, dir, n)
			default:
				t.Fatalf("unknown tool %q", tool)
			}
			r.tool, r.n = tool, n
			results = append(results, r)
			t.Logf("%s n=%d: wall %s cpu %s rss %d KiB %s", tool, n, r.wall.Round(time.Millisecond), r.cpu.Round(time.Millisecond), r.rssKiB, r.note)
		}
	}
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\tcertificates\twall\tCPU\tpeak RSS (MiB)\t\tnote")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%.3fs\t%.3fs\t%.1f\t\t%s\n", r.tool, r.n, r.wall.Seconds(), r.cpu.Seconds(), float64(r.rssKiB)/1024, r.note)
	}
	tw.Flush()
	fmt.Print("\n" + b.String())
	if out := os.Getenv("CERTD_RACE_OUT"); out != "" {
		_ = os.WriteFile(out, b.Bytes(), 0o644)
	}
}

func logLevel() string {
	if os.Getenv("CERTD_RACE_LOG") != "" {
		return "debug"
	}
	return "warn"
}

func domain(i int) string { return fmt.Sprintf("d%d.example.com", i) }

func runCertd(t *testing.T, bin string, p *testenv.Pebble, k *testenv.Knot, dir string, n int) result {
	roots := p.RootsFile(t)
	if err := os.WriteFile(filepath.Join(dir, "tsig"), []byte(k.Secret), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `schedule: "@every 1h"
workers: %[1]d
store: {sqlite: %[2]s/state/certd.db}
log: {level: %[8]s, format: json}
dcv: {resolvers: [%[3]q], check_servers: {knot: [%[3]q]}, timeout: 60s}
accounts:
  pebble: {type: acme, directory: %[4]s, ca: %[5]s, roots: %[6]s, max_concurrent: %[1]d}
dns:
  knot: {type: rfc2136, server: %[3]q, key_name: %[7]s, key: "file:%[2]s/tsig"}
defaults:
  account: pebble
  deploy: {dir: %[2]s/live}
certificates:
`, n, dir, k.Addr, p.Directory, p.TLSCA, roots, k.KeyName, logLevel())
	for i := range n {
		fmt.Fprintf(&cfg, "  - {name: c%d, domains: [%s], dcv: {method: dns, provider: knot}}\n", i, domain(i))
	}
	cfgPath := filepath.Join(dir, "certd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-once", "-config", cfgPath)
	r, outs := measure(t, []*exec.Cmd{cmd})
	if r.note != "" {
		t.Fatalf("certd failed: %s\n%s", r.note, outs[0])
	}
	if os.Getenv("CERTD_RACE_LOG") != "" {
		t.Log(outs[0])
	}
	return r
}

// runLego runs one lego per certificate. Its propagation check is off:
// it looks name servers up with the system resolver and asks them on port
// 53, which a loopback Knot cannot be for it here; so lego does less DNS
// work than certd in this race.
func runLego(t *testing.T, p *testenv.Pebble, k *testenv.Knot, dir string, n int) result {
	env := append(os.Environ(), "LEGO_CA_CERTIFICATES="+p.TLSCA, "RFC2136_NAMESERVER="+k.Addr,
		"RFC2136_TSIG_KEY="+k.KeyName, "RFC2136_TSIG_SECRET="+k.Secret, "RFC2136_TSIG_ALGORITHM="+k.KeyAlg+".")
	var cmds []*exec.Cmd
	for i := range n {
		args := []string{"--server", p.Directory, "--accept-tos", "--email", "bench@example.com", "--path", filepath.Join(dir, strconv.Itoa(i)),
			"--dns", "rfc2136", "--dns.resolvers", k.Addr, "--dns.disable-cp", "--domains", domain(i)}
		cmd := exec.Command("lego", append(args, "run")...)
		cmd.Env = env
		cmds = append(cmds, cmd)
	}
	r, outs := measure(t, cmds)
	if r.note != "" {
		t.Fatalf("lego: %s\n%s", r.note, outs[0])
	}
	r.note = "(no propagation check)"
	return r
}

func runCertbot(t *testing.T, p *testenv.Pebble, k *testenv.Knot, dir string, n int) result {
	host, port, _ := net.SplitHostPort(k.Addr)
	creds := filepath.Join(dir, "rfc2136.ini")
	ini := fmt.Sprintf("dns_rfc2136_server = %s\ndns_rfc2136_port = %s\ndns_rfc2136_name = %s\ndns_rfc2136_secret = %s\ndns_rfc2136_algorithm = %s\n",
		host, port, k.KeyName, k.Secret, strings.ToUpper(k.KeyAlg))
	if err := os.WriteFile(creds, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	for i := range n {
		d := filepath.Join(dir, strconv.Itoa(i))
		cmd := exec.Command("certbot", "certonly", "--non-interactive", "--agree-tos", "--email", "bench@example.com",
			"--server", p.Directory, "--config-dir", d+"/config", "--work-dir", d+"/work", "--logs-dir", d+"/logs",
			"--dns-rfc2136", "--dns-rfc2136-credentials", creds, "--dns-rfc2136-propagation-seconds", "0", "-d", domain(i))
		cmd.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+p.TLSCA)
		cmds = append(cmds, cmd)
	}
	r, outs := measure(t, cmds)
	if r.note != "" {
		t.Fatalf("certbot: %s\n%s", r.note, outs[0])
	}
	return r
}

// measure starts every command at once and waits for all of them: wall
// time from the first start to the last exit, CPU time summed over the
// processes, and peak RSS as the highest sum of the live processes'
// resident sets, sampled every 5 ms (never below one process's own peak).
func measure(t *testing.T, cmds []*exec.Cmd) (result, []string) {
	t.Helper()
	outs := make([]bytes.Buffer, len(cmds))
	start := time.Now()
	for i, c := range cmds {
		c.Stdout, c.Stderr = &outs[i], &outs[i]
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	var peak int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var sum int64
			for _, c := range cmds {
				sum += rssKiB(c.Process.Pid)
			}
			peak = max(peak, sum)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	var r result
	failed := 0
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			failed++
		}
	}
	r.wall = time.Since(start)
	close(done)
	wg.Wait()
	for _, c := range cmds {
		r.cpu += c.ProcessState.UserTime() + c.ProcessState.SystemTime()
		if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
			peak = max(peak, ru.Maxrss)
		}
	}
	r.rssKiB = peak
	if failed > 0 {
		r.note = fmt.Sprintf("%d of %d failed", failed, len(cmds))
	}
	texts := make([]string, len(outs))
	for i := range outs {
		texts[i] = outs[i].String()
	}
	return r, texts
}

// rssKiB is a live process's resident set (0 once it has exited).
func rssKiB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
