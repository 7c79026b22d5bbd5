package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is one PostgreSQL cluster the test started.
type Server struct {
	bin      string // directory of initdb and postgres
	root     string // the directory the test owns; data and socket under it
	data     string
	sock     string
	port     int
	password string
	cred     *syscall.Credential // nil: run as ourselves
	// syncCommit: a commit returns once its WAL is written out of the
	// server's memory (synchronous_commit=on), so a SIGKILL keeps what
	// was acknowledged, as on a real server. fsync stays off either way:
	// a killed process leaves the OS's page cache, only a machine crash
	// would need fsync.
	syncCommit bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  *os.File

	dbs atomic.Int64
}

// dirPrefix names the directories of servers started by tests, with the
// pid of the test binary that owns one after it.
const dirPrefix = "certd-pgtest-"

// findBin returns the directory holding initdb and postgres: the newest
// /usr/lib/postgresql/*/bin, else the one on PATH.
func findBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "postgres")) && isExec(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		d := filepath.Dir(p)
		if isExec(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL's postgres and initdb are not installed (Debian: apt-get install postgresql)")
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// unavailable skips the test, or fails it under CI=true.
func unavailable(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("pgtest: %s", why)
	}
	tb.Skipf("pgtest: %s", why)
}

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared returns the test binary's shared server, starting it on first
// use. Tests must not Stop, Start or Kill it.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.once.Do(func() {
		sweep()
		shared.srv, shared.err = start(false)
	})
	if shared.err != nil {
		if errors.Is(shared.err, errUnavailable) {
			unavailable(tb, shared.err.Error())
		}
		tb.Fatalf("pgtest: %v", shared.err)
	}
	return shared.srv
}

// StopShared stops the shared server, if one was started, and removes its
// directory; a TestMain may call it after m.Run.
func StopShared() {
	if shared.srv != nil {
		shared.srv.Stop()
		shared.srv.remove()
	}
}

// New starts a server of the test's own, stopped and removed when the
// test ends. Unlike the shared server's, its commits are synchronous, so
// a test that kills it (Kill) finds every acknowledged commit after Start.
func New(tb testing.TB) *Server {
	tb.Helper()
	s, err := start(true)
	if err != nil {
		if errors.Is(err, errUnavailable) {
			unavailable(tb, err.Error())
		}
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		s.Stop()
		s.remove()
	})
	return s
}

var errUnavailable = errors.New("PostgreSQL is not available")

func start(syncCommit bool) (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	s := &Server{bin: bin, password: randomHex(16), syncCommit: syncCommit}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("%w: running as root and there is no postgres user to run the server as", errUnavailable)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Not t.TempDir(): the postgres user must reach it.
	root, err := os.MkdirTemp(os.TempDir(), fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()))
	if err != nil {
		return nil, err
	}
	s.root, s.data, s.sock = root, filepath.Join(root, "data"), filepath.Join(root, "sock")
	if err := s.prepare(); err != nil {
		s.remove()
		return nil, err
	}
	if err := s.Start(); err != nil {
		s.remove()
		return nil, err
	}
	return s, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// prepare makes the directories and runs initdb with a password file.
func (s *Server) prepare() error {
	if err := os.Chmod(s.root, 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(s.sock, 0o755); err != nil {
		return err
	}
	pwfile := filepath.Join(s.root, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.password+"\n"), 0o600); err != nil {
		return err
	}
	if s.cred != nil {
		for _, p := range []string{s.root, s.sock, pwfile} {
			if err := os.Chown(p, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return err
			}
		}
	}
	cmd := exec.Command(filepath.Join(s.bin, "initdb"), "-D", s.data, "-U", "postgres", "--auth=scram-sha-256",
		"--pwfile="+pwfile, "-E", "UTF8", "--no-locale", "--no-sync")
	cmd.Dir = s.root
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	out, err := cmd.CombinedOutput()
	os.Remove(pwfile)
	if err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	return nil
}

