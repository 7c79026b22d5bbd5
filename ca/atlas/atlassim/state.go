package atlassim

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/certd/certd/internal/simpki"
)

// stateVersion is the format of Save's output.
const stateVersion = 1

// savedState is what Save writes: everything a restarted simulator needs
// to be the same CA to its clients. Bearer tokens, injected faults, request
// counts and the rate limiter are not kept: clients log in again.
type savedState struct {
	Version int `json:"version"`
	// Root, ICA (the current issuing CA), ClientCA and APICA with their
	// private keys.
	Root     simpki.SavedAuthority `json:"root"`
	ICA      simpki.SavedAuthority `json:"ica"`
	ClientCA simpki.SavedAuthority `json:"client_ca"`
	APICA    simpki.SavedAuthority `json:"api_ca"`
	// IssuedSinceRotation drives RotateEvery.
	IssuedSinceRotation int `json:"issued_since_rotation"`
	// Quota is the issuances left; -1 is unlimited.
	Quota        int               `json:"quota"`
	Claims       []savedClaim      `json:"claims"`
	Certificates []savedCert       `json:"certificates"` // in request order
	Ledger       []LedgerEntry     `json:"ledger"`
	EmailSent    map[string]string `json:"email_sent,omitempty"`
	// PastICAs are the issuing CAs used before ICA (PEM, no keys): the AIA
	// repository keeps serving them.
	PastICAs []string `json:"past_icas,omitempty"`
}

type savedClaim struct {
	ID       string          `json:"id"`
	Domain   string          `json:"domain"`
	Token    string          `json:"token"`
	Status   string          `json:"status"`
	Created  time.Time       `json:"created"`
	Expires  time.Time       `json:"expires"`
	AssertBy time.Time       `json:"assert_by"`
	Log      []claimLogEntry `json:"log"`
	Job      *savedJob       `json:"job,omitempty"`
}

type savedJob struct {
	Method string    `json:"method"`
	ADN    string    `json:"adn"`
	Scheme string    `json:"scheme,omitempty"`
	Until  time.Time `json:"until"`
}

