package atlassim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certd/certd/internal/simpki"
)

// parsePublicKey reads the public_key field as the policy's key_format
// says: a PEM SPKI (PKCS8) or a PEM CSR (PKCS10), whose signature must
// verify.
func (s *Server) parsePublicKey(field string) (crypto.PublicKey, []byte, error) {
	block, rest := pem.Decode([]byte(field))
	if block == nil || len(strings.TrimSpace(string(rest))) != 0 {
		return nil, nil, fmt.Errorf("public_key must be exactly one PEM block")
	}
	switch s.opts.Policy.PublicKey.KeyFormat {
	case "PKCS10":
		if block.Type != "CERTIFICATE REQUEST" {
			return nil, nil, fmt.Errorf("public_key must be a PEM CSR for this policy, got %s", block.Type)
		}
		csr, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("public_key: %v", err)
		}
		if err := csr.CheckSignature(); err != nil {
			return nil, nil, fmt.Errorf("public_key: CSR signature: %v", err)
		}
		return csr.PublicKey, csr.RawSubjectPublicKeyInfo, nil
	default:
		if block.Type != "PUBLIC KEY" {
			return nil, nil, fmt.Errorf("public_key must be a PEM PUBLIC KEY (SPKI) for this policy, got %s", block.Type)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("public_key: %v", err)
		}
		return pub, block.Bytes, nil
	}
}

// checkKey enforces key_type, allowed_lengths and the proof of possession.
func (s *Server) checkKey(pub crypto.PublicKey, spki []byte, sigB64 string) map[string]string {
	p := s.opts.Policy.PublicKey
	var typ string
	var bits int
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		typ, bits = "ECDSA", k.Curve.Params().BitSize
	case *rsa.PublicKey:
		typ, bits = "RSA", k.N.BitLen()
	default:
		return map[string]string{"public_key": fmt.Sprintf("unsupported key type %T", pub)}
	}
	if typ != p.KeyType || !slices.Contains(p.AllowedLengths, bits) {
		return map[string]string{"public_key": fmt.Sprintf("%s-%d is not allowed: policy wants %s with lengths %v", typ, bits, p.KeyType, p.AllowedLengths)}
	}
	switch s.opts.Policy.PublicKeySignature {
	case "REQUIRED":
		if sigB64 == "" {
			return map[string]string{"public_key_signature": "required by policy"}
		}
	case "FORBIDDEN":
		if sigB64 != "" {
			return map[string]string{"public_key_signature": "forbidden by policy"}
		}
		return nil
	}
	if sigB64 == "" {
		return nil
	}
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil {
		return map[string]string{"public_key_signature": "not standard base64"}
	}
	digest := sha256.Sum256(spki)
	ok := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, digest[:], sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil
	}
	if !ok {
		return map[string]string{"public_key_signature": "does not verify over the SubjectPublicKeyInfo with SHA-256"}
	}
	return nil
}

