package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certd/certd/internal/simpki"
)

// liveChecker is RELIABILITY.md N4's checker: while deploys (and kills)
// run, it reads every certificate's live set over and over the way a
// server reloading at that instant would (resolve the live link once,
// then read the files of the version it names) and counts the reads that
// saw anything but one complete version: a dangling link, a file missing
// or unreadable, a key that does not match the certificate, a chain that
// does not verify, names not covered, or now outside the validity.
type liveChecker struct {
	dir   string
	names map[string]string // certificate name -> a DNS name it must cover
	roots *x509.CertPool

	mu     sync.Mutex
	reads  int
	mixed  int
	first  []string // the first few mixed reads, for the failure message
	stop   chan struct{}
	done   chan struct{}
	before map[string]bool // names with a live set ever seen
}

func startLiveChecker(dir string, names map[string]string, roots *x509.CertPool) *liveChecker {
	c := &liveChecker{dir: dir, names: names, roots: roots, stop: make(chan struct{}), done: make(chan struct{}), before: map[string]bool{}}
	go c.loop()
	return c
}

func (c *liveChecker) loop() {
	defer close(c.done)
	keys := make([]string, 0, len(c.names))
	for n := range c.names {
		keys = append(keys, n)
	}
	slices.Sort(keys)
	for {
		for _, n := range keys {
			select {
			case <-c.stop:
				return
			default:
			}
			c.check(n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// check reads name's live set once.
func (c *liveChecker) check(name string) {
	live := filepath.Join(c.dir, name)
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var raw string
		raw, err = os.Readlink(live)
		if errors.Is(err, fs.ErrNotExist) {
			c.mu.Lock()
			seen := c.before[name]
			c.mu.Unlock()
			if !seen {
				return // never deployed yet: nothing is served
			}
			err = fmt.Errorf("the live link vanished")
			break
		}
		if err != nil {
			break
		}
		target := raw
		if !filepath.IsAbs(target) {
			target = filepath.Join(c.dir, target)
		}
		err = c.verify(target, c.names[name])
		// A version pruned between the resolve and the read is a reader
		// that lost a race with "keep", not a mixed set: resolve again
		// if the link moved meanwhile.
		if now, _ := os.Readlink(live); err != nil && errors.Is(err, fs.ErrNotExist) && now != raw {
			continue
		}
		break
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	c.before[name] = true
	if err != nil {
		c.mixed++
		if len(c.first) < 5 {
			c.first = append(c.first, fmt.Sprintf("%s: %v", name, err))
		}
	}
}

// verify checks one version directory as a server would load it.
func (c *liveChecker) verify(version, host string) error {
	certPEM, err := os.ReadFile(filepath.Join(version, "cert.pem"))
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(filepath.Join(version, "privkey.pem"))
	if err != nil {
		return err
	}
	chainPEM, err := os.ReadFile(filepath.Join(version, "chain.pem"))
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM) // also: the key matches
	if err != nil {
		return fmt.Errorf("cert and key: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return err
	}
	inter := x509.NewCertPool()
	inter.AppendCertsFromPEM(chainPEM)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: c.roots, Intermediates: inter}); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return nil
}

// Stop ends the loop and returns the reads made, the mixed ones and the
// first few of those.
func (c *liveChecker) Stop() (reads, mixed int, first []string) {
	close(c.stop)
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads, c.mixed, c.first
}

// The checker itself can fail: a version whose key is not the
// certificate's, one with a file missing, and a dangling link after a
// set was seen are each counted; a complete version is not.
func TestLiveCheckerCountsEveryBrokenSet(t *testing.T) {
	now := time.Now()
	root, err := simpki.NewAuthority("t", "root", nil, now, time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	ica, err := simpki.NewAuthority("t", "ica", root, now, time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root.Cert)
	dir := t.TempDir()
	version := func(name string, keyOf, certOf *ecdsa.PrivateKey, skip string) string {
		serial, _ := simpki.NewSerial()
		der, err := ica.IssueLeaf(serial, certOf.Public(), "a.example.com", []string{"a.example.com"}, now.Add(-time.Minute), now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalPKCS8PrivateKey(keyOf)
		files := map[string]string{"cert.pem": simpki.PEMCert(der), "chain.pem": ica.PEM,
			"privkey.pem": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))}
		v := filepath.Join(dir, ".v", name)
		if err := os.MkdirAll(v, 0o700); err != nil {
			t.Fatal(err)
		}
		for f, data := range files {
			if f != skip {
				writeFile(t, filepath.Join(v, f), data)
			}
		}
		return v
	}
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	link := func(name, target string) {
		_ = os.Remove(filepath.Join(dir, name))
		if target != "" {
			if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		setup func()
		mixed bool
	}{
		{"complete", func() { link("ok", version("ok", k1, k1, "")) }, false},
		{"key of another certificate", func() { link("mix", version("mix", k2, k1, "")) }, true},
		{"chain missing", func() { link("half", version("half", k1, k1, "chain.pem")) }, true},
		{"dangling link", func() { link("gone", filepath.Join(dir, ".v", "nowhere")) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			c := &liveChecker{dir: dir, names: map[string]string{}, roots: roots, before: map[string]bool{}}
			c.check(map[string]string{"complete": "ok", "key of another certificate": "mix", "chain missing": "half", "dangling link": "gone"}[tc.name])
			if got := c.mixed > 0; got != tc.mixed || c.reads != 1 {
				t.Fatalf("reads %d mixed %d, want mixed=%v: %v", c.reads, c.mixed, tc.mixed, c.first)
			}
		})
	}
}
