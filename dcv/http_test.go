package dcv_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/providers"
)

const gsdv = "/.well-known/pki-validation/gsdv.txt"

// serveResponder runs a responder on a loopback port until the test ends.
func serveResponder(t *testing.T) (*providers.Responder, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := providers.NewResponder(ln.Addr().String())
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Serve(cctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, ln.Addr().String()
}

// dialTo sends every HTTP self-check to addr, whatever the host.
func dialTo(addr string) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
}

// fetch GETs path from addr with the Host header host.
func fetch(t *testing.T, addr, host, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func httpEngine(t *testing.T, j dcv.Journal, targets map[string]dcv.HTTPTarget, mod func(*dcv.Options)) *dcv.Engine {
	t.Helper()
	opts := dcv.Options{Journal: j, Resolvers: []string{"127.0.0.1:1"}, Timeout: 5 * time.Second, HTTP: targets}
	if mod != nil {
		mod(&opts)
	}
	e, err := dcv.NewEngine(opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func atlasFile(domain, token string) dcv.Challenge {
	return dcv.Challenge{Domain: domain, Method: dcv.HTTPFile, Path: gsdv, Content: token}
}

// Two Atlas domains prove control at the same path: on the host-aware
// responder both are served at once, each to its own Host.
func TestHTTPSamePathTwoHostsOnTheResponder(t *testing.T) {
	resp, addr := serveResponder(t)
	j := newJournal()
	e := httpEngine(t, j, map[string]dcv.HTTPTarget{"resp": resp}, func(o *dcv.Options) { o.HTTPDial = dialTo(addr) })
	web := dcv.Target{HTTP: "resp"}
	start := time.Now()
	pa, err := e.Present(ctx, "claim:atlas/a.example.com", atlasFile("a.example.com", "token-a"), web)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := e.Present(ctx, "claim:atlas/b.example.com", atlasFile("B.Example.com", "token-b"), web)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("publishing two hosts on a host-aware target took %v: it must not wait", d)
	}
	// The self-check fetches each file with its own Host header.
	if err := e.Wait(ctx, []*dcv.Published{pa, pb}); err != nil {
		t.Fatal(err)
	}
	if code, _ := fetch(t, addr, "c.example.com", gsdv); code != 404 {
		t.Errorf("a path published for other hosts answers %d to a third host, want 404", code)
	}
	hosts := map[string]string{}
	live, _ := j.Live(ctx)
	for _, r := range live {
		hosts[r.Zone] = r.Value
	}
	if len(hosts) != 2 || hosts["a.example.com"] != "token-a" || hosts["b.example.com"] != "token-b" {
		t.Fatalf("journal hosts (Record.Zone) of the files: %v", hosts)
	}
	if err := e.CleanUp(ctx, []*dcv.Published{pa}); err != nil {
		t.Fatal(err)
	}
	if code, _ := fetch(t, addr, "a.example.com", gsdv); code != 404 {
		t.Errorf("a's file still served after its cleanup: %d", code)
	}
	if code, body := fetch(t, addr, "b.example.com", gsdv); code != 200 || body != "token-b" {
		t.Errorf("removing a's file took b's: %d %q", code, body)
	}
	if err := e.Wait(ctx, []*dcv.Published{pb}); err != nil {
		t.Fatal(err)
	}
	if err := e.CleanUp(ctx, []*dcv.Published{pb}); err != nil {
		t.Fatal(err)
	}
	if code, _ := fetch(t, addr, "b.example.com", gsdv); code != 404 {
		t.Errorf("b's file still served after its cleanup: %d", code)
	}
}

type presented struct {
	p   *dcv.Published
	err error
}

// A webroot serves one file for every host: a second content at the same
// path waits until the first is cleaned up, and never overwrites it.
func TestHTTPSamePathOnHostBlindWebrootIsSerialised(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, filepath.FromSlash(gsdv))
	j := newJournal()
	targets := map[string]dcv.HTTPTarget{"web": &providers.Webroot{Root: root}}
	e := httpEngine(t, j, targets, nil)
	web := dcv.Target{HTTP: "web"}
	content := func() string {
		b, err := os.ReadFile(file)
		if errors.Is(err, os.ErrNotExist) {
			return "<none>"
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// holds checks for d that the file keeps want and b is still waiting.
	holds := func(d time.Duration, want string, b <-chan presented) {
		t.Helper()
		for end := time.Now().Add(d); time.Now().Before(end); {
			select {
			case r := <-b:
				t.Fatalf("the second host's Present returned (%v) while %q is live", r.err, want)
			case <-time.After(20 * time.Millisecond):
			}
			if got := content(); got != want {
				t.Fatalf("file is %q while %q is live", got, want)
			}
		}
	}

	pa, err := e.Present(ctx, "claim:atlas/a.example.com", atlasFile("a.example.com", "token-a"), web)
	if err != nil {
		t.Fatal(err)
	}
	// The same content for another host and owner shares the file at once
	// (Sectigo serves one content for every name of an order).
	start := time.Now()
	pc, err := e.Present(ctx, "order:7", atlasFile("c.example.com", "token-a"), web)
	if err != nil || time.Since(start) > time.Second {
		t.Fatalf("same content, other host: %v after %v", err, time.Since(start))
	}
	b := make(chan presented, 1)
	go func() {
		p, err := e.Present(ctx, "claim:atlas/b.example.com", atlasFile("b.example.com", "token-b"), web)
		b <- presented{p, err}
	}()
	// 1.2s + 0.3s: the waiter's polls are then 1.6s apart, so returning
	// within a second of the cleanup below means the removal woke it.
	holds(1200*time.Millisecond, "token-a", b)
	if err := e.CleanUp(ctx, []*dcv.Published{pa}); err != nil {
		t.Fatal(err)
	}
	// c still needs the file: removing a's record leaves it in place.
	holds(300*time.Millisecond, "token-a", b)
	if err := e.CleanUp(ctx, []*dcv.Published{pc}); err != nil {
		t.Fatal(err)
	}
	var pb *dcv.Published
	select {
	case r := <-b:
		if r.err != nil {
			t.Fatal(r.err)
		}
		pb = r.p
	case <-time.After(time.Second): // woken by the removal, not by its next poll (up to 2s)
		t.Fatal("the second host's Present still waits after the first was cleaned up")
	}
	if got := content(); got != "token-b" {
		t.Fatalf("file after b published: %q", got)
	}

	// Same owner, same content: the same publication, not a second one.
	again, err := e.Present(ctx, "claim:atlas/b.example.com", atlasFile("b.example.com", "token-b"), web)
	if err != nil {
		t.Fatal(err)
	}
	if live, _ := j.Live(ctx); len(live) != 1 || again.Where() != pb.Where() {
		t.Fatalf("re-presenting the same file: journal %+v", live)
	}

	// A wait is bounded by the engine's Timeout; nothing is published.
	short := httpEngine(t, j, targets, func(o *dcv.Options) { o.Timeout = 400 * time.Millisecond })
	start = time.Now()
	_, err = short.Present(ctx, "claim:atlas/d.example.com", atlasFile("d.example.com", "token-d"), web)
	if !errors.Is(err, dcv.ErrPathBusy) || time.Since(start) > 2*time.Second {
		t.Fatalf("busy path: %v after %v, want ErrPathBusy after the 400ms Timeout", err, time.Since(start))
	}
	if live, _ := j.Live(ctx); len(live) != 1 || content() != "token-b" {
		t.Fatalf("after the busy Present: file %q, journal %+v", content(), live)
	}
	// And by ctx.
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := e.Present(cctx, "claim:atlas/d.example.com", atlasFile("d.example.com", "token-d"), web); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled wait: %v", err)
	}

	if err := e.CleanUp(ctx, []*dcv.Published{pb}); err != nil {
		t.Fatal(err)
	}
	if got := content(); got != "<none>" {
		t.Fatalf("after the last cleanup: %q", got)
	}
	if live, _ := j.Live(ctx); len(live) != 0 {
		t.Fatalf("journal: %+v", live)
	}
}

// Through a real nginx serving one document root for two names: while a's
// token is live, b's Host gets a's token (which is why b must wait);
// after a's cleanup, b publishes and is visible.
func TestHTTPHostBlindWebrootThroughNginx(t *testing.T) {
	root := t.TempDir()
	port := testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	testenv.StartNginx(t, fmt.Sprintf("server { listen %s; server_name a.example.com b.example.com; root %s; }", addr, root))
	testenv.WaitListening(t, addr)
	e := httpEngine(t, newJournal(), map[string]dcv.HTTPTarget{"web": &providers.Webroot{Root: root}}, func(o *dcv.Options) {
		o.HTTPDial = dialTo(addr)
	})
	web := dcv.Target{HTTP: "web"}
	pa, err := e.Present(ctx, "claim:atlas/a.example.com", atlasFile("a.example.com", "token-a"), web)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Wait(ctx, []*dcv.Published{pa}); err != nil {
		t.Fatal(err)
	}
	b := make(chan presented, 1)
	go func() {
		p, err := e.Present(ctx, "claim:atlas/b.example.com", atlasFile("b.example.com", "token-b"), web)
		b <- presented{p, err}
	}()
	time.Sleep(300 * time.Millisecond)
	if code, body := fetch(t, addr, "b.example.com", gsdv); code != 200 || body != "token-a" {
		t.Fatalf("b's Host while a is live: %d %q (one document root serves a's token to every name)", code, body)
	}
	select {
	case r := <-b:
		t.Fatalf("b published over a's live token: %v", r.err)
	default:
	}
	if err := e.CleanUp(ctx, []*dcv.Published{pa}); err != nil {
		t.Fatal(err)
	}
	r := <-b
	if r.err != nil {
		t.Fatal(r.err)
	}
	if err := e.Wait(ctx, []*dcv.Published{r.p}); err != nil {
		t.Fatal(err)
	}
	if err := e.CleanUp(ctx, []*dcv.Published{r.p}); err != nil {
		t.Fatal(err)
	}
	if code, _ := fetch(t, addr, "b.example.com", gsdv); code != 404 {
		t.Errorf("after cleanup: %d", code)
	}
}
