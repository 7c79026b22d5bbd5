package sectigosim

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/certd/certd/internal/simpki"
)

// stateVersion is the format of Save's output.
const stateVersion = 1

// savedState is what Save writes: everything a restarted simulator needs
// to be the same CA to its clients. Injected faults, request counts and
// the call-limit window are not kept.
type savedState struct {
	Version int `json:"version"`
	// Root, ICA (the issuing CA) and APICA with their private keys.
	simpki.SavedCAs

	NextOrder int                  `json:"next_order"`
	NextCert  int                  `json:"next_cert"`
	Orders    []savedOrder         `json:"orders"` // in creation order
	Ledger    []LedgerEntry        `json:"ledger"`
	Listed    map[string]time.Time `json:"listed,omitempty"`
	Emails    []Email              `json:"emails,omitempty"`
}

type savedOrder struct {
	Number  string      `json:"number"`
	Product int         `json:"product"`
	Days    int         `json:"days"`
	Certs   []savedCert `json:"certs"`
}

type savedCert struct {
	ID       string        `json:"id"`
	CSR      []byte        `json:"csr"` // DER
	UV       string        `json:"unique_value"`
	Names    []string      `json:"names"`
	DCV      []savedDCV    `json:"dcv"`
	State    string        `json:"state"`
	Created  time.Time     `json:"created"`
	Delay    time.Duration `json:"delay"`
	ReadyAt  time.Time     `json:"ready_at"`
	Leaf     []byte        `json:"leaf,omitempty"` // DER
	FailNext bool          `json:"fail_next,omitempty"`
	Checks   int           `json:"checks"`
}

type savedDCV struct {
	Name   string    `json:"name"`
	Method string    `json:"method"`
	Email  string    `json:"email,omitempty"`
	OK     bool      `json:"ok"`
	Next   time.Time `json:"next"`
	Last   string    `json:"last,omitempty"`
	Mailed time.Time `json:"mailed"`
}

// Save writes the simulator's lasting state as JSON: its CAs with their
// keys, the orders (with their certificates and DCV state), the ledger,
// the approver addresses listed and the emails sent. Load reads it back.
func (s *Server) Save(w io.Writer) error {
	s.mu.Lock()
	st := savedState{Version: stateVersion, NextOrder: s.nextOrder, NextCert: s.nextCert, Ledger: slices.Clone(s.ledger), Emails: slices.Clone(s.emails)}
	if len(s.listed) > 0 {
		st.Listed = map[string]time.Time{}
		for k, v := range s.listed {
			st.Listed[k] = v
		}
	}
	for _, num := range s.orderSeq {
		o := s.orders[num]
		so := savedOrder{Number: o.number, Product: o.product, Days: o.days}
		for _, c := range o.certs {
			sc := savedCert{ID: c.id, CSR: c.csrDER, UV: c.uv, Names: slices.Clone(c.names), State: c.state, Created: c.created, Delay: c.delay,
				ReadyAt: c.readyAt, Leaf: c.leafDER, FailNext: c.failNext, Checks: c.checks}
			for _, d := range c.dcv {
				sc.DCV = append(sc.DCV, savedDCV{Name: d.name, Method: d.method, Email: d.email, OK: d.ok, Next: d.next, Last: d.last, Mailed: d.mailed})
			}
			so.Certs = append(so.Certs, sc)
		}
		st.Orders = append(st.Orders, so)
	}
	s.mu.Unlock()
	var err error
	if st.SavedCAs, err = simpki.SaveCAs(s.root, s.ica, s.apiCA); err != nil {
		return fmt.Errorf("sectigosim: %w", err)
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
// API's own TLS certificate is re-issued), orders, ledger and listed
// addresses.
func Load(r io.Reader, opts Options) (*Server, error) {
	var st savedState
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("sectigosim: reading state: %w", err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("sectigosim: state version %d, want %d", st.Version, stateVersion)
	}
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	if s.root, s.ica, s.apiCA, err = st.SavedCAs.Restore(); err != nil {
		return nil, fmt.Errorf("sectigosim: state: %w", err)
	}
	if err := s.newServerCert(); err != nil {
		return nil, err
	}
	s.nextOrder, s.nextCert = st.NextOrder, st.NextCert
	for _, so := range st.Orders {
		if so.Number == "" || s.orders[so.Number] != nil || len(so.Certs) == 0 {
			return nil, fmt.Errorf("sectigosim: state: order %q missing, repeated or without a certificate", so.Number)
		}
		o := &order{number: so.Number, product: so.Product, days: so.Days}
		for _, sc := range so.Certs {
			if sc.ID == "" || s.certs[sc.ID] != nil {
				return nil, fmt.Errorf("sectigosim: state: certificate %q missing or repeated", sc.ID)
			}
			csr, err := x509.ParseCertificateRequest(sc.CSR)
			if err != nil {
				return nil, fmt.Errorf("sectigosim: state: certificate %s: CSR: %w", sc.ID, err)
			}
			md, sh := hashes(sc.CSR)
			c := &cert{id: sc.ID, order: o, csrDER: sc.CSR, md5: md, sha: sh, uv: sc.UV, pub: csr.PublicKey, names: sc.Names, state: sc.State,
				created: sc.Created, delay: sc.Delay, readyAt: sc.ReadyAt, leafDER: sc.Leaf, failNext: sc.FailNext, checks: sc.Checks}
			for _, d := range sc.DCV {
				c.dcv = append(c.dcv, &domainDCV{name: d.Name, method: d.Method, email: d.Email, ok: d.OK, next: d.Next, last: d.Last, mailed: d.Mailed})
			}
			s.certs[c.id] = c
			o.certs = append(o.certs, c)
		}
		s.orders[o.number] = o
		s.orderSeq = append(s.orderSeq, o.number)
	}
	for _, e := range st.Ledger {
		if s.certs[e.CertificateID] == nil {
			return nil, fmt.Errorf("sectigosim: state: ledger entry for unknown certificate %s", e.CertificateID)
		}
	}
	for _, num := range s.orderSeq {
		if n, err := strconv.Atoi(num); err != nil || n >= s.nextOrder {
			return nil, fmt.Errorf("sectigosim: state: order number %s is not below the next one, %d", num, s.nextOrder)
		}
	}
	for id := range s.certs {
		if n, err := strconv.Atoi(id); err != nil || n >= s.nextCert {
			return nil, fmt.Errorf("sectigosim: state: certificate ID %s is not below the next one, %d", id, s.nextCert)
		}
	}
	s.ledger = st.Ledger
	for k, v := range st.Listed {
		s.listed[k] = v
	}
	s.emails = st.Emails
	return s, nil
}
