// Package authdns is a small in-memory authoritative DNS server that takes
// TSIG-signed RFC 2136 updates, for `certd demo`: it lets the demo drive
// the real rfc2136 provider with nothing installed. Production and the
// test suite use real servers (Knot, BIND); this is not one.
package authdns

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Server serves zones from memory.
type Server struct {
	KeyName string // TSIG key name (FQDN)
	Secret  string // TSIG secret, base64
	Addr    string // set by Start

	mu    sync.RWMutex
	zones map[string][]dns.RR // zone FQDN -> records
	srv   *dns.Server
}

// New makes a server for zones: zone name -> zone-file lines (relative
// names allowed; SOA and NS are added).
func New(keyName, secret string, zones map[string][]string) (*Server, error) {
	s := &Server{KeyName: dns.Fqdn(keyName), Secret: secret, zones: map[string][]dns.RR{}}
	for zone, lines := range zones {
		z := dns.Fqdn(zone)
		all := append([]string{
			fmt.Sprintf("@ 60 IN SOA ns1.%s hostmaster.%s 1 3600 600 86400 60", z, z),
			fmt.Sprintf("@ 60 IN NS ns1.%s", z),
			"ns1 60 IN A 127.0.0.1",
		}, lines...)
		for _, l := range all {
			rr, err := dns.NewRR("$ORIGIN " + z + "\n" + l)
			if err != nil {
				return nil, fmt.Errorf("authdns: zone %s: %q: %w", zone, l, err)
			}
			s.zones[z] = append(s.zones[z], rr)
		}
	}
	return s, nil
}

// Start listens on addr (UDP and TCP on the same port) until ctx is done.
// With port 0, ports are tried until one is free for both.
func (s *Server) Start(ctx context.Context, addr string) error {
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for try := 0; ; try++ {
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			return fmt.Errorf("authdns: %w", err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if _, port, _ := net.SplitHostPort(addr); port != "0" || try >= 20 {
			return fmt.Errorf("authdns: %w", err)
		}
	}
	s.Addr = pc.LocalAddr().String()
	secrets := map[string]string{s.KeyName: s.Secret}
	// miekg/dns answers NOTIMP to updates unless told to accept them.
	accept := func(h dns.Header) dns.MsgAcceptAction {
		if int(h.Bits>>11)&0xF == dns.OpcodeUpdate {
			return dns.MsgAccept
		}
		return dns.DefaultMsgAcceptFunc(h)
	}
	udp := &dns.Server{PacketConn: pc, Handler: s, TsigSecret: secrets, MsgAcceptFunc: accept}
	tcp := &dns.Server{Listener: ln, Handler: s, TsigSecret: secrets, MsgAcceptFunc: accept}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	go func() {
		<-ctx.Done()
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
	}()
	return nil
}

// zoneOf is the longest zone containing name; s.mu must be held.
func (s *Server) zoneOf(name string) string {
	best := ""
	for z := range s.zones {
		if dns.IsSubDomain(z, name) && len(z) > len(best) {
			best = z
		}
	}
	return best
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	if r.Opcode == dns.OpcodeUpdate {
		m.Rcode = s.update(w, r)
		s.reply(w, r, m)
		return
	}
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		s.reply(w, r, m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.RLock()
	defer s.mu.RUnlock()
	zone := s.zoneOf(name)
	if zone == "" {
		m.Rcode = dns.RcodeRefused
		s.reply(w, r, m)
		return
	}
	m.Authoritative = true
	exists := false
	for _, rr := range s.zones[zone] {
		h := rr.Header()
		if !strings.EqualFold(h.Name, name) {
			continue
		}
		exists = true
		if h.Rrtype == q.Qtype || h.Rrtype == dns.TypeCNAME && q.Qtype != dns.TypeCNAME || q.Qtype == dns.TypeANY {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	if len(m.Answer) == 0 {
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range s.zones[zone] {
			if rr.Header().Rrtype == dns.TypeSOA {
				m.Ns = append(m.Ns, dns.Copy(rr))
			}
		}
	}
	s.reply(w, r, m)
}

func (s *Server) reply(w dns.ResponseWriter, r, m *dns.Msg) {
	if t := r.IsTsig(); t != nil && w.TsigStatus() == nil {
		m.SetTsig(t.Hdr.Name, t.Algorithm, 300, int64(t.TimeSigned))
	}
	_ = w.WriteMsg(m)
}

// update applies an RFC 2136 update signed with the server's key.
func (s *Server) update(w dns.ResponseWriter, r *dns.Msg) int {
	t := r.IsTsig()
	if t == nil || !strings.EqualFold(t.Hdr.Name, s.KeyName) || w.TsigStatus() != nil {
		return dns.RcodeRefused
	}
	if len(r.Question) != 1 {
		return dns.RcodeFormatError
	}
	zone := strings.ToLower(r.Question[0].Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	recs, ok := s.zones[zone]
	if !ok {
		return dns.RcodeNotAuth
	}
	for _, rr := range r.Ns {
		h := rr.Header()
		if !dns.IsSubDomain(zone, h.Name) {
			return dns.RcodeNotZone
		}
		switch h.Class {
		case dns.ClassINET: // add, unless the same record is there
			dup := false
			for _, have := range recs {
				dup = dup || dns.IsDuplicate(have, rr)
			}
			if !dup {
				recs = append(recs, dns.Copy(rr))
			}
		case dns.ClassNONE: // delete this record
			want := dns.Copy(rr)
			want.Header().Class = dns.ClassINET
			recs = remove(recs, func(have dns.RR) bool { return dns.IsDuplicate(have, want) })
		case dns.ClassANY: // delete an RRset, or every record of a name
			recs = remove(recs, func(have dns.RR) bool {
				hh := have.Header()
				return strings.EqualFold(hh.Name, h.Name) && hh.Rrtype != dns.TypeSOA && (h.Rrtype == dns.TypeANY || hh.Rrtype == h.Rrtype)
			})
		default:
			return dns.RcodeFormatError
		}
	}
	s.zones[zone] = recs
	return dns.RcodeSuccess
}

func remove(rrs []dns.RR, match func(dns.RR) bool) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		if !match(rr) {
			out = append(out, rr)
		}
	}
	return out
}
