package resellersim

import (
	"archive/zip"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/mail"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certd/certd/internal/simpki"
)

// Order and domain states.
const (
	stPending   = "pending"
	stActive    = "active"
	stCancelled = "cancelled"

	domPending   = "pending"
	domValidated = "validated"
	domFailed    = "failed"

	dcvDNS   = "DNS"
	dcvFile  = "FILE"
	dcvEmail = "EMAIL"
)

// order is one SSL certificate object.
type order struct {
	id, plan  string
	clientRef *string
	upstream  Upstream
	status    string
	created   time.Time
	updated   time.Time
	// gen changes whenever the order's proofs change (renew), so that a
	// check started before does not apply after.
	gen         int
	issueDelay  time.Duration
	validatedAt time.Time
	csrDER      []byte
	pub         crypto.PublicKey
	names       []string
	dcvType     string
	fields      createBody
	domains     []*domainState
	token       string // DigiCert random value
	unique      string // Sectigo uniqueValue
	leafDER     []byte
	failNext    bool
	charges     []int // indexes into the ledger
}

type domainState struct {
	name       string
	method     string
	status     string
	checkUntil time.Time
	detail     string
	email      string
}

func (o *order) domain(name string) *domainState {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, d := range o.domains {
		if d.name == name {
			return d
		}
	}
	// The base name stands for its wildcard (the sample sends a domain).
	for _, d := range o.domains {
		if strings.TrimPrefix(d.name, "*.") == name {
			return d
		}
	}
	return nil
}

func (o *order) json() objectJSON {
	j := objectJSON{ID: o.id, Status: o.status, Plan: o.plan, ClientReference: o.clientRef, CommonName: o.names[0],
		Domains: slices.Clone(o.names), DCVType: o.dcvType, CreatedAt: rfc3339(o.created), UpdatedAt: rfc3339(o.updated)}
	if o.leafDER != nil {
		if c, err := x509.ParseCertificate(o.leafDER); err == nil {
			from, until := rfc3339(c.NotBefore), rfc3339(c.NotAfter)
			j.ValidFrom, j.ValidUntil = &from, &until
		}
	}
	return j
}

