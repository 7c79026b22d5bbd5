package store

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Sealer encrypts the secrets a store keeps (private keys, CA account
// keys) before they are written and decrypts them when read, so a shared
// database never holds them in the clear. aad binds a sealed value to
// its row (a key sealed for one certificate does not open as another's).
type Sealer interface {
	Seal(plain, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// sealedPrefix marks a sealed value: version 1 is AES-256-GCM with a
// random 96-bit nonce, nonce || ciphertext+tag after the prefix.
var sealedPrefix = []byte("certd-sealed:v1:")

// ErrSealed: a secret could not be opened (wrong key, altered row), or a
// sealed store holds a secret in the clear.
var ErrSealed = errors.New("store: sealed secret")

type aesGCM struct{ aead cipher.AEAD }

// NewAESGCM returns a Sealer with AES-256-GCM under key (32 bytes).
func NewAESGCM(key []byte) (Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("store: the encryption key must be 32 bytes, got %d", len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	aead, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return aesGCM{aead}, nil
}

// ParseEncryptionKey reads a 32-byte key written as base64 (standard or
// URL alphabet, padded or not) or hex, surrounding space ignored; `certd
// fleet keygen` prints one.
func ParseEncryptionKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, dec := range []func(string) ([]byte, error){
		hex.DecodeString,
		base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString,
	} {
		if k, err := dec(s); err == nil && len(k) == 32 {
			return k, nil
		}
	}
	return nil, errors.New("the encryption key must be 32 bytes written as base64 or hex (certd fleet keygen prints one)")
}

// NewEncryptionKey returns a fresh key in the form ParseEncryptionKey reads.
func NewEncryptionKey() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

func (a aesGCM) Seal(plain, aad []byte) ([]byte, error) {
	nonce := make([]byte, a.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("store: sealing: %w", err)
	}
	out := append(append(bytes.Clone(sealedPrefix), nonce...), a.aead.Seal(nil, nonce, plain, aad)...)
	return out, nil
}

func (a aesGCM) Open(sealed, aad []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(sealed, sealedPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: a secret is stored in the clear in an encrypted store", ErrSealed)
	}
	n := a.aead.NonceSize()
	if len(rest) < n {
		return nil, fmt.Errorf("%w: truncated", ErrSealed)
	}
	plain, err := a.aead.Open(nil, rest[:n], rest[n:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: it does not open with this encryption key (a different key, or an altered row)", ErrSealed)
	}
	return plain, nil
}

// IsSealed reports whether b is a sealed value.
func IsSealed(b []byte) bool { return bytes.HasPrefix(b, sealedPrefix) }

// keyAAD binds a private key to its certificate and public key.
func keyAAD(certName, publicSHA string) []byte {
	return []byte("key\x00" + certName + "\x00" + publicSHA)
}

// accountAAD binds a CA account key to its account and endpoint.
func accountAAD(account, endpoint string) []byte {
	return []byte("account\x00" + account + "\x00" + endpoint)
}

// sealCheck is what a sealed store keeps to tell, at open, whether the
// key it was given is the one it was written with.
var sealCheck = []byte("certd encryption key check")
