package mmsim

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/certd/certd/internal/simpki"
)

// stateVersion is the format of Save's output.
const stateVersion = 1

// savedState is what Save writes: everything a restarted simulator needs
// to be the same CA to its clients. The JWTs (and the key signing them),
// injected faults, request counts and the request limit's window are not
// kept: clients log in again.
type savedState struct {
	Version int `json:"version"`
	// Root, ICA (the issuing CA) and APICA with their private keys.
	simpki.SavedCAs

	Organizations []savedOrg    `json:"organizations"` // in creation order
	Orders        []savedOrder  `json:"orders"`        // in creation order
	Ledger        []LedgerEntry `json:"ledger"`
}

type savedOrg struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Address   string         `json:"address"`
	Address2  string         `json:"address2,omitempty"`
	City      string         `json:"city"`
	State     string         `json:"state,omitempty"`
	Country   string         `json:"country"`
	Zip       string         `json:"zip"`
	Phone     string         `json:"phone"`
	Created   time.Time      `json:"created"`
	Validated bool           `json:"validated"`
	Contacts  []savedContact `json:"contacts"` // in the organisation's order
}

type savedContact struct {
	ID        string   `json:"id"`
	FirstName string   `json:"first_name"`
	LastName  string   `json:"last_name"`
	JobTitle  string   `json:"job_title,omitempty"`
	Email     string   `json:"email"`
	Phone     string   `json:"phone"`
	Provider  string   `json:"provider"`
	Types     []string `json:"types"`
}

type savedOrder struct {
	ID              string        `json:"id"`
	OrganizationID  string        `json:"organization_id"`
	CertificateType string        `json:"certificate_type"`
	Locale          string        `json:"locale"`
	Contacts        []string      `json:"contacts"`
	Created         time.Time     `json:"created"`
	Status          string        `json:"status"`
	MoveAt          time.Time     `json:"move_at"`
	Reissue         bool          `json:"reissue,omitempty"`
	CommonName      string        `json:"common_name"`
	Names           []string      `json:"names"`
	Method          string        `json:"method"`
	Algorithm       string        `json:"algorithm"`
	RootHash        string        `json:"root_hash,omitempty"`
	CSR             string        `json:"csr"` // PEM
	DCV             []savedDCV    `json:"dcv"`
	Delay           time.Duration `json:"delay"`
	ReadyAt         time.Time     `json:"ready_at"`
	Leaves          [][]byte      `json:"leaves,omitempty"` // DER, the latest last
	Approved        bool          `json:"approved,omitempty"`
	FailNext        bool          `json:"fail_next,omitempty"`
	Checks          int           `json:"checks"`
}

type savedDCV struct {
	Name  string    `json:"name"`
	Token string    `json:"token"`
	OK    bool      `json:"ok"`
	Next  time.Time `json:"next"`
	Last  string    `json:"last,omitempty"`
}