var hostRE = regexp.MustCompile(`^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

// parseCSR checks a CSR as the API would: full PEM with header and
// footer, a valid signature, an RSA key of at least 2048 bits or an ECDSA
// P-256/P-384 key, DNS names only. It returns the names (the common name
// first) or the message for the csr field.
func parseCSR(text string) (*x509.CertificateRequest, []string, string) {
	block, rest := pem.Decode([]byte(strings.TrimSpace(text)))
	if block == nil || (block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST") || len(bytes.TrimSpace(rest)) > 0 {
		return nil, nil, "The CSR must be the full PEM text, including the BEGIN and END CERTIFICATE REQUEST lines."
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, nil, "The CSR cannot be parsed: " + err.Error()
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, "The CSR's signature is invalid."
	}
	switch k := csr.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, nil, fmt.Sprintf("The CSR should be generated using a key of at least 2048 bits in length (got %d).", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, nil, "Only P-256 and P-384 ECDSA keys are accepted."
		}
	default:
		return nil, nil, fmt.Sprintf("Unsupported key type %T.", csr.PublicKey)
	}
	if len(csr.IPAddresses) > 0 || len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return nil, nil, "Only DNS names are accepted."
	}
	var names []string
	for _, n := range append([]string{csr.Subject.CommonName}, csr.DNSNames...) {
		n = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(n), "."))
		if n == "" || slices.Contains(names, n) {
			continue
		}
		if !hostRE.MatchString(n) {
			return nil, nil, fmt.Sprintf("%q is not a valid domain name.", n)
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil, nil, "The CSR names no domain."
	}
	return csr, names, ""
}

// checkOrderFields applies the seed's rules to a create, renew or reissue
// body for plan; it returns messages by field (nil when valid).
func checkOrderFields(b createBody, p Plan, names []string) map[string]string {
	errs := map[string]string{}
	switch b.DCVType {
	case dcvDNS, dcvFile, dcvEmail:
	case "":
		errs["dcv_type"] = "This field is required."
	default:
		errs["dcv_type"] = fmt.Sprintf("%q is not a valid choice (EMAIL, FILE or DNS).", b.DCVType)
	}
	if b.DCVType == dcvEmail && b.ApproverEmailAddress == "" {
		errs["approver_email_address"] = "Required for EMAIL domain control validation."
	}
	if b.ApproverEmailAddress != "" {
		if a, err := mail.ParseAddress(b.ApproverEmailAddress); err != nil || a.Address != b.ApproverEmailAddress {
			errs["approver_email_address"] = "Enter a valid email address."
		}
	}
	if b.DCVType == dcvFile {
		for _, n := range names {
			if strings.HasPrefix(n, "*.") {
				errs["dcv_type"] = "FILE validation is not available for wildcard names (" + n + ")."
			}
		}
	}
	if p.Validation == "ov" || p.Validation == "ev" {
		for k, v := range map[string]string{"chamber_of_commerce": b.ChamberOfCommerce, "department": b.Department,
			"approver_first_name": b.ApproverFirstName, "approver_last_name": b.ApproverLastName} {
			if strings.TrimSpace(v) == "" {
				errs[k] = "Required for OV and EV certificates."
			}
		}
	}
	if b.ClientReference != nil && len(*b.ClientReference) > 255 {
		errs["client_reference"] = "Ensure this field has no more than 255 characters."
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

func (s *Server) plan(id string) (Plan, bool) {
	p, ok := s.plans[strings.ToLower(id)]
	return p, ok
}

// charge records a charge; s.mu must be held. It returns false when the
// balance cannot pay.
func (s *Server) charge(o *order, kind string, p Plan) bool {
	if s.opts.Quota > 0 {
		paid := 0
		for _, e := range s.ledger {
			if !e.Refunded {
				paid++
			}
		}
		if paid >= s.opts.Quota {
			return false
		}
	}
	ref := ""
	if o.clientRef != nil {
		ref = *o.clientRef
	}
	s.ledger = append(s.ledger, LedgerEntry{ID: o.id, Kind: kind, Plan: p.ID, Amount: p.Price, DNSNames: slices.Clone(o.names),
		ClientReference: ref, At: s.opts.Now()})
	o.charges = append(o.charges, len(s.ledger)-1)
	return true
}

// setProofs (re)starts the order's validation for its names; s.mu must
// be held.
func (s *Server) setProofs(o *order, now time.Time) {
	o.gen++
	o.token, o.unique = randomToken(32), strings.ToUpper(randomToken(10))
	o.domains = nil
	for _, n := range o.names {
		d := &domainState{name: n, method: o.dcvType, status: domPending, checkUntil: now.Add(s.opts.CheckWindow)}
		if o.dcvType == dcvEmail {
			d.email = o.fields.ApproverEmailAddress
			s.emails = append(s.emails, Email{ID: o.id, Domain: n, Address: d.email, At: now})
		}
		o.domains = append(o.domains, d)
	}
	o.validatedAt = time.Time{}
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	var b createBody
	if !decode(w, r, &b) {
		return
	}
	p, ok := s.plan(b.Plan)
	if !ok {
		msg := "This field is required."
		if b.Plan != "" {
			msg = fmt.Sprintf("Unknown plan %q.", b.Plan)
		}
		writeFields(w, map[string]string{"plan": msg})
		return
	}
	csr, names, msg := parseCSR(b.CSR)
	if msg != "" {
		writeFields(w, map[string]string{"csr": msg})
		return
	}
	if errs := checkOrderFields(b, p, names); errs != nil {
		writeFields(w, errs)
		return
	}
	now := s.opts.Now()
	o := &order{id: newID(), plan: p.ID, clientRef: b.ClientReference, upstream: p.Upstream, status: stPending, created: now, updated: now,
		csrDER: csr.Raw, pub: csr.PublicKey, names: names, dcvType: b.DCVType, fields: b}
	s.mu.Lock()
	o.issueDelay = s.issueDelay
	if !s.charge(o, "create", p) {
		s.mu.Unlock()
		writeDetail(w, http.StatusPaymentRequired, "Insufficient balance to purchase this plan.")
		return
	}
	s.setProofs(o, now)
	s.orders[o.id] = o
	s.seq = append(s.seq, o.id)
	j := o.json()
	s.mu.Unlock()
	if s.opts.OnCreate != nil {
		go s.opts.OnCreate(o.id, slices.Clone(names))
	}
	writeJSON(w, http.StatusCreated, j)
}

// orderFor returns the order of the {id} path value, answering 404 itself.
func (s *Server) orderFor(w http.ResponseWriter, r *http.Request) *order {
	s.mu.Lock()
	o := s.orders[r.PathValue("id")]
	s.mu.Unlock()
	if o == nil {
		writeDetail(w, http.StatusNotFound, "Not found.")
	}
	return o
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	o := s.orderFor(w, r)
	if o == nil {
		return
	}
	s.progress(r.Context(), o, nil)
	s.mu.Lock()
	j := o.json()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, j)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if k != "plan" && k != "client_reference" && k != "page" {
			writeDetail(w, http.StatusBadRequest, fmt.Sprintf("Unknown query parameter %q.", k))
			return
		}
	}
	pageNo := 1
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeDetail(w, http.StatusNotFound, "Invalid page.")
			return
		}
		pageNo = n
	}
	_, byRef := q["client_reference"]
	ref, plan := q.Get("client_reference"), q.Get("plan")
	s.mu.Lock()
	var all []objectJSON
	for _, id := range s.seq {
		o := s.orders[id]
		if plan != "" && !strings.EqualFold(o.plan, plan) {
			continue
		}
		if byRef && (o.clientRef == nil || *o.clientRef != ref) {
			continue
		}
		all = append(all, o.json())
	}
	s.mu.Unlock()
	if all == nil {
		all = []objectJSON{}
	}
	if s.opts.BareList {
		writeJSON(w, http.StatusOK, all)
		return
	}
	size := s.opts.PageSize
	start := min((pageNo-1)*size, len(all))
	end := min(start+size, len(all))
	if pageNo > 1 && start >= len(all) {
		writeDetail(w, http.StatusNotFound, "Invalid page.")
		return
	}
	link := func(n int) *string {
		lq := r.URL.Query()
		lq.Set("page", strconv.Itoa(n))
		scheme := "https"
		if r.TLS == nil {
			scheme = "http"
		}
		u := scheme + "://" + r.Host + r.URL.Path + "?" + lq.Encode()
		return &u
	}
	pg := page{Count: len(all), Results: all[start:end]}
	if end < len(all) {
		pg.Next = link(pageNo + 1)
	}
	if pageNo > 1 {
		pg.Previous = link(pageNo - 1)
	}
	writeJSON(w, http.StatusOK, pg)
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	o := s.orderFor(w, r)
	if o == nil {
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if o.status == stCancelled {
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	}
	refunded := false
	if n := len(o.charges); n > 0 {
		e := &s.ledger[o.charges[n-1]]
		if !e.Refunded && now.Before(e.At.Add(s.opts.RefundWindow)) {
			e.Refunded, refunded = true, true
		}
	}
	o.status, o.updated = stCancelled, now
	o.gen++
	writeJSON(w, http.StatusOK, map[string]any{"id": o.id, "status": o.status, "refunded": refunded})
}

func (s *Server) renew(w http.ResponseWriter, r *http.Request) {
	o := s.orderFor(w, r)
	if o == nil {
		return
	}
	var rb renewBody
	if !decode(w, r, &rb) {
		return
	}
	b := rb.create()
	s.mu.Lock()
	planID, status := o.plan, o.status
	s.mu.Unlock()
	if b.Plan != "" {
		planID = b.Plan
	}
	p, ok := s.plan(planID)
	if !ok {
		writeFields(w, map[string]string{"plan": fmt.Sprintf("Unknown plan %q.", planID)})
		return
	}
	if status != stActive && status != "expired" {
		writeDetail(w, http.StatusConflict, "Only an active or expired certificate can be renewed (this one is "+status+").")
		return
	}
	csr, names, msg := parseCSR(b.CSR)
	if msg != "" {
		writeFields(w, map[string]string{"csr": msg})
		return
	}
	if errs := checkOrderFields(b, p, names); errs != nil {
		writeFields(w, errs)
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if o.status != status {
		writeDetail(w, http.StatusConflict, "The certificate changed meanwhile.")
		return
	}
	old := *o
	o.plan, o.upstream, o.csrDER, o.pub, o.names, o.dcvType, o.fields = p.ID, p.Upstream, csr.Raw, csr.PublicKey, names, b.DCVType, b
	if b.ClientReference != nil {
		o.clientRef = b.ClientReference
	}
	if !s.charge(o, "renew", p) {
		*o = old
		writeDetail(w, http.StatusPaymentRequired, "Insufficient balance to renew this plan.")
		return
	}
	o.status, o.updated, o.issueDelay = stPending, now, s.issueDelay
	s.setProofs(o, now)
	writeJSON(w, http.StatusOK, o.json())
}

func (s *Server) reissue(w http.ResponseWriter, r *http.Request) {
	o := s.orderFor(w, r)
	if o == nil {
		return
	}
	var rb reissueBody
	if !decode(w, r, &rb) {
		return
	}
	b := rb.create()
	s.mu.Lock()
	p, _ := s.plan(o.plan)
	status, validated := o.status, slices.Clone(o.names)
	s.mu.Unlock()
	if status != stActive {
		writeDetail(w, http.StatusConflict, "Only an active certificate can be reissued (this one is "+status+").")
		return
	}
	csr, names, msg := parseCSR(b.CSR)
	if msg != "" {
		writeFields(w, map[string]string{"csr": msg})
		return
	}
	for _, n := range names {
		if !slices.Contains(validated, n) {
			writeFields(w, map[string]string{"csr": fmt.Sprintf("%s is not validated for this certificate; order it instead.", n)})
			return
		}
	}
	if errs := checkOrderFields(b, p, names); errs != nil {
		writeFields(w, errs)
		return
	}
	now := s.opts.Now()
	leaf, err := issueLeaf(s.ica, csr.PublicKey, names, now, now.Add(s.opts.Validity))
	if err != nil {
		writeDetail(w, http.StatusInternalServerError, "Issuing failed.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o.status != stActive {
		writeDetail(w, http.StatusConflict, "The certificate changed meanwhile.")
		return
	}
	// Activated right away, making the current one invalid; no purchase.
	o.csrDER, o.pub, o.names, o.leafDER, o.updated = csr.Raw, csr.PublicKey, names, leaf, now
	if b.ClientReference != nil {
		o.clientRef = b.ClientReference
	}
	writeJSON(w, http.StatusOK, o.json())
}

func (s *Server) download(format string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		o := s.orderFor(w, r)
		if o == nil {
			return
		}
		s.progress(r.Context(), o, nil)
		s.mu.Lock()
		status, leaf, csrDER, cn := o.status, o.leafDER, o.csrDER, o.names[0]
		s.mu.Unlock()
		if format != "csr" && (status != stActive || leaf == nil) {
			writeDetail(w, http.StatusConflict, "The certificate is not issued (status "+status+").")
			return
		}
		crt := []byte(simpki.PEMCert(leaf))
		bundle := []byte(s.ica.PEM + s.root.PEM)
		var out []byte
		name := strings.NewReplacer("*", "wildcard", ".", "_").Replace(cn)
		switch format {
		case "crt":
			out, name = crt, name+".crt"
		case "ca":
			out, name = bundle, name+".ca-bundle"
		case "csr":
			out, name = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}), name+".csr"
		case "pkcs7":
			der, err := pkcs7(leaf, s.ica.Cert.Raw, s.root.Cert.Raw)
			if err != nil {
				writeDetail(w, http.StatusInternalServerError, "Encoding failed.")
				return
			}
			out, name = pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: der}), name+".p7b"
		case "zip":
			var buf bytes.Buffer
			zw := zip.NewWriter(&buf)
			for _, f := range []struct {
				name string
				data []byte
			}{{name + ".crt", crt}, {name + ".ca-bundle", bundle}} {
				fw, err := zw.Create(f.name)
				if err == nil {
					_, err = fw.Write(f.data)
				}
				if err != nil {
					writeDetail(w, http.StatusInternalServerError, "Encoding failed.")
					return
				}
			}
			if err := zw.Close(); err != nil {
				writeDetail(w, http.StatusInternalServerError, "Encoding failed.")
				return
			}
			out, name = buf.Bytes(), name+".zip"
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out)
	}
}

// maybeIssue turns a proved order active once its delay has passed; s.mu
// must be held.
func (s *Server) maybeIssue(o *order) {
	if o.status != stPending {
		return
	}
	for _, d := range o.domains {
		if d.status != domValidated {
			return
		}
	}
	now := s.opts.Now()
	if o.validatedAt.IsZero() {
		o.validatedAt = now
	}
	if now.Before(o.validatedAt.Add(o.issueDelay)) {
		return
	}
	leaf, err := issueLeaf(s.ica, o.pub, o.names, now, now.Add(s.opts.Validity))
	if err != nil {
		return // tried again at the next look
	}
	o.leafDER, o.status, o.updated = leaf, stActive, now
}
