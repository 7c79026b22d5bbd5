package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certd/certd/internal/testenv"
)

// bootScript runs as PID 1 of new PID, mount, UTS, IPC and cgroup
// namespaces (unshare --fork): it builds the container's mounts on the
// root directory $1 (the host's /usr read-only, its own /proc, /sys, a
// cgroup2 file system of its own cgroup, /dev, /run and /tmp) and execs
// systemd there as PID 1, the way systemd-nspawn would. Nothing of it
// is seen outside the mount namespace. /proc/sys is read-only, as under
// systemd-nspawn: the container's systemd-sysctl must not change the
// host's kernel settings (bootSystemd also masks the units that would).
const bootScript = `set -e
R=$1
mount --make-rprivate /
mount --bind "$R" "$R"
mount --rbind /usr "$R/usr"
mount -o remount,bind,ro "$R/usr"
mount -t proc proc "$R/proc"
for p in sys sysrq-trigger; do [ ! -e "$R/proc/$p" ] || { mount --bind "$R/proc/$p" "$R/proc/$p"; mount -o remount,bind,ro "$R/proc/$p"; }; done
mount -t sysfs -o ro sysfs "$R/sys"
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
mount -t tmpfs -o mode=755 tmpfs "$R/dev"
for d in null zero full random urandom tty; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o mode=755 tmpfs "$R/run"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
cd "$R"
exec env -i container=certd-test PATH=/usr/sbin:/usr/bin chroot "$R" /usr/lib/systemd/systemd --log-target=journal --show-status=no
`

// unitKnownIssues: two promises the shipped certd.service does not keep
// yet under a real systemd (reported on issue 17; the unit is not this
// test's to change). While true they are logged as KNOWN; set it to
// false with the unit fix, and they fail the test.
//   - ConfigurationDirectory=certd makes /etc/certd (the configuration,
//     its hooks and file: secrets) writable under ProtectSystem=strict:
//     systemd exempts every *Directory= from it.
//   - RestartPreventExitStatus= applies to the main process only: when
//     ExecStartPre=certd check-config exits 2, the unit is restarted every
//     RestartSec= (a restart loop on an invalid configuration).
//
// Both go away without those two lines (certd run refuses an invalid
// configuration itself, exiting 2), at the same security rating.
const unitKnownIssues = false

// known reports a broken promise of the unit: an error, or a log line
// while unitKnownIssues is set.
func known(t *testing.T, format string, args ...any) {
	t.Helper()
	if unitKnownIssues {
		t.Logf("KNOWN (issue 17): "+format, args...)
		return
	}
	t.Errorf(format, args...)
}

// booted is a systemd manager running as PID 1 of its own namespaces on
// a test-owned root directory, sharing the host's network namespace (so
// that the simulators the test runs on loopback are reachable).
type booted struct {
	t    *testing.T
	root string
	pid  int // systemd, as the host sees it
}

// needProgram skips the test when program is missing, or fails it under
// CI=true (.ci/run installs it).
func needProgram(t *testing.T, program, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(program); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; .ci/run must install %s", program, pkg)
	}
	t.Skipf("%s is not installed (apt-get install %s); skipping", program, pkg)
}

// cgroup2Dir returns the host's cgroup2 directory of this process, where
// the container's cgroup is made.
func cgroup2Dir(t *testing.T) string {
	t.Helper()
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Skip(err)
	}
	mnt := ""
	for _, line := range strings.Split(string(mounts), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if f := strings.Fields(pre); ok && len(f) > 4 && strings.HasPrefix(post, "cgroup2 ") && f[3] == "/" {
			mnt = f[4]
			break
		}
	}
	self, _ := os.ReadFile("/proc/self/cgroup")
	rel := ""
	for _, line := range strings.Split(string(self), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			rel = p
		}
	}
	if mnt == "" {
		t.Skip("no cgroup2 file system mounted: systemd cannot be booted here")
	}
	return filepath.Join(mnt, rel)
}