// checkRequest enforces the validation policy p on a certificate request.
// An empty san.dns_names list admits no name.
func checkRequest(p *Policy, req *certRequest, now time.Time) (notBefore, notAfter time.Time, names []string, errs map[string]string) {
	errs = map[string]string{}
	nb := time.Unix(req.Validity.NotBefore, 0)
	if req.Validity.NotBefore == 0 {
		errs["validity.not_before"] = "required"
	} else if nb.Before(now.Add(-time.Duration(p.Validity.NotBeforeNegativeSkew)*time.Second)) || nb.After(now.Add(time.Duration(p.Validity.NotBeforePositiveSkew)*time.Second)) {
		errs["validity.not_before"] = fmt.Sprintf("outside the allowed skew of now (-%ds/+%ds)", p.Validity.NotBeforeNegativeSkew, p.Validity.NotBeforePositiveSkew)
	}
	na := nb.Add(time.Duration(p.Validity.SecondsMax) * time.Second)
	if req.Validity.NotAfter != 0 {
		na = time.Unix(req.Validity.NotAfter, 0)
		if life := na.Sub(nb); life < time.Duration(p.Validity.SecondsMin)*time.Second || life > time.Duration(p.Validity.SecondsMax)*time.Second {
			errs["validity.not_after"] = fmt.Sprintf("lifetime %s outside [%ds, %ds]", life, p.Validity.SecondsMin, p.Validity.SecondsMax)
		}
	}
	for key, v := range req.SubjectDN {
		sp, known := p.SubjectDN[key]
		str, isString := v.(string)
		switch {
		case !known || sp.Presence == "FORBIDDEN":
			errs["subject_dn."+key] = "forbidden by policy"
		case sp.Presence == "STATIC":
			errs["subject_dn."+key] = "static: set by the CA from the account's identity, must not be sent"
		case !isString:
			errs["subject_dn."+key] = "must be a string"
		case sp.Format != "" && !regexp.MustCompile(sp.Format).MatchString(str):
			errs["subject_dn."+key] = fmt.Sprintf("%q does not match %s", str, sp.Format)
		}
	}
	for key, sp := range p.SubjectDN {
		if _, ok := req.SubjectDN[key]; sp.Presence == "REQUIRED" && !ok {
			errs["subject_dn."+key] = "required by policy"
		}
	}
	if req.SAN != nil {
		names = req.SAN.DNSNames
		if len(req.SAN.Emails)+len(req.SAN.IPAddresses)+len(req.SAN.URIs) > 0 {
			errs["san"] = "only dns_names are allowed by this policy"
		}
	}
	lp := p.SAN.DNSNames
	if len(names) < lp.MinCount || len(names) > lp.MaxCount {
		errs["san.dns_names"] = fmt.Sprintf("%d names; policy allows %d to %d", len(names), lp.MinCount, lp.MaxCount)
	}
	var list []*regexp.Regexp
	for _, pat := range lp.List {
		list = append(list, regexp.MustCompile(pat))
	}
	for i, n := range names {
		matched := false
		for _, re := range list {
			matched = matched || re.MatchString(n)
		}
		if !matched {
			errs[fmt.Sprintf("san.dns_names[%d]", i)] = fmt.Sprintf("%q matches no entry of the policy list", n)
		}
	}
	if cn, _ := req.SubjectDN["common_name"].(string); cn != "" && !slices.Contains(names, cn) {
		errs["subject_dn.common_name"] = "must be one of san.dns_names"
	}
	if len(req.ExtendedKeyUsages) > 0 && p.ExtendedKeyUsages.EKUs.Static {
		errs["extended_key_usages"] = "static: set by the CA"
	}
	if len(req.CustomExtensions) > 0 || len(req.Signature) > 0 {
		errs["custom_extensions"] = "not allowed by this policy"
	}
	return nb, na, names, errs
}

// covered reports whether a verified, unexpired claim covers name; s.mu
// must be held.
func (s *Server) covered(name string, now time.Time) bool {
	base := strings.TrimPrefix(name, "*.")
	for _, c := range s.claims {
		if c.status != "VERIFIED" || !now.Before(c.expires) {
			continue
		}
		if base == c.domain || strings.HasSuffix(base, "."+c.domain) {
			return true
		}
	}
	return false
}

// uncovered are the san.dns_names errors of the names no claim covers;
// s.mu must be held.
func (s *Server) uncovered(names []string, now time.Time) map[string]string {
	errs := map[string]string{}
	for i, n := range names {
		if !s.covered(n, now) {
			errs[fmt.Sprintf("san.dns_names[%d]", i)] = n + " is not covered by a verified domain claim"
		}
	}
	return errs
}