type savedCert struct {
	Serial    string    `json:"serial"`
	PEM       string    `json:"pem"`
	CN        string    `json:"cn"`
	Names     []string  `json:"names"`
	Status    string    `json:"status"`
	Created   time.Time `json:"created"`
	Ready     time.Time `json:"ready"`
	Updated   time.Time `json:"updated"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	RevokedAt time.Time `json:"revoked_at"`
}

// Save writes the simulator's lasting state as JSON: the root, the current
// issuing CA, the client CA and the API CA with their keys, the domain
// claims (with any pending assertion job), the certificates and the
// ledger. Load reads it back. Bearer tokens, injected faults, request
// counts and the rate limiter are not saved.
func (s *Server) Save(w io.Writer) error {
	b, err := s.snapshot()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// snapshot is Save's JSON, taken under s.mu.
func (s *Server) snapshot() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := savedState{Version: stateVersion, IssuedSinceRotation: s.issued, Quota: s.quota}
	if s.quota == math.MaxInt {
		st.Quota = -1
	}
	cas, err := simpki.SaveCAs(s.root, s.ica, s.apiCA)
	if err != nil {
		return nil, fmt.Errorf("atlassim: %w", err)
	}
	st.Root, st.ICA, st.APICA = cas.Root, cas.ICA, cas.APICA
	for _, der := range s.icas {
		if !bytes.Equal(der, s.ica.Cert.Raw) {
			st.PastICAs = append(st.PastICAs, simpki.PEMCert(der))
		}
	}
	sort.Strings(st.PastICAs)
	if st.ClientCA, err = s.clientCA.Save(); err != nil {
		return nil, fmt.Errorf("atlassim: saving %s: %w", s.clientCA.Cert.Subject.CommonName, err)
	}
	for _, c := range s.claims {
		sc := savedClaim{ID: c.id, Domain: c.domain, Token: c.token, Status: c.status, Created: c.created,
			Expires: c.expires, AssertBy: c.asBy, Log: slices.Clone(c.log)}
		if c.job != nil {
			sc.Job = &savedJob{Method: c.job.method, ADN: c.job.adn, Scheme: c.job.scheme, Until: c.job.until}
		}
		st.Claims = append(st.Claims, sc)
	}
	slices.SortFunc(st.Claims, func(a, b savedClaim) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	for _, serial := range s.order {
		c := s.certs[serial]
		st.Certificates = append(st.Certificates, savedCert{Serial: c.serial, PEM: c.pem, CN: c.cn, Names: c.names, Status: c.status,
			Created: c.created, Ready: c.ready, Updated: c.updated, NotBefore: c.notBefore, NotAfter: c.notAfter, RevokedAt: c.revokedAt})
	}
	st.Ledger = s.ledger
	if len(s.emailSent) > 0 {
		st.EmailSent = s.emailSent
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Load makes a simulator from what Save wrote, with opts as for New: the
// restarted simulator has the same trust material (so clients' mTLS
// certificates from ClientCredentials and their trust in APICAPEM and
// RootPEM stay valid; the API's own TLS certificate is re-issued from the
// API CA), the same claims, certificates and ledger. The remaining quota
// is the saved one unless opts.Quota is set.
func Load(r io.Reader, opts Options) (*Server, error) {
	var st savedState
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("atlassim: reading state: %w", err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("atlassim: state version %d, want %d", st.Version, stateVersion)
	}
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	cas := simpki.SavedCAs{Root: st.Root, ICA: st.ICA, APICA: st.APICA}
	var ica *simpki.Authority
	if s.root, ica, s.apiCA, err = cas.Restore(); err != nil {
		return nil, fmt.Errorf("atlassim: state: %w", err)
	}
	s.icas = nil
	for i, p := range st.PastICAs {
		b, _ := pem.Decode([]byte(p))
		if b == nil || b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("atlassim: state: past_icas[%d]: not a PEM certificate", i)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("atlassim: state: past_icas[%d]: %w", i, err)
		}
		if s.icas == nil {
			s.icas = map[string][]byte{}
		}
		s.icas[hex.EncodeToString(c.SubjectKeyId)] = c.Raw
	}
	s.useICA(ica)
	if s.clientCA, err = st.ClientCA.Restore("client CA"); err != nil {
		return nil, fmt.Errorf("atlassim: state: %w", err)
	}
	if err := s.newServerCert(); err != nil {
		return nil, err
	}
	s.issued = st.IssuedSinceRotation
	if opts.Quota == 0 {
		s.quota = st.Quota
		if st.Quota < 0 {
			s.quota = math.MaxInt
		}
	}
	for _, sc := range st.Claims {
		if sc.ID == "" || s.claims[sc.ID] != nil {
			return nil, fmt.Errorf("atlassim: state: claim id %q missing or repeated", sc.ID)
		}
		c := &claim{id: sc.ID, domain: sc.Domain, token: sc.Token, status: sc.Status, created: sc.Created,
			expires: sc.Expires, asBy: sc.AssertBy, log: sc.Log}
		if sc.Job != nil {
			c.job = &verifyJob{method: sc.Job.Method, adn: sc.Job.ADN, scheme: sc.Job.Scheme, until: sc.Job.Until}
		}
		s.claims[c.id] = c
	}
	for _, sc := range st.Certificates {
		if sc.Serial == "" || s.certs[sc.Serial] != nil {
			return nil, fmt.Errorf("atlassim: state: certificate serial %q missing or repeated", sc.Serial)
		}
		if b, _ := pem.Decode([]byte(sc.PEM)); b == nil || b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("atlassim: state: certificate %s: no PEM certificate", sc.Serial)
		}
		s.certs[sc.Serial] = &certificate{serial: sc.Serial, pem: sc.PEM, cn: sc.CN, names: sc.Names, status: sc.Status,
			created: sc.Created, ready: sc.Ready, updated: sc.Updated, notBefore: sc.NotBefore, notAfter: sc.NotAfter, revokedAt: sc.RevokedAt}
		s.order = append(s.order, sc.Serial)
	}
	for _, e := range st.Ledger {
		if s.certs[e.Serial] == nil {
			return nil, errors.New("atlassim: state: ledger entry for unknown certificate " + e.Serial)
		}
	}
	s.ledger = st.Ledger
	for id, addr := range st.EmailSent {
		if s.claims[id] != nil {
			s.emailSent[id] = addr
		}
	}
	return s, nil
}
