package ca

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/config"
)

// Kind is one CA package's entry in cmd/certd's table of account types:
// how its configuration block is decoded and how an issuer is built from
// it. cmd/certd holds one map from type name to Kind and no per-CA code.
type Kind struct {
	// Decode decodes and validates the account block.
	Decode config.Decoder
	// New builds the account's issuer from the decoded block. It resolves
	// secrets (an unresolvable one is an error naming it) and sends
	// nothing. Nil: the type is recognised but has no issuer in this
	// release.
	New func(env Env) (Issuer, error)
}

// Env is what an issuer is built with.
type Env struct {
	// Name is the account's name in configuration.
	Name string
	// Settings is what Kind.Decode returned.
	Settings any
	// Limits are the account keys every CA type takes.
	Limits config.AccountLimits
	Logger *zap.Logger
	// Keys keeps what certd generates to act as a CA account (an ACME
	// account key), durably.
	Keys AccountKeys
	// Observe, when set, is told of every exchange with the CA: a route
	// without ids ("POST /certificates", "newOrder"), the HTTP status (0:
	// no answer) and how long it took.
	Observe func(route string, status int, d time.Duration)
}

// AccountKeys keeps CA account credentials certd generated, one per
// account name and endpoint. KeyPEM is a secret.
type AccountKeys interface {
	// LoadAccountKey returns found=false when there is none.
	LoadAccountKey(ctx context.Context, account, endpoint string) (key AccountKey, found bool, err error)
	SaveAccountKey(ctx context.Context, key AccountKey) error
}

// AccountKey is one CA account's generated credentials.
type AccountKey struct {
	Account  string
	Endpoint string
	KeyPEM   []byte
	// Ref is the CA's reference for the account (an ACME account URL).
	Ref string
	// BindingID is the external binding it was created with (an EAB kid).
	BindingID string
}