func (s *Server) createCertificate(w http.ResponseWriter, r *http.Request) {
	var req certRequest
	if !decode(w, r, &req) {
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	pol := s.policy(now)
	s.mu.Unlock()
	nb, na, names, errs := checkRequest(pol, &req, now)
	pub, spki, err := s.parsePublicKey(req.PublicKey)
	if err != nil {
		errs["public_key"] = err.Error()
	} else {
		for k, v := range s.checkKey(pub, spki, req.PublicKeySignature) {
			errs[k] = v
		}
	}
	if len(errs) > 0 {
		writeProblemErrors(w, http.StatusUnprocessableEntity, "Request does not comply with the validation policy", errs)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if errs := s.uncovered(names, now); len(errs) > 0 {
		writeProblemErrors(w, http.StatusUnprocessableEntity, "Domain validation missing", errs)
		return
	}
	if s.quota <= 0 {
		writeProblem(w, http.StatusPaymentRequired, "Quota Reached")
		return
	}
	cn, _ := req.SubjectDN["common_name"].(string)
	c, err := s.issue(r, pub, spki, cn, names, nb, na, "")
	if err != nil {
		writeProblem(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Location", s.location(r, "/certificates/"+c.serial))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// issue signs and records a certificate, rotating the issuing CA when due;
// rekeyOf is the serial of the certificate a rekey replaces ("" for a new
// order). s.mu must be held.
func (s *Server) issue(r *http.Request, pub crypto.PublicKey, spki []byte, cn string, names []string, nb, na time.Time, rekeyOf string) (*certificate, error) {
	if s.opts.RotateEvery > 0 && s.issued >= s.opts.RotateEvery {
		if err := s.rotate(); err != nil {
			return nil, err
		}
	}
	serialInt, err := simpki.NewSerial()
	if err != nil {
		return nil, err
	}
	serial := fmt.Sprintf("%X", serialInt)
	der, err := s.ica.IssueLeaf(serialInt, pub, cn, names, nb, na)
	if err != nil {
		return nil, err
	}
	now := s.opts.Now()
	c := &certificate{serial: serial, pem: strings.TrimSpace(simpki.PEMCert(der)), ready: now.Add(s.opts.IssueDelay), status: "ISSUED",
		updated: now, notBefore: nb, notAfter: na, names: slices.Clone(names), cn: cn, created: now}
	s.certs[serial] = c
	s.order = append(s.order, serial)
	s.issued++
	if s.quota != int(^uint(0)>>1) {
		s.quota--
	}
	subject := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		subject = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	s.ledger = append(s.ledger, LedgerEntry{Serial: serial, DNSNames: slices.Clone(names), PublicKey: slices.Clone(spki), At: now,
		Rekey: rekeyOf != "", RekeyOf: rekeyOf, ClientCert: subject})
	return c, nil
}

func (s *Server) certFor(w http.ResponseWriter, r *http.Request) *certificate {
	serial := r.PathValue("serial")
	s.mu.Lock()
	c := s.certs[serial]
	s.mu.Unlock()
	if c == nil {
		writeProblem(w, http.StatusNotFound, "Certificate not found")
	}
	return c
}

func (s *Server) getCertificate(w http.ResponseWriter, r *http.Request) {
	c := s.certFor(w, r)
	if c == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.status == "REJECTED" {
		writeProblem(w, http.StatusUnprocessableEntity, "CA validation error")
		return
	}
	if s.opts.Now().Before(c.ready) {
		writeJSON(w, http.StatusAccepted, problem{Description: "Operation in progress"})
		return
	}
	writeJSON(w, http.StatusOK, certJSON{Certificate: c.pem, Status: c.status, UpdatedAt: c.updated.Unix()})
}

var revocationReasons = []string{"unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation", "privilegeWithdrawn"}

func (s *Server) revokeCertificate(w http.ResponseWriter, r *http.Request) {
	c := s.certFor(w, r)
	if c == nil {
		return
	}
	var req revokeRequest
	if !decode(w, r, &req) {
		return
	}
	if !slices.Contains(revocationReasons, req.RevocationReason) {
		writeProblemErrors(w, http.StatusUnprocessableEntity, "Invalid revocation reason", map[string]string{"revocation_reason": strings.Join(revocationReasons, ", ")})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.status != "ISSUED" || s.opts.Now().Before(c.ready) {
		writeProblem(w, http.StatusConflict, "Certificate already revoked, rejected or pending issuance")
		return
	}
	now := s.opts.Now()
	c.status, c.updated, c.revokedAt = "REVOKED", now, now
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) rekeyCertificate(w http.ResponseWriter, r *http.Request) {
	orig := s.certFor(w, r)
	if orig == nil {
		return
	}
	var req rekeyRequest
	if !decode(w, r, &req) {
		return
	}
	pub, spki, err := s.parsePublicKey(req.PublicKey)
	if err != nil {
		writeProblemErrors(w, http.StatusUnprocessableEntity, "Invalid public key", map[string]string{"public_key": err.Error()})
		return
	}
	if errs := s.checkKey(pub, spki, req.PublicKeySignature); len(errs) > 0 {
		writeProblemErrors(w, http.StatusUnprocessableEntity, "Request does not comply with the validation policy", errs)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	if orig.status != "ISSUED" || now.Before(orig.ready) || !now.Before(orig.notAfter) {
		writeProblem(w, http.StatusConflict, "The original certificate must be active")
		return
	}
	// A rekey is an issuance: the names must still be validated.
	if errs := s.uncovered(orig.names, now); len(errs) > 0 {
		writeProblemErrors(w, http.StatusUnprocessableEntity, "Domain validation missing", errs)
		return
	}
	if s.quota <= 0 {
		writeProblem(w, http.StatusPaymentRequired, "Quota Reached")
		return
	}
	c, err := s.issue(r, pub, spki, orig.cn, orig.names, now, orig.notAfter, orig.serial)
	if err != nil {
		writeProblem(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Location", s.location(r, "/certificates/"+c.serial))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) trustChain(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	chain := []string{strings.TrimSpace(s.ica.PEM), strings.TrimSpace(s.root.PEM)}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, chain)
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	kind := r.PathValue("kind")
	if kind != "issued" && kind != "revoked" && kind != "expiring" {
		writeProblem(w, http.StatusNotFound, "Not found")
		return
	}
	q := r.URL.Query()
	page, perPage, ok := paging(w, q)
	if !ok {
		return
	}
	now := s.opts.Now()
	from, to := now.Add(-10*time.Minute), now
	if kind == "expiring" {
		from, to = now, now.Add(30*24*time.Hour)
	}
	for _, p := range []struct {
		key string
		dst *time.Time
	}{{"from", &from}, {"to", &to}} {
		if v := q.Get(p.key); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				writeProblem(w, http.StatusUnprocessableEntity, p.key+" must be Unix seconds")
				return
			}
			*p.dst = time.Unix(n, 0)
		}
	}
	if to.Sub(from) > 30*24*time.Hour || to.Before(from) {
		writeProblem(w, http.StatusUnprocessableEntity, "the window from..to must be at most 30 days")
		return
	}
	s.mu.Lock()
	type entry struct {
		at time.Time
		statEntry
	}
	var found []entry
	for _, serial := range s.order {
		c := s.certs[serial]
		issuedAt, issued := s.issuedAt(c, now)
		if !issued {
			continue
		}
		at := map[string]time.Time{"issued": issuedAt, "revoked": c.revokedAt, "expiring": c.notAfter}[kind]
		if at.IsZero() || at.Before(from) || at.After(to) {
			continue
		}
		found = append(found, entry{at, statEntry{SerialNumber: serial, NotBefore: c.notBefore.Unix(), NotAfter: c.notAfter.Unix()}})
	}
	s.mu.Unlock()
	slices.SortStableFunc(found, func(a, b entry) int { return a.at.Compare(b.at) })
	out := make([]statEntry, len(found))
	for i, e := range found {
		out[i] = e.statEntry
	}
	writePage(w, r, out, page, perPage)
}

// issuedAt is when c counts as issued in the reports, and whether it does
// yet: once it is ready (or at once, with StatsListPending), never when
// rejected. s.mu must be held.
func (s *Server) issuedAt(c *certificate, now time.Time) (time.Time, bool) {
	switch {
	case c.status == "REJECTED":
		return time.Time{}, false
	case s.opts.StatsListPending:
		return c.created, true
	case now.Before(c.ready):
		return time.Time{}, false
	}
	return c.ready, true
}

func (s *Server) counters(w http.ResponseWriter, r *http.Request) {
	kind := r.PathValue("kind")
	s.mu.Lock()
	now := s.opts.Now()
	n := 0
	for _, c := range s.certs {
		_, issued := s.issuedAt(c, now)
		if kind == "issued" && issued || kind == "revoked" && c.status == "REVOKED" {
			n++
		}
	}
	s.mu.Unlock()
	if kind != "issued" && kind != "revoked" {
		writeProblem(w, http.StatusNotFound, "Not found")
		return
	}
	writeJSON(w, http.StatusOK, value{Value: n})
}

func (s *Server) quotas(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	q := s.quota
	s.mu.Unlock()
	if q == int(^uint(0)>>1) {
		q = 1_000_000 // "unlimited" as a number a client can show
	}
	writeJSON(w, http.StatusOK, value{Value: q})
}
