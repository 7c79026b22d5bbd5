package deploy_test

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/testenv"
)

// servedSerial is the serial of the leaf addr serves for name.
func servedSerial(addr, name string) (string, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, InsecureSkipVerify: true}) //nolint:gosec // we read the leaf only
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}

func TestNginxServesEachDeployAndSurvivesAFailingCheck(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	live := filepath.Join(dir, "live")
	port := testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	servers := fmt.Sprintf(`
    include %[1]s/extra.conf;
    server {
        listen %[2]s ssl;
        server_name www.example.com;
        ssl_certificate     %[3]s/www/fullchain.pem;
        ssl_certificate_key %[3]s/www/privkey.pem;
        return 200 "ok\n";
    }`, dir, addr, live)
	if err := os.WriteFile(filepath.Join(dir, "extra.conf"), []byte("# nothing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// nginx needs a certificate at start: certd's first deploy comes first.
	d := &deploy.Deployer{}
	s := deploy.Spec{Name: "www", Dir: live, CertMode: 0o644, KeyMode: 0o600, Keep: 2, Timeout: 10 * time.Second}
	first := ca.bundle(t, 0x100, "www.example.com")
	if _, err := d.Deploy(ctx, s, first); err != nil {
		t.Fatal(err)
	}
	ngx := testenv.StartNginx(t, servers)
	testenv.WaitListening(t, addr)
	s.Check = []string{ngx.Bin(), "-t", "-q", "-p", ngx.Dir, "-c", ngx.Conf}
	s.Reload = [][]string{{ngx.Bin(), "-s", "reload", "-p", ngx.Dir, "-c", ngx.Conf}}
	s.Verify = &deploy.Verify{Address: addr, ServerName: "www.example.com", Timeout: 10 * time.Second}

	// An HTTPS client loop runs through every deploy below.
	var stop atomic.Bool
	var handshakes, failures atomic.Int64
	var firstFailure sync.Once
	var failure error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if _, err := servedSerial(addr, "www.example.com"); err != nil {
				failures.Add(1)
				firstFailure.Do(func() { failure = err })
			}
			handshakes.Add(1)
		}
	}()

	// A reader of the live files, through one opened directory, runs too.
	var readerBad, reads atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if err := readConsistent(filepath.Join(live, "www")); err != nil {
				readerBad.Add(1)
			}
			reads.Add(1)
		}
	}()

	// 200 deploys back to back, each checked (nginx -t) and reloaded; every
	// 20th is verified live, and then nginx must serve exactly that serial.
	const deploys = 200
	verify := s.Verify
	for i := 1; i <= deploys; i++ {
		b := ca.bundle(t, int64(0x100+i), "www.example.com")
		s.Verify = nil
		if i%20 == 0 {
			s.Verify = verify
		}
		if _, err := d.Deploy(ctx, s, b); err != nil {
			t.Fatalf("deploy %d: %v", i, err)
		}
		if s.Verify != nil {
			if got, err := servedSerial(addr, "www.example.com"); err != nil || got != b.Serial {
				t.Fatalf("after deploy %d nginx serves %s (%v), want %s", i, got, err, b.Serial)
			}
		}
	}
	s.Verify = verify

	// Someone breaks nginx's configuration: nginx -t fails, certd rolls
	// the files back, and nginx keeps serving the last good set.
	lastGood := fmt.Sprintf("%x", 0x100+deploys)
	if err := os.WriteFile(filepath.Join(dir, "extra.conf"), []byte("this is not nginx syntax\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := d.Deploy(ctx, s, ca.bundle(t, 0x999, "www.example.com"))
	if err == nil || !strings.Contains(err.Error(), "check") || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("failing nginx -t: %v", err)
	}
	if got, err := servedSerial(addr, "www.example.com"); err != nil || got != lastGood {
		t.Fatalf("after the failed check nginx serves %s (%v), want %s", got, err, lastGood)
	}
	leaf := readLeaf(t, filepath.Join(live, "www", "cert.pem"))
	if leaf != lastGood {
		t.Fatalf("live files hold %s after the rollback, want %s", leaf, lastGood)
	}

	stop.Store(true)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d handshakes failed during the deploys; first: %v", failures.Load(), handshakes.Load(), failure)
	}
	if readerBad.Load() != 0 {
		t.Fatalf("%d of %d reads of the live files saw a mixed set", readerBad.Load(), reads.Load())
	}
	t.Logf("%d deploys with reloads; %d handshakes, none failed; %d consistent reads of the live files", deploys, handshakes.Load(), reads.Load())
}

func readLeaf(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseSerial(t, b)
}