// Start starts the server: on a new free loopback port the first time,
// on the same port and data directory after Stop or Kill. It returns when
// the server accepts connections.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("pgtest: the server is running")
	}
	if s.port == 0 {
		port, err := freePort()
		if err != nil {
			return err
		}
		s.port = port
	}
	log, err := os.OpenFile(filepath.Join(s.root, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	syncCommit := "off"
	if s.syncCommit {
		syncCommit = "on"
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.data,
		"-c", "listen_addresses=127.0.0.1", "-p", strconv.Itoa(s.port), "-k", s.sock,
		"-c", "fsync=off", "-c", "synchronous_commit="+syncCommit, "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "logging_collector=off")
	cmd.Dir = s.root
	cmd.Stdout, cmd.Stderr = log, log
	// Pdeathsig: the server stops (fast shutdown) when the test binary
	// exits without stopping it. It is tied to the thread that forks, so
	// the start and the wait run on one locked thread that lives as long
	// as the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGINT}
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(done)
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		log.Close()
		return fmt.Errorf("pgtest: starting postgres: %w", err)
	}
	s.cmd, s.done, s.log = cmd, done, log
	return s.waitReady(30 * time.Second)
}

// waitReady polls until the server accepts a connection, it exits, or
// timeout passes.
func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("pgtest: postgres exited while starting:\n%s", s.tail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: postgres did not accept connections within %v:\n%s", timeout, s.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tail is the end of the server's log, for errors.
func (s *Server) tail() string {
	b, _ := os.ReadFile(filepath.Join(s.root, "postgres.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func freePort() (int, error) {
	// Below the kernel's ephemeral range: a port it hands out as free may
	// become some outgoing connection's source port before postgres binds
	// it.
	for range 200 {
		port := 20000 + mrand.IntN(12000)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			l.Close()
			return port, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// Password is the password of the postgres superuser.
func (s *Server) Password() string { return s.password }

// DSN is the connection string of database db, as the superuser with its
// password.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/%s?sslmode=disable", s.password, s.port, db)
}

// NewDatabase creates an empty database with a name of its own and
// returns its DSN; it is dropped when the test ends.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("certd_test_%d", s.dbs.Add(1))
	if err := s.exec(fmt.Sprintf("CREATE DATABASE %s", name)); err != nil {
		tb.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		s.mu.Lock()
		running := s.cmd != nil
		s.mu.Unlock()
		if running {
			_ = s.exec(fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
		}
	})
	return s.DSN(name)
}

func (s *Server) exec(q string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, q)
	return err
}

// Stop shuts the server down (SIGINT: fast shutdown, clients
// disconnected) and waits for it to exit.
func (s *Server) Stop() { s.signal(syscall.SIGINT, time.Minute) }

// Kill kills the server's postmaster (SIGKILL, as a crash would) and
// waits for it; its other processes notice and exit. Start recovers the
// data directory.
func (s *Server) Kill() { s.signal(syscall.SIGKILL, time.Minute) }

// signal sends sig to the postmaster we started and waits until it
// exits, then SIGKILLs it if it has not after timeout.
func (s *Server) signal(sig syscall.Signal, timeout time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(timeout):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	if sig == syscall.SIGKILL {
		// The postmaster's children hold the shared memory until they
		// notice it died; Start waits for them through postmaster.pid.
		s.waitChildren(10 * time.Second)
	}
	s.log.Close()
	s.cmd, s.done, s.log = nil, nil, nil
}

// waitChildren waits until no process still has the data directory as
// its working directory (the backends of a killed postmaster), so a
// restart does not find the old shared memory in use.
func (s *Server) waitChildren(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !s.anyChild() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) anyChild() bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cwd")
	for _, p := range procs {
		if d, err := os.Readlink(p); err == nil && (d == s.data || strings.HasPrefix(d, s.data+"/")) {
			return true
		}
	}
	return false
}

// remove deletes the server's directory (after Stop).
func (s *Server) remove() {
	if s.root != "" {
		_ = os.RemoveAll(s.root)
	}
}

// sweep removes the directories of servers whose test binary has exited
// and whose postmaster is gone too (a shared server stopped by its
// parent-death signal).
func sweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		rest := strings.TrimPrefix(filepath.Base(d), dirPrefix)
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid")); err == nil {
			if pm, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])); err == nil && alive(pm) {
				continue
			}
		}
		_ = os.RemoveAll(d)
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
