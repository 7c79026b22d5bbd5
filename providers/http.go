package providers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/certd/certd/config"
	"github.com/certd/certd/dcv"
)

var (
	_ dcv.HTTPTarget = (*Webroot)(nil)
	_ dcv.HostBlind  = (*Webroot)(nil)
	_ dcv.HTTPTarget = (*Responder)(nil)
)

// Token files live only under these prefixes.
var wellKnown = []string{"/.well-known/pki-validation/", "/.well-known/acme-challenge/"}

func checkTokenPath(p string) error {
	for _, prefix := range wellKnown {
		rest, ok := strings.CutPrefix(p, prefix)
		if ok && rest != "" && !strings.ContainsAny(rest, "/\\") && rest != "." && rest != ".." {
			return nil
		}
	}
	return fmt.Errorf("token path %q is not a file directly under %s", p, strings.Join(wellKnown, " or "))
}

// WebrootConfig is a webroot HTTP target block: token files are written
// under Root, the document root a web server already serves.
type WebrootConfig struct {
	Root string `yaml:"root"`
}

func decodeWebroot(b *config.Block) (any, error) {
	return config.DecodeWith(b, WebrootConfig{}, func(c *WebrootConfig, ck *config.Checker) {
		switch fi, err := os.Stat(c.Root); {
		case c.Root == "":
			ck.Errorf("root", "root is required")
		case !filepath.IsAbs(c.Root):
			ck.Errorf("root", "root must be an absolute path, got %q", c.Root)
		case err != nil:
			ck.Errorf("root", "document root: %v", err)
		case !fi.IsDir():
			ck.Errorf("root", "document root %s is not a directory", c.Root)
		}
	})
}

func newWebroot(settings any) (dcv.HTTPTarget, error) {
	c, err := settingsOf[WebrootConfig]("webroot", settings)
	if err != nil {
		return nil, err
	}
	return &Webroot{Root: c.Root}, nil
}

// Webroot writes token files under a document root. Directories it creates
// are 0755 and files 0644, whatever the umask, because the web server
// (often another user) must read them; tokens are public by design.
//
// A document root serves the same file for every name the web server
// answers, so Webroot is host-blind: the host given to Put and Remove is
// ignored, and the engine keeps one content at a time at each path.
type Webroot struct {
	Root string
}

// HostBlind implements dcv.HostBlind: one file serves every host.
func (w *Webroot) HostBlind() bool { return true }

// Put writes the file atomically: a temporary file in the same directory,
// synced, then renamed over the name. host is ignored (see HostBlind).
func (w *Webroot) Put(_ context.Context, _, path string, content []byte) error {
	if err := checkTokenPath(path); err != nil {
		return fmt.Errorf("webroot: %w", err)
	}
	full := filepath.Join(w.Root, filepath.FromSlash(path))
	dir := filepath.Dir(full)
	if err := mkdirAll(w.Root, dir); err != nil {
		return fmt.Errorf("webroot: %w", err)
	}
	// The temporary file is named after the token: a crash between
	// writing and renaming leaves one that the next Put or the Remove of
	// this path (the journal's cleanup after a restart) takes away.
	tmp, err := os.OpenFile(tempName(full), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("webroot: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	_, err = tmp.Write(content)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), full)
	}
	if err != nil {
		return fmt.Errorf("webroot: writing %s: %w", path, err)
	}
	return nil
}

// mkdirAll creates dir and its parents below root with mode 0755
// regardless of the umask.
func mkdirAll(root, dir string) error {
	rel, err := filepath.Rel(root, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("%s is outside %s", dir, root)
	}
	cur := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		if err := os.Mkdir(cur, 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return err
		}
		if err := os.Chmod(cur, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// Remove deletes the token file; host is ignored. The engine journals what
// it put, so only certd's own files are ever named here.
func (w *Webroot) Remove(_ context.Context, _, path string) error {
	if err := checkTokenPath(path); err != nil {
		return fmt.Errorf("webroot: %w", err)
	}
	full := filepath.Join(w.Root, filepath.FromSlash(path))
	_ = os.Remove(tempName(full)) // left by a crash in Put, if any
	err := os.Remove(full)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("webroot: removing %s: %w", path, err)
	}
	return nil
}

// tempName is where Put writes path's file before renaming it in place.
func tempName(full string) string {
	return filepath.Join(filepath.Dir(full), ".certd-tmp-"+filepath.Base(full))
}

// ResponderConfig is a responder HTTP target block: certd itself serves
// token files on Listen, for hosts with no web server on port 80.
type ResponderConfig struct {
	Listen string `yaml:"listen"`
}

func decodeResponder(b *config.Block) (any, error) {
	return config.DecodeWith(b, ResponderConfig{}, func(c *ResponderConfig, ck *config.Checker) {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			ck.Errorf("listen", "listen must be host:port, got %q", c.Listen)
		}
	})
}

func newResponder(settings any) (dcv.HTTPTarget, error) {
	c, err := settingsOf[ResponderConfig]("responder", settings)
	if err != nil {
		return nil, err
	}
	return NewResponder(c.Listen), nil
}

// Responder serves token files from memory, by Host and path: a file put
// for one host is 404 for every other, so hosts sharing a path (every
// GlobalSign Atlas domain uses /.well-known/pki-validation/gsdv.txt)
// coexist. It answers only GET and HEAD for paths under the well-known
// prefixes; everything else is 404. Files live in memory only: after a
// restart the engine puts back those it still needs.
type Responder struct {
	Addr string

	mu    sync.RWMutex
	files map[hostPath][]byte
}

type hostPath struct{ host, path string }

// NewResponder returns a responder for addr; Serve starts it.
func NewResponder(addr string) *Responder {
	return &Responder{Addr: addr, files: map[hostPath][]byte{}}
}

// Put implements dcv.HTTPTarget.
func (r *Responder) Put(_ context.Context, host, path string, content []byte) error {
	if err := checkTokenPath(path); err != nil {
		return fmt.Errorf("responder: %w", err)
	}
	h := normHost(host)
	if h == "" || h != strings.ToLower(strings.TrimSuffix(host, ".")) {
		return fmt.Errorf("responder: %q is not a host name without a port", host)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[hostPath{h, path}] = append([]byte(nil), content...)
	return nil
}

// Remove implements dcv.HTTPTarget.
func (r *Responder) Remove(_ context.Context, host, path string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.files, hostPath{normHost(host), path})
	return nil
}

// normHost is a host name as the responder keys it: lower case, without
// port, brackets or trailing dot ("A.example.com.:80" is
// "a.example.com", "[::1]:80" is "::1").
func normHost(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// ServeHTTP implements http.Handler.
func (r *Responder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	r.mu.RLock()
	body, ok := r.files[hostPath{normHost(req.Host), req.URL.Path}]
	r.mu.RUnlock()
	if !ok {
		http.NotFound(w, req)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}

// Serve serves on ln (opened by the caller on r.Addr) until ctx is done.
func (r *Responder) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10e9}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("responder: %w", err)
}
