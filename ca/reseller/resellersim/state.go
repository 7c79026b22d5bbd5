package resellersim

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
// to be the same CA to its clients. Injected faults, request counts and
// checks under way are not kept.
type savedState struct {
	Version int `json:"version"`
	// Root, ICA (the issuing CA) and APICA with their private keys.
	simpki.SavedCAs

	Orders []savedOrder  `json:"orders"` // in creation order
	Ledger []LedgerEntry `json:"ledger"`
	Emails []Email       `json:"emails,omitempty"`
}

type savedOrder struct {
	ID              string        `json:"id"`
	Plan            string        `json:"plan"`
	ClientReference *string       `json:"client_reference,omitempty"`
	Upstream        Upstream      `json:"upstream"`
	Status          string        `json:"status"`
	Created         time.Time     `json:"created"`
	Updated         time.Time     `json:"updated"`
	IssueDelay      time.Duration `json:"issue_delay"`
	ValidatedAt     time.Time     `json:"validated_at"`
	CSR             []byte        `json:"csr"` // DER
	Names           []string      `json:"names"`
	DCVType         string        `json:"dcv_type"`
	Fields          createBody    `json:"fields"` // the last create or renew body
	Domains         []savedDomain `json:"domains"`
	Token           string        `json:"token"`          // DigiCert random value
	Unique          string        `json:"unique"`         // Sectigo uniqueValue
	Leaf            []byte        `json:"leaf,omitempty"` // DER
	FailNext        bool          `json:"fail_next,omitempty"`
}

type savedDomain struct {
	Name       string    `json:"name"`
	Method     string    `json:"method"`
	Status     string    `json:"status"`
	CheckUntil time.Time `json:"check_until"`
	Detail     string    `json:"detail,omitempty"`
	Email      string    `json:"email,omitempty"`
}

// Save writes the simulator's lasting state as JSON: its CAs with their
// keys, the SSL certificate objects (with their status, names, CSR,
// certificate, proofs and validation state), the ledger and the emails
// sent. Load reads it back.
func (s *Server) Save(w io.Writer) error {
	s.mu.Lock()
	st := savedState{Version: stateVersion, Ledger: make([]LedgerEntry, len(s.ledger)), Emails: slices.Clone(s.emails)}
	for i, e := range s.ledger {
		e.DNSNames = slices.Clone(e.DNSNames)
		st.Ledger[i] = e
	}
	for _, id := range s.seq {
		o := s.orders[id]
		so := savedOrder{ID: o.id, Plan: o.plan, ClientReference: o.clientRef, Upstream: o.upstream, Status: o.status, Created: o.created,
			Updated: o.updated, IssueDelay: o.issueDelay, ValidatedAt: o.validatedAt, CSR: o.csrDER, Names: slices.Clone(o.names),
			DCVType: o.dcvType, Fields: o.fields, Token: o.token, Unique: o.unique, Leaf: o.leafDER, FailNext: o.failNext}
		for _, d := range o.domains {
			so.Domains = append(so.Domains, savedDomain{Name: d.name, Method: d.method, Status: d.status, CheckUntil: d.checkUntil,
				Detail: d.detail, Email: d.email})
		}
		st.Orders = append(st.Orders, so)
	}
	s.mu.Unlock()
	var err error
	if st.SavedCAs, err = simpki.SaveCAs(s.root, s.ica, s.apiCA); err != nil {
		return fmt.Errorf("resellersim: %w", err)
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
// API's own TLS certificate is re-issued from the API CA), objects,
// ledger and emails. opts is the configuration (addresses, delays,
// windows, quota, plans): nothing of the saved simulator's options is
// kept. The quota counts the saved charges; an object whose plan opts no
// longer sells can be renewed only into another plan.
func Load(r io.Reader, opts Options) (*Server, error) {
	var st savedState
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("resellersim: reading state: %w", err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("resellersim: state version %d, want %d", st.Version, stateVersion)
	}
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	if s.root, s.ica, s.apiCA, err = st.SavedCAs.Restore(); err != nil {
		return nil, fmt.Errorf("resellersim: state: %w", err)
	}
	if err := s.newServerCert(); err != nil {
		return nil, err
	}
	for _, so := range st.Orders {
		if so.ID == "" || s.orders[so.ID] != nil {
			return nil, fmt.Errorf("resellersim: state: object id %q missing or repeated", so.ID)
		}
		if len(so.Names) == 0 || len(so.Domains) == 0 {
			return nil, fmt.Errorf("resellersim: state: object %s has no names", so.ID)
		}
		if so.Upstream != UpstreamSectigo && so.Upstream != UpstreamDigiCert {
			return nil, fmt.Errorf("resellersim: state: object %s: unknown upstream %q", so.ID, so.Upstream)
		}
		csr, err := x509.ParseCertificateRequest(so.CSR)
		if err != nil {
			return nil, fmt.Errorf("resellersim: state: object %s: CSR: %w", so.ID, err)
		}
		if so.Leaf != nil {
			if _, err := x509.ParseCertificate(so.Leaf); err != nil {
				return nil, fmt.Errorf("resellersim: state: object %s: certificate: %w", so.ID, err)
			}
		}
		o := &order{id: so.ID, plan: so.Plan, clientRef: so.ClientReference, upstream: so.Upstream, status: so.Status, created: so.Created,
			updated: so.Updated, issueDelay: so.IssueDelay, validatedAt: so.ValidatedAt, csrDER: so.CSR, pub: csr.PublicKey, names: so.Names,
			dcvType: so.DCVType, fields: so.Fields, token: so.Token, unique: so.Unique, leafDER: so.Leaf, failNext: so.FailNext}
		for _, d := range so.Domains {
			o.domains = append(o.domains, &domainState{name: d.Name, method: d.Method, status: d.Status, checkUntil: d.CheckUntil,
				detail: d.Detail, email: d.Email})
		}
		s.orders[o.id] = o
		s.seq = append(s.seq, o.id)
	}
	// Each object's charges (which a deletion may refund) are its ledger
	// entries, in order.
	for i, e := range st.Ledger {
		o := s.orders[e.ID]
		if o == nil {
			return nil, fmt.Errorf("resellersim: state: ledger entry for unknown object %s", e.ID)
		}
		if e.Kind != "create" && e.Kind != "renew" {
			return nil, fmt.Errorf("resellersim: state: ledger entry %d: unknown kind %q", i, e.Kind)
		}
		o.charges = append(o.charges, i)
	}
	s.ledger = st.Ledger
	s.emails = st.Emails
	return s, nil
}
