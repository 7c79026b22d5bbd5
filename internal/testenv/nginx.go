package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Nginx is a running nginx master with its own prefix.
type Nginx struct {
	Dir  string // prefix: config, pid, logs, temp
	Conf string // the config file; rewrite it and call Reload
	bin  string
	cmd  *exec.Cmd
}

// StartNginx runs nginx in the foreground with the http{} block body
// given (server blocks). Workers run as root when the test does, so they
// can read test directories.
func StartNginx(t testing.TB, servers string) *Nginx {
	t.Helper()
	bin := Need(t, "nginx")
	n := &Nginx{Dir: t.TempDir(), bin: bin}
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n.Conf = filepath.Join(n.Dir, "nginx.conf")
	n.Write(t, servers)
	n.cmd = exec.Command(bin, "-p", n.Dir, "-c", n.Conf)
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGQUIT)
		done := make(chan struct{})
		go func() { _ = n.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return n
}

// Write replaces the config.
func (n *Nginx) Write(t testing.TB, servers string) {
	t.Helper()
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
%[2]s
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 128; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    default_type text/plain;
%[3]s
}
`, n.Dir, user, servers)
	if err := os.WriteFile(n.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// WaitListening waits until addr accepts connections.
func WaitListening(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not listening: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Bin is the nginx executable (for check and reload hooks).
func (n *Nginx) Bin() string { return n.bin }
