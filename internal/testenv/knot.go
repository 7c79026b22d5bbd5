// Package testenv starts the real servers certd's tests run against
// (Knot DNS, nginx) on loopback ports, as child processes stopped by PID
// when the test ends. Outside CI a missing server skips the test; with
// CI=true it fails it, so CI cannot pass by testing nothing.
package testenv

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Need skips (or, under CI, fails) the test when program is missing.
func Need(t testing.TB, program string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err == nil {
		return path
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		if p := filepath.Join(dir, program); fileExists(p) {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; .ci/run must install it", program)
	}
	t.Skipf("%s is not installed (apt-get install knot nginx-light pebble); skipping", program)
	return ""
}

// startLogged starts cmd in its own process group with its output in
// logPath. exited is closed when it ends; stop sends SIGTERM, then kills
// the group after 5s.
func startLogged(t testing.TB, cmd *exec.Cmd, logPath string) (exited <-chan struct{}, stop func()) {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return done, func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// FreePort returns a loopback TCP port that was free a moment ago (and
// its UDP twin too, for DNS).
func FreePort(t testing.TB) int {
	t.Helper()
	// Ports below the kernel's ephemeral range (32768 and up by default):
	// a port the kernel handed out as "free" may be taken again at once as
	// the source port of some outgoing connection, before the server the
	// test starts binds it.
	for range 200 {
		port := 20000 + mrand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// Knot is a running knotd.
type Knot struct {
	Addr    string // 127.0.0.1:port
	KeyName string // TSIG key name
	KeyAlg  string
	Secret  string // base64
	dir     string
}

// StartKnot runs knotd serving zones (zone name -> zone file body, with
// $ORIGIN set by the harness) that accept TSIG-signed RFC 2136 updates. A
// port taken between choosing it and binding it (parallel test packages)
// is retried on another.
func StartKnot(t testing.TB, zones map[string]string) *Knot {
	t.Helper()
	bin := Need(t, "knotd")
	var last string
	for range 3 {
		k, errLog := startKnotOnce(t, bin, zones, FreePort(t))
		if k != nil {
			return k
		}
		last = errLog
	}
	t.Fatalf("knotd did not start:\n%s", last)
	return nil
}

// StartKnotAt runs knotd on 127.0.0.1:port (53 for clients that query
// name servers on the standard port, such as lego's propagation check).
func StartKnotAt(t testing.TB, port int, zones map[string]string) *Knot {
	t.Helper()
	k, errLog := startKnotOnce(t, Need(t, "knotd"), zones, port)
	if k == nil {
		t.Fatalf("knotd did not start on port %d:\n%s", port, errLog)
	}
	return k
}

func startKnotOnce(t testing.TB, bin string, zones map[string]string, port int) (*Knot, string) {
	t.Helper()
	dir := t.TempDir()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	k := &Knot{KeyName: "certd-test", KeyAlg: "hmac-sha256", Secret: base64.StdEncoding.EncodeToString(secret), dir: dir}
	// knotd refuses updates ("not exists") if its database folder is missing.
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	k.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	var zcfg strings.Builder
	for name, body := range zones {
		file := filepath.Join(dir, name+".zone")
		if err := os.WriteFile(file, []byte("$ORIGIN "+name+".\n$TTL 60\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&zcfg, "  - domain: %s\n    file: %s\n    acl: update\n", name, file)
	}
	conf := fmt.Sprintf(`server:
    rundir: %[1]s
    listen: 127.0.0.1@%[2]d
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: %[1]s/db
key:
  - id: %[3]s
    algorithm: %[4]s
    secret: %[5]s
acl:
  - id: update
    key: %[3]s
    action: [update, transfer]
template:
  - id: default
    zonefile-sync: -1
    journal-content: changes
log:
  - target: stderr
    any: warning
zone:
%[6]s`, dir, port, k.KeyName, k.KeyAlg, k.Secret, zcfg.String())
	confPath := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	exited, stop := startLogged(t, exec.Command(bin, "-c", confPath), filepath.Join(dir, "knotd.log"))
	// Ready when every zone answers its SOA; gone if knotd exits.
	deadline := time.Now().Add(10 * time.Second)
	for name := range zones {
		for {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(name), dns.TypeSOA)
			r, err := dns.Exchange(m, k.Addr)
			if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
				break
			}
			select {
			case <-exited:
				stop()
				b, _ := os.ReadFile(filepath.Join(dir, "knotd.log"))
				return nil, string(b)
			default:
			}
			if time.Now().After(deadline) {
				stop()
				b, _ := os.ReadFile(filepath.Join(dir, "knotd.log"))
				return nil, fmt.Sprintf("not serving %s: %v\n%s", name, err, b)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Cleanup(stop)
	return k, ""
}

// Zone is a minimal zone body: SOA, NS and the extra lines given.
func Zone(name string, extra ...string) string {
	return fmt.Sprintf("@ SOA ns1.%[1]s. hostmaster.%[1]s. 1 3600 600 86400 60\n@ NS ns1.%[1]s.\nns1 A 127.0.0.1\n%[2]s\n", name, strings.Join(extra, "\n"))
}

// TXT returns the TXT values at name as the server answers them.
func (k *Knot) TXT(t testing.TB, name string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	r, err := dns.Exchange(m, k.Addr)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	return out
}

// AddTXT adds a TXT record by a signed update, as another tool would.
func (k *Knot) AddTXT(t testing.TB, zone, name, value string) {
	t.Helper()
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(zone))
	rr, err := dns.NewRR(fmt.Sprintf("%s 60 IN TXT %q", dns.Fqdn(name), value))
	if err != nil {
		t.Fatal(err)
	}
	m.Insert([]dns.RR{rr})
	m.SetTsig(dns.Fqdn(k.KeyName), dns.HmacSHA256, 300, time.Now().Unix())
	c := &dns.Client{TsigSecret: map[string]string{dns.Fqdn(k.KeyName): k.Secret}}
	r, _, err := c.Exchange(m, k.Addr)
	if err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("update %s: %v %v", name, err, r)
	}
}
