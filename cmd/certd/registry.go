package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/acme"
	"github.com/certd/certd/ca/atlas"
	"github.com/certd/certd/ca/markmonitor"
	"github.com/certd/certd/ca/reseller"
	"github.com/certd/certd/ca/sectigo"
	"github.com/certd/certd/config"
	"github.com/certd/certd/providers"
	"github.com/certd/certd/store"
)

// caKinds is the one table from an account's type in configuration to its
// CA package: how its block is decoded and its issuer built.
func caKinds() map[string]ca.Kind {
	return map[string]ca.Kind{
		"globalsign-atlas": atlas.Kind(),
		"sectigo":          sectigo.Kind(),
		"markmonitor":      markmonitor.Kind(),
		"reseller":         reseller.Kind(),
		"acme":             acme.Kind(),
	}
}

// loadOptions is what config.Load needs to decode every plug-in block.
func loadOptions() config.Options {
	decoders := map[string]config.Decoder{}
	for name, k := range caKinds() {
		decoders[name] = k.Decode
	}
	return config.Options{
		Accounts: decoders,
		DNS:      providers.Decoders(providers.DNSTypes()),
		HTTP:     providers.Decoders(providers.HTTPTypes()),
	}
}

// loadConfig loads and validates the configuration at path.
func loadConfig(path string) (*config.Config, error) {
	return config.Load(path, loadOptions())
}

// loadOrReport loads the configuration, printing every error to stderr
// when it is refused.
func loadOrReport(path string, stderr io.Writer) (*config.Config, bool) {
	cfg, err := loadConfig(path)
	if err != nil {
		fmt.Fprintf(stderr, "certd: configuration %s refused:\n%v\n", path, err)
		return nil, false
	}
	return cfg, true
}

// openFromConfig loads the configuration and opens its store for reading
// (no daemon lock), printing errors; code is the exit code when !ok.
func openFromConfig(path string, stderr io.Writer) (cfg *config.Config, st store.Store, code int, ok bool) {
	cfg, ok = loadOrReport(path, stderr)
	if !ok {
		return nil, nil, exitUsage, false
	}
	st, err := openConfiguredStore(context.Background(), cfg, false)
	if err != nil {
		fmt.Fprintf(stderr, "certd: %v\n", err)
		return nil, nil, exitStore, false
	}
	return cfg, st, exitOK, true
}

// allValid reports whether every named certificate is valid in the store
// at dbPath (false if the store cannot be read yet).
func allValid(dbPath string, names []string) bool {
	if _, err := os.Stat(dbPath); err != nil {
		return false
	}
	st, err := store.Open(context.Background(), dbPath, store.Options{})
	if err != nil {
		return false
	}
	defer st.Close()
	for _, n := range names {
		c, err := st.GetCertificate(context.Background(), n)
		if err != nil || c.State != store.StateValid {
			return false
		}
	}
	return true
}
