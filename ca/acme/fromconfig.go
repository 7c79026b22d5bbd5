package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/internal/pemutil"
	"go.uber.org/zap"
)

// Kind is the acme entry of certd's account types.
func Kind() ca.Kind {
	return ca.Kind{Decode: DecodeConfig, New: func(env ca.Env) (ca.Issuer, error) {
		return NewFromConfig(env.Name, env.Settings.(*Config), keyStore{env.Keys}, env.Logger, env.Observe, env.Limits.RequestTimeout.D())
	}}
}

// keyStore keeps account keys in the caller's ca.AccountKeys.
type keyStore struct{ k ca.AccountKeys }

func (s keyStore) LoadAccount(ctx context.Context, name, directory string) (AccountRecord, bool, error) {
	k, found, err := s.k.LoadAccountKey(ctx, name, directory)
	if err != nil || !found {
		return AccountRecord{}, false, err
	}
	return AccountRecord{Name: k.Account, Directory: k.Endpoint, KeyPEM: k.KeyPEM, URL: k.Ref, EABKeyID: k.BindingID}, true, nil
}

func (s keyStore) SaveAccount(ctx context.Context, r AccountRecord) error {
	return s.k.SaveAccountKey(ctx, ca.AccountKey{Account: r.Name, Endpoint: r.Directory, KeyPEM: r.KeyPEM, Ref: r.URL, BindingID: r.EABKeyID})
}

// NewFromConfig builds an Issuer from an account block: it reads the
// trust files and resolves the EAB key (a secret reference). timeout
// bounds one HTTP exchange (the account's request_timeout; 0: 60s).
func NewFromConfig(name string, c *Config, accounts AccountStore, log *zap.Logger, observe func(route string, status int, d time.Duration),
	timeout time.Duration) (*Issuer, error) {
	if timeout <= 0 {
		timeout = 60 * time.Second // the account's request_timeout, unset
	}
	opts := Options{Name: name, Directory: c.DirectoryURL(), Email: c.Email, Accounts: accounts, Logger: log, Observe: observe,
		FinalizeWait: c.FinalizeWait.D(), Profile: c.Profile, ProfileRequired: c.Required()}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Many certificates are worked at once against one server: keep
	// their connections instead of a TLS handshake per request.
	tr.MaxIdleConnsPerHost = 64
	if c.CA != "" {
		certs, err := readPEMCerts(c.CA)
		if err != nil {
			return nil, fmt.Errorf("acme: ca: %w", err)
		}
		pool := x509.NewCertPool()
		for _, cert := range certs {
			pool.AddCert(cert)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	opts.HTTPClient = &http.Client{Transport: tr, Timeout: timeout}
	if c.Roots != "" {
		roots, err := readPEMCerts(c.Roots)
		if err != nil {
			return nil, fmt.Errorf("acme: roots: %w", err)
		}
		opts.Roots = roots
	}
	if c.EAB != nil {
		v, err := c.EAB.HMACKey.Resolve()
		if err != nil {
			return nil, err
		}
		key, err := DecodeMACKey(v.Reveal())
		if err != nil {
			return nil, fmt.Errorf("acme: eab.hmac_key (%s): %w", c.EAB.HMACKey, err)
		}
		opts.EAB = &EABKey{KeyID: c.EAB.KID, MACKey: key}
	}
	return New(opts)
}

func readPEMCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := pemutil.Certificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}