// Save writes the simulator's lasting state as JSON: its CAs with their
// keys, the organisations with their contacts and validation, the orders
// (with their status, names, CSR, certificates and DCV state and tokens)
// and the ledger. Load reads it back. JWTs are not saved: clients log in
// again.
func (s *Server) Save(w io.Writer) error {
	s.mu.Lock()
	st := savedState{Version: stateVersion, Ledger: make([]LedgerEntry, len(s.ledger))}
	for i, e := range s.ledger {
		e.DNSNames = slices.Clone(e.DNSNames)
		st.Ledger[i] = e
	}
	for _, id := range s.orgSeq {
		o := s.orgs[id]
		so := savedOrg{ID: o.id, Name: o.name, Address: o.address, Address2: o.address2, City: o.city, State: o.state, Country: o.country,
			Zip: o.zip, Phone: o.ph, Created: o.created, Validated: o.validated}
		for _, cid := range o.contacts {
			c := s.contacts[cid]
			so.Contacts = append(so.Contacts, savedContact{ID: c.id, FirstName: c.first, LastName: c.last, JobTitle: c.title, Email: c.email,
				Phone: c.phone, Provider: c.provider, Types: slices.Clone(c.types)})
		}
		st.Organizations = append(st.Organizations, so)
	}
	for _, id := range s.orderSeq {
		o := s.orders[id]
		so := savedOrder{ID: o.id, OrganizationID: o.orgID, CertificateType: o.certType, Locale: o.locale, Contacts: slices.Clone(o.contacts),
			Created: o.created, Status: o.status, MoveAt: o.moveAt, Reissue: o.reissue, CommonName: o.cn, Names: slices.Clone(o.names),
			Method: o.method, Algorithm: o.alg, RootHash: o.rootHash, CSR: o.csrPEM, Delay: o.delay, ReadyAt: o.readyAt,
			Leaves: slices.Clone(o.leaves), Approved: o.approved, FailNext: o.failNext, Checks: o.checks}
		for _, d := range o.dcv {
			so.DCV = append(so.DCV, savedDCV{Name: d.name, Token: d.token, OK: d.ok, Next: d.next, Last: d.last})
		}
		st.Orders = append(st.Orders, so)
	}
	s.mu.Unlock()
	var err error
	if st.SavedCAs, err = simpki.SaveCAs(s.root, s.ica, s.apiCA); err != nil {
		return fmt.Errorf("mmsim: %w", err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// Load makes a simulator from what Save wrote, with opts as for New: the
// same CAs (so clients' trust in APICAPEM and RootPEM stays valid; the
// API's own TLS certificate is re-issued from the API CA),
// organisations, contacts, orders and ledger. opts is the configuration
// (addresses, delays, limits, token lifetime): nothing of the saved
// simulator's options is kept. No JWT issued before the save is valid:
// clients log in again.
func Load(r io.Reader, opts Options) (*Server, error) {
	var st savedState
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("mmsim: reading state: %w", err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("mmsim: state version %d, want %d", st.Version, stateVersion)
	}
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	if s.root, s.ica, s.apiCA, err = st.SavedCAs.Restore(); err != nil {
		return nil, fmt.Errorf("mmsim: state: %w", err)
	}
	if err := s.newServerCert(); err != nil {
		return nil, err
	}
	for _, so := range st.Organizations {
		if so.ID == "" || s.orgs[so.ID] != nil {
			return nil, fmt.Errorf("mmsim: state: organization id %q missing or repeated", so.ID)
		}
		o := &org{id: so.ID, name: so.Name, address: so.Address, address2: so.Address2, city: so.City, state: so.State, country: so.Country,
			zip: so.Zip, ph: so.Phone, created: so.Created, validated: so.Validated}
		for _, sc := range so.Contacts {
			if sc.ID == "" || s.contacts[sc.ID] != nil {
				return nil, fmt.Errorf("mmsim: state: contact id %q missing or repeated", sc.ID)
			}
			s.contacts[sc.ID] = &contact{id: sc.ID, orgID: o.id, first: sc.FirstName, last: sc.LastName, title: sc.JobTitle, email: sc.Email,
				phone: sc.Phone, provider: sc.Provider, types: sc.Types}
			o.contacts = append(o.contacts, sc.ID)
		}
		s.orgs[o.id] = o
		s.orgSeq = append(s.orgSeq, o.id)
	}
	for _, so := range st.Orders {
		if so.ID == "" || s.orders[so.ID] != nil {
			return nil, fmt.Errorf("mmsim: state: order id %q missing or repeated", so.ID)
		}
		if s.orgs[so.OrganizationID] == nil {
			return nil, fmt.Errorf("mmsim: state: order %s: unknown organization %q", so.ID, so.OrganizationID)
		}
		for _, cid := range so.Contacts {
			if c := s.contacts[cid]; c == nil || c.orgID != so.OrganizationID {
				return nil, fmt.Errorf("mmsim: state: order %s: %q is not a contact of its organization", so.ID, cid)
			}
		}
		if len(so.Names) == 0 || len(so.DCV) == 0 {
			return nil, fmt.Errorf("mmsim: state: order %s has no names", so.ID)
		}
		csr, e := parseCSR(so.CSR)
		if e != nil {
			return nil, fmt.Errorf("mmsim: state: order %s: %s", so.ID, e.msg)
		}
		for i, der := range so.Leaves {
			if _, err := x509.ParseCertificate(der); err != nil {
				return nil, fmt.Errorf("mmsim: state: order %s: certificate %d: %w", so.ID, i, err)
			}
		}
		o := &order{id: so.ID, orgID: so.OrganizationID, certType: so.CertificateType, locale: so.Locale, contacts: so.Contacts,
			created: so.Created, status: so.Status, moveAt: so.MoveAt, reissue: so.Reissue, cn: so.CommonName, names: so.Names,
			method: so.Method, alg: so.Algorithm, rootHash: so.RootHash, csrPEM: so.CSR, pub: csr.PublicKey, delay: so.Delay,
			readyAt: so.ReadyAt, leaves: so.Leaves, approved: so.Approved, failNext: so.FailNext, checks: so.Checks}
		for _, d := range so.DCV {
			o.dcv = append(o.dcv, &domainDCV{name: d.Name, token: d.Token, ok: d.OK, next: d.Next, last: d.Last})
		}
		s.orders[o.id] = o
		s.orderSeq = append(s.orderSeq, o.id)
	}
	for _, e := range st.Ledger {
		if s.orders[e.OrderID] == nil {
			return nil, fmt.Errorf("mmsim: state: ledger entry for unknown order %s", e.OrderID)
		}
	}
	s.ledger = st.Ledger
	return s, nil
}
