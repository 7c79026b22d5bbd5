package testenv

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// KnotSpec is one knotd of StartKnotsSharingPort: the loopback address it
// listens on (127.0.0.2, 127.0.0.3, ...; Linux answers on all of
// 127.0.0.0/8) and its zones, as for StartKnot.
type KnotSpec struct {
	IP    string
	Zones map[string]string
}

// StartKnotsSharingPort runs one knotd per spec, each on its own loopback
// address and all on one port, the way the name servers of a zone all
// listen on port 53: a client that finds them through NS and glue records
// learns their addresses from DNS and is told the port once. It returns
// the servers in the order of specs, and the port. A port taken between
// choosing it and binding it is retried on another.
func StartKnotsSharingPort(t testing.TB, specs []KnotSpec) ([]*Knot, int) {
	t.Helper()
	bin := Need(t, "knotd")
	ips := make([]string, len(specs))
	for i, s := range specs {
		ips[i] = s.IP
	}
	var last string
	for range 3 {
		port := freePortOn(t, ips)
		var knots []*Knot
		var stops []func()
		for _, s := range specs {
			k, stop, errLog := startKnotOn(t, bin, s.IP, port, s.Zones)
			if k == nil {
				last = errLog
				break
			}
			knots, stops = append(knots, k), append(stops, stop)
		}
		if len(knots) == len(specs) {
			for _, stop := range stops {
				t.Cleanup(stop)
			}
			return knots, port
		}
		for _, stop := range stops {
			stop()
		}
	}
	t.Fatalf("knotd did not start on %s sharing a port:\n%s", strings.Join(ips, ", "), last)
	return nil, 0
}

// freePortOn is a port that was free a moment ago for TCP and UDP on
// every one of ips.
func freePortOn(t testing.TB, ips []string) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatalf("listening on %s: %v", ips[0], err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		held := []interface{ Close() error }{l}
		free := true
		for i, ip := range ips {
			addr := net.JoinHostPort(ip, fmt.Sprint(port))
			if i > 0 {
				tl, err := net.Listen("tcp", addr)
				if err != nil {
					free = false
					break
				}
				held = append(held, tl)
			}
			u, err := net.ListenPacket("udp", addr)
			if err != nil {
				free = false
				break
			}
			held = append(held, u)
		}
		for _, h := range held {
			h.Close()
		}
		if free {
			return port
		}
	}
	t.Fatal("no port free on every address")
	return 0
}

// startKnotOn starts knotd on ip:port serving zones, as startKnotOnce
// does on 127.0.0.1, and returns it with its stop function (not yet
// registered with t), or nil and knotd's log.
func startKnotOn(t testing.TB, bin, ip string, port int, zones map[string]string) (*Knot, func(), string) {
	t.Helper()
	dir := t.TempDir()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	k := &Knot{KeyName: "certd-test", KeyAlg: "hmac-sha256", Secret: base64.StdEncoding.EncodeToString(secret), dir: dir}
	// knotd refuses updates ("not exists") if its database folder is missing.
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	k.Addr = net.JoinHostPort(ip, fmt.Sprint(port))
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
    listen: %[7]s@%[2]d
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
%[6]s`, dir, port, k.KeyName, k.KeyAlg, k.Secret, zcfg.String(), ip)
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
				return nil, nil, string(b)
			default:
			}
			if time.Now().After(deadline) {
				stop()
				b, _ := os.ReadFile(filepath.Join(dir, "knotd.log"))
				return nil, nil, fmt.Sprintf("not serving %s: %v\n%s", name, err, b)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return k, stop, ""
}