// bootSystemd boots systemd on root, which holds the container's /etc
// and /var, and waits until it is running. The test's cleanup kills it
// (by its PID: the kernel then ends every process of its PID namespace)
// and removes its cgroup.
func bootSystemd(t *testing.T, root string) *booted {
	t.Helper()
	for _, d := range []string{"usr", "proc", "sys", "dev", "run", "tmp", "var/tmp", "var/lib", "var/log", "root", "home"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{"bin", "sbin", "lib", "lib64"} {
		if err := os.Symlink("usr/"+l, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"passwd", "group"} {
		b, err := os.ReadFile("/etc/" + f)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, "etc", f), string(b))
	}
	writeFile(t, filepath.Join(root, "etc", "machine-id"), "")
	// What a container's systemd must not do to the host it shares the
	// kernel (and here the network namespace) with.
	if err := os.MkdirAll(filepath.Join(root, "etc", "systemd", "system"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"systemd-sysctl.service", "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount",
		"systemd-modules-load.service", "kmod-static-nodes.service", "systemd-random-seed.service", "systemd-repart.service", "systemd-firstboot.service",
		"sys-kernel-config.mount", "systemd-udevd.service", "systemd-udev-trigger.service", "systemd-timesyncd.service", "systemd-networkd.service",
		"systemd-resolved.service", "systemd-pcrphase.service", "systemd-pcrphase-sysinit.service", "console-getty.service"} {
		if err := os.Symlink("/dev/null", filepath.Join(root, "etc", "systemd", "system", u)); err != nil {
			t.Fatal(err)
		}
	}
	// A host has one (certd reads it when dcv.resolvers is not set).
	writeFile(t, filepath.Join(root, "etc", "resolv.conf"), "nameserver 127.0.0.1\n")

	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	cg := filepath.Join(cgroup2Dir(t), "certd-systemd-test-"+hex.EncodeToString(suffix))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Skipf("cannot make a cgroup for systemd (%v): systemd cannot be booted here", err)
	}
	logPath := filepath.Join(t.TempDir(), "boot.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && exec unshare --pid --fork --mount --uts --ipc --cgroup --propagation private sh -c "$2" sh "$3"`,
		"sh", cg, bootScript, root)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	b := &booted{t: t, root: root}
	t.Cleanup(func() {
		if b.pid > 0 {
			if t.Failed() {
				out, _ := b.exec(30*time.Second, "journalctl", "-b", "--no-pager", "-o", "short-monotonic")
				t.Logf("the container's journal:\n%s", tail(out, 150))
			}
			_ = syscall.Kill(b.pid, syscall.SIGKILL)
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			// unshare itself, started by this test.
			_ = cmd.Process.Kill()
			<-exited
		}
		removeCgroup(t, cg)
	})
	// unshare's child, once it has exec'd systemd, is the manager.
	deadline := time.Now().Add(20 * time.Second)
	for b.pid == 0 {
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			if strings.Contains(string(log), "Operation not permitted") {
				t.Skipf("systemd cannot be booted here (%v):\n%s", cmd.ProcessState, log)
			}
			t.Fatalf("booting systemd failed (%v):\n%s", cmd.ProcessState, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("systemd did not start:\n%s", log)
		}
		children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		if f := strings.Fields(string(children)); len(f) == 1 {
			pid, _ := strconv.Atoi(f[0])
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); strings.HasSuffix(exe, "/systemd") {
				b.pid = pid
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	// "offline", or no bus, until the manager listens on its socket.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, err := b.exec(60*time.Second, "systemctl", "is-system-running", "--wait")
		state := strings.TrimSpace(out)
		if err == nil || state == "degraded" {
			break
		}
		if (state != "offline" && !strings.Contains(state, "Failed to connect to bus")) || time.Now().After(deadline) {
			t.Fatalf("systemd did not finish booting: %v %s", err, out)
		}
	}
	return b
}

// removeCgroup removes the cgroup the test made, with the ones systemd
// made under it, once their processes are gone.
func removeCgroup(t *testing.T, cg string) {
	var dirs []string
	_ = filepath.WalkDir(cg, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		for try := 0; ; try++ {
			err := syscall.Rmdir(dirs[i])
			if err == nil || err == syscall.ENOENT {
				break
			}
			if try == 100 {
				t.Errorf("removing cgroup %s: %v", dirs[i], err)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// exec runs a command inside the container (its namespaces and root), as
// an operator's shell there would.
func (b *booted) exec(timeout time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := append([]string{"-t", strconv.Itoa(b.pid), "-m", "-p", "-u", "-i", "-C", "-r", "-w", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "LANG=C.UTF-8"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (b *booted) must(argv ...string) string {
	b.t.Helper()
	out, err := b.exec(2*time.Minute, argv...)
	if err != nil {
		b.t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return out
}

// show returns a unit's property.
func (b *booted) show(unit, prop string) string {
	b.t.Helper()
	return strings.TrimSpace(b.must("systemctl", "show", "--value", "-p", prop, unit))
}

// TestSystemdUnitInRealSystemd installs certd with `make install` into a
// real systemd manager (booted as PID 1 of its own namespaces on a
// test-owned root, with dbus and an nginx unit on a loopback port),
// configures it against certd's Atlas simulator with the example's
// deploy.dir, check and reload hooks, and checks the shipped units,
// hardening and all, under systemd itself:
//   - `systemctl start certd` runs check-config and returns once certd
//     sent READY=1; certd issues and deploys into the example's
//     deploy.dir (ReadWritePaths=), its store in StateDirectory= (0700);
//   - the example's `systemd-run ... nginx -t` ran outside the sandbox
//     (a transient unit) and its output came back to certd, and
//     `systemctl reload nginx` reloaded nginx without a restart;
//   - in certd's own mount namespace the unit's writable paths (parsed
//     from the installed unit) are writable and the rest of the system
//     is not;
//   - `systemctl reload certd` keeps the process; `systemctl stop`
//     exits 0; an invalid configuration fails with 2 and no restart;
//     certd-once.service runs and succeeds;
//   - a bare `nginx -t` under the unit's sandbox fails, as the README
//     says: on its read-only logs, and with them writable but owned by
//     www-data as Debian's are, for want of CAP_DAC_OVERRIDE.
func TestSystemdUnitInRealSystemd(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("systemd is Linux only")
	}
	if os.Geteuid() != 0 {
		t.Skip("booting systemd needs root")
	}
	if testing.Short() {
		t.Skip("boots systemd")
	}
	needProgram(t, "systemd", "systemd")
	needProgram(t, "dbus-daemon", "dbus")
	needProgram(t, "unshare", "util-linux")
	needProgram(t, "nsenter", "util-linux")
	if _, err := os.Stat("/usr/lib/systemd/systemd"); err != nil {
		t.Skipf("no /usr/lib/systemd/systemd: %v", err)
	}
	nginx := testenv.Need(t, "nginx")
	start := time.Now()

	// The example's deploy hooks, as the example writes them.
	example, err := loadConfig("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var check, reload []byte
	deployDir := ""
	for _, c := range example.Certificates {
		if c.Name == "www" {
			check, _ = json.Marshal(c.Deploy.Check)
			reload, _ = json.Marshal(c.Deploy.Reload)
			deployDir = c.Deploy.Dir
		}
	}
	if check == nil {
		t.Fatal("config.example.yaml has no certificate www")
	}

	root := filepath.Join(t.TempDir(), "root")
	bin, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	// The defaults: /usr/local/bin/certd, /etc/certd, units in
	// /etc/systemd/system. /usr/local is the host's own under the
	// container's read-only /usr, so the binary goes in beside it and is
	// bind-mounted there once booted.
	makeInstall(t, string(bin), root)
	stage := filepath.Join(root, "usr", "local")
	if err := os.Rename(stage, filepath.Join(root, "opt-usr-local")); err != nil {
		t.Fatal(err)
	}

	// Atlas simulator on the host's loopback, its files in the
	// container's /etc/certd; HTTP proofs on certd's responder.
	simAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	webAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	nginxAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	simDir := filepath.Join(root, "etc", "certd", "atlas-sim")
	sim := exec.Command(binary(t), "sim", "atlas", "-listen", simAddr, "-dir", simDir, "-http", webAddr)
	simOut, err := sim.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sim.Stderr = os.Stderr
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Process.Kill(); _ = sim.Wait() })
	simLines := bufio.NewReader(simOut)
	if line, _ := simLines.ReadString('\n'); !strings.Contains(line, simAddr) {
		t.Fatalf("simulator banner: %q", line)
	}
	go func() { _, _ = io.Copy(io.Discard, simLines) }()

	cfg := fmt.Sprintf(`schedule: "@every 1h"
store: {sqlite: /var/lib/certd/certd.db}
log: {level: info, format: json}
dcv: {http_check_address: %[2]q, timeout: 30s}
accounts:
%[1]shttp:
  web: {type: responder, listen: %[2]q}
defaults:
  account: atlas-sim
  deploy:
    dir: %[5]s
    check: %[3]s
    reload: %[4]s
certificates:
  - name: www
    domains: [www.example.com]
    dcv: {method: http, target: web}
`, simKinds()["atlas"].account(simAddr, "/etc/certd/atlas-sim"), webAddr, check, reload, deployDir)
	writeFile(t, filepath.Join(root, "etc", "certd", "certd.yaml"), cfg)

	// nginx as a unit, with its default paths (/run/nginx.pid, its logs
	// in /var/log/nginx), on a loopback port.
	for _, d := range []string{"etc/nginx", "var/log/nginx", "var/lib/nginx"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "etc", "nginx", "nginx.conf"), fmt.Sprintf(`user www-data;
worker_processes 1;
events {}
http {
	server {
		listen %s;
		return 200 "certd-systemd-test\n";
	}
}
`, nginxAddr))
	unitDir := filepath.Join(root, "etc", "systemd", "system")
	writeFile(t, filepath.Join(unitDir, "nginx.service"), fmt.Sprintf(`[Unit]
Description=nginx for certd's test
[Service]
Type=forking
PIDFile=/run/nginx.pid
ExecStartPre=%[1]s -t -q -g 'daemon on; master_process on;'
ExecStart=%[1]s -g 'daemon on; master_process on;'
ExecReload=%[1]s -g 'daemon on; master_process on;' -s reload
KillMode=mixed
`, nginx))
	writeFile(t, filepath.Join(unitDir, "certd-test.target"), `[Unit]
Description=certd's test: dbus and nginx
Wants=dbus.socket dbus.service nginx.service
After=dbus.service nginx.service
`)
	if err := os.Symlink("certd-test.target", filepath.Join(unitDir, "default.target")); err != nil {
		t.Fatal(err)
	}

	// The unit's sandbox around a bare `nginx -t`: the installed unit's
	// [Service] with its Exec*, type and restart lines replaced; and the
	// same with nginx's log directory writable too.
	installedUnit, err := os.ReadFile(filepath.Join(unitDir, "certd.service"))
	if err != nil {
		t.Fatal(err)
	}
	var bare strings.Builder
	for _, line := range strings.Split(string(installedUnit), "\n") {
		k, _, _ := strings.Cut(line, "=")
		switch k {
		case "Type", "NotifyAccess", "ExecStartPre", "ExecStart", "ExecReload", "Restart", "RestartSec", "RestartPreventExitStatus", "WatchdogSec":
			continue
		}
		if strings.HasPrefix(line, "[Install]") {
			break
		}
		bare.WriteString(line + "\n")
		if line == "[Service]" {
			fmt.Fprintf(&bare, "Type=oneshot\nExecStart=%s -t\n", nginx)
		}
	}
	writeFile(t, filepath.Join(unitDir, "certd-sandbox-nginx-t.service"), bare.String())
	writeFile(t, filepath.Join(unitDir, "certd-sandbox-logs-nginx-t.service"),
		strings.Replace(bare.String(), "[Service]\n", "[Service]\nReadWritePaths=/var/log/nginx\n", 1))

	b := bootSystemd(t, root)
	boot := time.Since(start)
	b.must("mount", "--bind", "/opt-usr-local", "/usr/local")
	if got := b.show("nginx.service", "ActiveState"); got != "active" {
		t.Fatalf("nginx.service is %s", got)
	}
	nginxPID := b.show("nginx.service", "MainPID")

	// The shipped unit starts: `systemctl start` returns once certd has
	// sent READY=1.
	t0 := time.Now()
	if out, err := b.exec(2*time.Minute, "systemctl", "start", "certd.service"); err != nil {
		t.Fatalf("systemctl start certd: %v\n%s\n%s", err, out, b.must("journalctl", "-u", "certd", "--no-pager", "-o", "cat"))
	}
	ready := time.Since(t0)
	if got := b.show("certd.service", "ActiveState") + "/" + b.show("certd.service", "SubState"); got != "active/running" {
		t.Fatalf("certd.service is %s after start", got)
	}

	// It issues and deploys into the example's deploy.dir, through its
	// check and reload: certd logs "certificate deployed" once the
	// reload has run (a failed hook is logged as "hook failed").
	var certdLog string
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		certdLog = b.must("journalctl", "-u", "certd", "--no-pager", "-o", "cat")
		if strings.Contains(certdLog, `"msg":"certificate deployed"`) {
			break
		}
		if strings.Contains(certdLog, `"msg":"hook failed"`) || time.Now().After(deadline) {
			t.Fatalf("not deployed:\n%s", tail(certdLog, 40))
		}
	}
	deployed := time.Since(t0)
	live := filepath.Join(root, deployDir, "www")
	pemData, err := os.ReadFile(filepath.Join(live, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemData)
	if blk == nil {
		t.Fatalf("cert.pem: no PEM")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "www.example.com" {
		t.Errorf("deployed certificate for %v", leaf.DNSNames)
	}
	for _, f := range []string{"fullchain.pem", "privkey.pem"} {
		if _, err := os.Stat(filepath.Join(live, f)); err != nil {
			t.Error(err)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "var", "lib", "certd", "certd.db")); err != nil {
		t.Errorf("the store is not in StateDirectory=: %v", err)
	} else if di, _ := os.Stat(filepath.Join(root, "var", "lib", "certd")); di.Mode().Perm() != 0o700 || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("state: directory %v, store %v", di.Mode(), fi.Mode())
	}

	// What systemd did for the check and the reload (its log of the
	// reload may reach the journal just after certd's).
	var journal string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		journal = b.must("journalctl", "-b", "--no-pager", "-o", "cat")
		if strings.Contains(journal, "Reloaded nginx.service") || time.Now().After(deadline) {
			break
		}
	}
	if !strings.Contains(journal, "nginx -t.") || !strings.Contains(journal, "Started run-u") {
		t.Errorf("the example's check did not run nginx -t as a transient unit")
	}
	if !strings.Contains(journal, "Reloaded nginx.service") {
		t.Errorf("the example's reload did not reload nginx.service")
	}
	if got := b.show("nginx.service", "MainPID"); got != nginxPID || b.show("nginx.service", "ActiveState") != "active" {
		t.Errorf("nginx: main PID %s, was %s; reload is not a restart", got, nginxPID)
	}
	// certd's own record: the check's output came back through
	// systemd-run --pipe, and the deploy completed.
	for _, want := range []string{`"argv":` + string(check), `"argv":` + strings.TrimSuffix(strings.TrimPrefix(string(reload), "["), "]"),
		"configuration file /etc/nginx/nginx.conf test is successful", `"msg":"certificate deployed"`} {
		if !strings.Contains(certdLog, want) {
			t.Errorf("certd's log lacks %s:\n%s", want, tail(certdLog, 40))
		}
	}
	for _, bad := range []string{"rolled back", "Read-only file system", "ermission denied"} {
		if strings.Contains(certdLog, bad) {
			t.Errorf("certd's log has %q:\n%s", bad, tail(certdLog, 40))
		}
	}

	// certd's own mount namespace, as systemd made it from the unit:
	// what the unit lets certd write is writable there (ReadWritePaths=,
	// StateDirectory=), the rest of the system is not, and its
	// configuration (with the secrets it names) should not be.
	unit := parseUnit(t, filepath.Join(unitDir, "certd.service"))
	writable := []string{}
	for _, line := range unit["Service"]["ReadWritePaths"] {
		for _, p := range strings.Fields(line) {
			writable = append(writable, strings.TrimPrefix(p, "-"))
		}
	}
	for _, d := range strings.Fields(unit.one(t, "Service", "StateDirectory")) {
		writable = append(writable, "/var/lib/"+d)
	}
	confFile := strings.Fields(unit.one(t, "Service", "ExecStart"))
	confFile = confFile[len(confFile)-1:]
	readOnly := []string{"/etc", "/usr", "/var/lib", "/var/log", "/var/log/nginx", "/etc/nginx/nginx.conf", "/boot"}
	mainPID := b.show("certd.service", "MainPID")
	probe := func(path string) string {
		t.Helper()
		out, err := b.exec(time.Minute, "nsenter", "-t", mainPID, "-m", "-r", "-w", "--", "sh", "-c", `if [ ! -e "$1" ]; then echo missing; elif [ -w "$1" ]; then echo rw; else echo ro; fi`, "sh", path)
		if got := strings.TrimSpace(out); err == nil && (got == "rw" || got == "ro" || got == "missing") {
			return got
		}
		t.Fatalf("probing %s in certd's mount namespace: %v %s", path, err, out)
		return ""
	}
	for _, p := range writable {
		if got := probe(p); got != "rw" {
			t.Errorf("%s is %s for certd.service, not writable", p, got)
		}
	}
	for _, p := range readOnly {
		if got := probe(p); got == "rw" {
			t.Errorf("%s is writable for certd.service", p)
		}
	}
	if got := probe(confFile[0]); got == "rw" {
		known(t, "%s is writable for certd.service (ConfigurationDirectory=%s)", confFile[0], unit["Service"]["ConfigurationDirectory"])
	}

	// `systemctl reload certd`: SIGHUP, RELOADING=1 then READY=1; the
	// same process goes on.
	certdPID := b.show("certd.service", "MainPID")
	b.must("systemctl", "reload", "certd.service")
	if got := b.show("certd.service", "ActiveState") + "/" + b.show("certd.service", "MainPID"); got != "active/"+certdPID {
		t.Errorf("after reload certd.service is %s, was active/%s", got, certdPID)
	}

	// A clean stop: SIGTERM, exit 0.
	b.must("systemctl", "stop", "certd.service")
	if r, st := b.show("certd.service", "Result"), b.show("certd.service", "ExecMainStatus"); r != "success" || st != "0" {
		t.Errorf("certd.service stopped with result %s, status %s", r, st)
	}

	// An invalid configuration: check-config refuses it (exit 2) and the
	// unit fails without a restart scheduled.
	cfgPath := filepath.Join(root, "etc", "certd", "certd.yaml")
	writeFile(t, cfgPath, cfg+"no_such_key: 1\n")
	if out, err := b.exec(time.Minute, "systemctl", "start", "certd.service"); err == nil {
		t.Errorf("certd.service started on an invalid configuration: %s", out)
	}
	if got := b.show("certd.service", "ExecMainStatus"); got != strconv.Itoa(exitUsage) && !strings.Contains(b.show("certd.service", "ExecStartPre"), "status="+strconv.Itoa(exitUsage)) {
		t.Errorf("certd.service on an invalid configuration: exit status %s, ExecStartPre %s", got, b.show("certd.service", "ExecStartPre"))
	}
	if got := b.show("certd.service", "ActiveState") + "/" + b.show("certd.service", "SubState"); got != "failed/failed" {
		known(t, "certd.service on an invalid configuration is %s, not failed/failed: restarted every RestartSec=", got)
		b.must("systemctl", "stop", "certd.service")
	}
	writeFile(t, cfgPath, cfg)

	// The timer's one-shot unit, hardened the same way: a run that finds
	// every certificate valid exits 0.
	if out, err := b.exec(2*time.Minute, "systemctl", "start", "certd-once.service"); err != nil {
		t.Errorf("certd-once.service: %v %s\n%s", err, out, b.must("journalctl", "-u", "certd-once", "--no-pager", "-o", "cat"))
	} else if r := b.show("certd-once.service", "Result"); r != "success" {
		t.Errorf("certd-once.service: result %s", r)
	}

	// What the README says: a bare `nginx -t` under the unit's sandbox
	// fails, so every deploy would roll back. It opens its logs for
	// writing, read-only there. With them writable it needs no more
	// (it also opens /run/nginx.pid, but systemd leaves /run writable
	// under ProtectSystem=strict), unless they belong to www-data as
	// Debian's do: root without CAP_DAC_OVERRIDE (the unit's empty
	// CapabilityBoundingSet=) is then refused.
	nginxT := func(unit, want string, ok bool) {
		t.Helper()
		out, err := b.exec(time.Minute, "systemctl", "start", unit)
		log := b.must("journalctl", "-u", unit, "--no-pager", "-o", "cat", "--since", "-1min")
		switch {
		case ok && err != nil:
			t.Errorf("%s: nginx -t failed: %v %s\n%s", unit, err, out, log)
		case !ok && err == nil:
			t.Errorf("%s: nginx -t succeeded under certd's sandbox:\n%s", unit, log)
		case !ok && !strings.Contains(log, want):
			t.Errorf("%s: nginx -t did not fail with %q:\n%s", unit, want, log)
		}
	}
	nginxT("certd-sandbox-nginx-t.service", `"/var/log/nginx/access.log" failed (30: Read-only file system)`, false)
	nginxT("certd-sandbox-logs-nginx-t.service", "", true)
	b.must("sh", "-c", "chown www-data:adm /var/log/nginx/*.log && chmod 0640 /var/log/nginx/*.log")
	nginxT("certd-sandbox-logs-nginx-t.service", `"/var/log/nginx/access.log" failed (13: Permission denied)`, false)
	t.Logf("boot %v, start to READY %v, to deployed %v, total %v", boot.Round(time.Millisecond), ready.Round(time.Millisecond),
		deployed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
