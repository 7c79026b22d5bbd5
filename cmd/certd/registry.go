package main

import (
	"fmt"
	"io"

	"github.com/certd/certd/ca/acme"
	"github.com/certd/certd/ca/atlas"
	"github.com/certd/certd/ca/markmonitor"
	"github.com/certd/certd/ca/reseller"
	"github.com/certd/certd/ca/sectigo"
	"github.com/certd/certd/config"
	"github.com/certd/certd/providers"
)

// accountTypes is the one table from an account's type in configuration to
// its CA package.
func accountTypes() map[string]config.Decoder {
	return map[string]config.Decoder{
		"globalsign-atlas": atlas.DecodeConfig,
		"sectigo":          sectigo.DecodeConfig,
		"markmonitor":      markmonitor.DecodeConfig,
		"reseller":         reseller.DecodeConfig,
		"acme":             acme.DecodeConfig,
	}
}

// loadOptions is what config.Load needs to decode every plug-in block.
func loadOptions() config.Options {
	return config.Options{
		Accounts: accountTypes(),
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
