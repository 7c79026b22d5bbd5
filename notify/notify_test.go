package notify

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

var ctx = context.Background()

func msg(kind, cert string) Message {
	return Message{Kind: kind, Cert: cert, Account: "atlas", Domains: []string{cert + ".example.com"},
		Subject: "certd: " + cert + " " + kind, Text: cert + ": renewal keeps failing: atlas: 503"}
}

func TestWebhookBodies(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/json" || r.Method != http.MethodPost {
			t.Errorf("request %s %s", r.Method, r.Header.Get("Content-Type"))
		}
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		got = append(got, body)
		mu.Unlock()
		if strings.Contains(r.URL.Path, "fail") {
			w.WriteHeader(500)
		}
	}))
	defer srv.Close()
	if err := (&Webhook{URL: srv.URL + "/hook/TOKEN-CANARY"}).Send(ctx, msg(KindFailure, "www")); err != nil {
		t.Fatal(err)
	}
	if err := (&Webhook{URL: srv.URL + "/hook", Slack: true}).Send(ctx, msg(KindFailure, "www")); err != nil {
		t.Fatal(err)
	}
	if got[0]["kind"] != "failure" || got[0]["certificate"] != "www" || got[0]["subject"] == "" {
		t.Errorf("json body: %v", got[0])
	}
	if text, _ := got[1]["text"].(string); len(got[1]) != 1 || !strings.Contains(text, "certificate: www") {
		t.Errorf("slack body: %v", got[1])
	}
	err := (&Webhook{URL: srv.URL + "/fail/TOKEN-CANARY"}).Send(ctx, msg(KindFailure, "www"))
	if err == nil || strings.Contains(err.Error(), "CANARY") {
		t.Errorf("error on 500: %v (must not echo the URL's token)", err)
	}
	err = (&Webhook{URL: "http://127.0.0.1:1/TOKEN-CANARY"}).Send(ctx, msg(KindFailure, "www"))
	if err == nil || strings.Contains(err.Error(), "CANARY") {
		t.Errorf("connection error: %v (must not echo the URL's token)", err)
	}
}

func TestDeduplicationAndRateLimit(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var sent []Message
	n := &Notifier{MinInterval: time.Hour, MaxPerHour: 3, Now: func() time.Time { return now }}
	n.SetSenders([]Sender{senderFunc(func(m Message) { sent = append(sent, m) })})
	for range 5 {
		_ = n.Notify(ctx, msg(KindFailure, "www"))
	}
	if len(sent) != 1 {
		t.Fatalf("the same failure sent %d times", len(sent))
	}
	if !n.Reported("www") {
		t.Error("failure not remembered")
	}
	_ = n.Notify(ctx, msg(KindFailure, "shop"))
	_ = n.Notify(ctx, msg(KindRecovered, "www"))
	if err := n.Notify(ctx, msg(KindFailure, "blog")); !errors.Is(err, ErrSuppressed) {
		t.Fatalf("fourth message in an hour: %v", err)
	}
	if len(sent) != 3 || n.Reported("www") {
		t.Fatalf("sent %d; www still reported %v", len(sent), n.Reported("www"))
	}
	now = now.Add(61 * time.Minute)
	if err := n.Notify(ctx, msg(KindFailure, "www")); err != nil {
		t.Fatalf("after the interval: %v", err)
	}
}

type senderFunc func(Message)

func (f senderFunc) Name() string                            { return "func" }
func (f senderFunc) Send(_ context.Context, m Message) error { f(m); return nil }

// smtpServer is a minimal relay: STARTTLS, AUTH PLAIN, one message.
type smtpServer struct {
	addr     string
	tls      *tls.Config
	startTLS bool
	mu       sync.Mutex
	data     []string
	authOK   bool
	authUser string
}

func newSMTP(t *testing.T, startTLS bool) (*smtpServer, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{addr: ln.Addr().String(), startTLS: startTLS,
		tls: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s, pool
}

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	rw := bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c))
	say := func(line string) { _, _ = rw.WriteString(line + "\r\n"); _ = rw.Flush() }
	say("220 relay ESMTP")
	secure := false
	for {
		line, err := rw.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			if s.startTLS && !secure {
				say("250-relay\r\n250 STARTTLS")
			} else {
				say("250-relay\r\n250 AUTH PLAIN")
			}
		case cmd == "STARTTLS":
			say("220 go ahead")
			tc := tls.Server(c, s.tls)
			if tc.Handshake() != nil {
				return
			}
			c, secure = tc, true
			rw = bufio.NewReadWriter(bufio.NewReader(tc), bufio.NewWriter(tc))
		case strings.HasPrefix(cmd, "AUTH PLAIN"):
			if !secure {
				say("538 encryption required")
				continue
			}
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(line)[len("AUTH PLAIN "):])
			parts := strings.Split(string(raw), "\x00")
			if len(parts) == 3 && parts[1] == "certd" && parts[2] == "smtp-secret" {
				s.mu.Lock()
				s.authOK, s.authUser = true, parts[1]
				s.mu.Unlock()
				say("235 ok")
			} else {
				say("535 bad credentials")
			}
		case strings.HasPrefix(cmd, "MAIL FROM"), strings.HasPrefix(cmd, "RCPT TO"):
			say("250 ok")
		case cmd == "DATA":
			say("354 go on")
			var b strings.Builder
			for {
				l, err := rw.ReadString('\n')
				if err != nil || l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			s.mu.Lock()
			s.data = append(s.data, b.String())
			s.mu.Unlock()
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("502 unknown")
		}
	}
}

func TestEmailOverSTARTTLSWithAuth(t *testing.T) {
	srv, pool := newSMTP(t, true)
	e := &Email{Addr: srv.addr, From: "certd@example.com", To: []string{"ops@example.com"}, Username: "certd", Password: "smtp-secret", RootCAs: pool}
	if err := e.Send(ctx, msg(KindExpiring, "www")); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if !srv.authOK || len(srv.data) != 1 || !strings.Contains(srv.data[0], "Subject: certd: www expiring") ||
		!strings.Contains(srv.data[0], "certificate: www") || strings.Contains(srv.data[0], "smtp-secret") {
		t.Fatalf("delivered: auth %v, %q", srv.authOK, srv.data)
	}
	bad := *e
	bad.Password = "wrong"
	if err := bad.Send(ctx, msg(KindFailure, "www")); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("bad password: %v", err)
	}
}

func TestEmailRefusesARelayWithoutTLS(t *testing.T) {
	srv, _ := newSMTP(t, false)
	e := &Email{Addr: srv.addr, From: "certd@example.com", To: []string{"ops@example.com"}, Username: "certd", Password: "smtp-secret"}
	if err := e.Send(ctx, msg(KindFailure, "www")); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("plain relay: %v", err)
	}
	_ = io.EOF
}
