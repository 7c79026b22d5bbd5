package simpki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// SavedAuthority is an Authority as a simulator's saved state holds it.
type SavedAuthority struct {
	Cert string `json:"cert"` // PEM
	Key  string `json:"key"`  // PEM PKCS#8
}

// Save is a with its key, for a simulator's saved state.
func (a *Authority) Save() (SavedAuthority, error) {
	der, err := x509.MarshalPKCS8PrivateKey(a.Key)
	if err != nil {
		return SavedAuthority{}, err
	}
	return SavedAuthority{Cert: a.PEM, Key: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}, nil
}

// Restore is the authority sa holds, which must be a CA certificate with
// the private key of its public key. what names it in errors, which the
// simulator prefixes with its own name.
func (sa SavedAuthority) Restore(what string) (*Authority, error) {
	cb, _ := pem.Decode([]byte(sa.Cert))
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", what)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	kb, _ := pem.Decode([]byte(sa.Key))
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PEM PKCS#8 key", what)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s key: %w", what, err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s key %T cannot sign", what, k)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s key does not match its certificate", what)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", what)
	}
	return &Authority{Cert: cert, Key: key, PEM: PEMCert(cb.Bytes)}, nil
}

// SavedCAs are the authorities every simulator keeps across a restart:
// the root, the issuing CA (which the root signed) and the CA of the
// API's own TLS certificate. A simulator's saved state may embed it: its
// JSON fields are root, ica and api_ca.
type SavedCAs struct {
	Root  SavedAuthority `json:"root"`
	ICA   SavedAuthority `json:"ica"`
	APICA SavedAuthority `json:"api_ca"`
}

// SaveCAs saves root, ica and apiCA.
func SaveCAs(root, ica, apiCA *Authority) (SavedCAs, error) {
	var sc SavedCAs
	for _, p := range []struct {
		dst *SavedAuthority
		a   *Authority
	}{{&sc.Root, root}, {&sc.ICA, ica}, {&sc.APICA, apiCA}} {
		var err error
		if *p.dst, err = p.a.Save(); err != nil {
			return SavedCAs{}, fmt.Errorf("saving %s: %w", p.a.Cert.Subject.CommonName, err)
		}
	}
	return sc, nil
}

// Restore is the root, issuing CA and API CA sc holds, each checked as by
// SavedAuthority.Restore, the issuing CA's certificate also checked to
// be signed by the root. Errors are for the simulator to prefix with its
// own name.
func (sc SavedCAs) Restore() (root, ica, apiCA *Authority, err error) {
	if root, err = sc.Root.Restore("root"); err != nil {
		return nil, nil, nil, err
	}
	if ica, err = sc.ICA.Restore("issuing CA"); err != nil {
		return nil, nil, nil, err
	}
	if err := ica.Cert.CheckSignatureFrom(root.Cert); err != nil {
		return nil, nil, nil, fmt.Errorf("the issuing CA is not signed by the root: %w", err)
	}
	if apiCA, err = sc.APICA.Restore("API CA"); err != nil {
		return nil, nil, nil, err
	}
	return root, ica, apiCA, nil
}
