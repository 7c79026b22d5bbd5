package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/internal/logkey"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/store"
)

// Per-host keys. An account with per_host_keys buys one certificate for
// the fleet (the "fleet's certificate", issued by whichever host holds its
// lease, its key sealed in the store and never deployed), and every host
// lists a certificate of its own, HostCertName(name, host): the same
// names, a key generated on the host and kept only in its KeyDir, issued
// as a reissue (ca.Reissuer) of the fleet's current order, which costs
// nothing. A host's certificate follows the fleet's: reissued when the
// fleet's is renewed, never bought on its own.

// hostKeyPrefix marks a private key kept on a host, not in the store: the
// store's row holds the prefix and the key's public hash only.
const hostKeyPrefix = "host-local:"

// writeHostKey writes keyPEM to dir, durably (file and directory synced),
// 0600 in a 0700 directory, and returns what the store keeps instead.
func writeHostKey(dir, publicSHA string, keyPEM []byte) ([]byte, error) {
	if dir == "" {
		return nil, errors.New("per-host keys need a key directory (fleet.key_dir)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("the host's key directory: %w", err)
	}
	path := filepath.Join(dir, publicSHA+".pem")
	tmp, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return nil, fmt.Errorf("writing a host key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("writing a host key: %w", err)
	}
	if _, err := tmp.Write(keyPEM); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("writing a host key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("writing a host key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("writing a host key: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("writing a host key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return nil, fmt.Errorf("writing a host key: %w", err)
		}
	}
	return []byte(hostKeyPrefix + publicSHA), nil
}

// readKey returns k's PEM: from the store, or from this host's key
// directory for a key kept on its host.
func readKey(dir string, k store.PrivateKey) ([]byte, error) {
	rest, ok := bytes.CutPrefix(k.PEM, []byte(hostKeyPrefix))
	if !ok {
		return k.PEM, nil
	}
	sha := string(rest)
	if dir == "" || strings.ContainsAny(sha, "/.") {
		return nil, fmt.Errorf("private key %d of %s is kept on the host that made it, not in the store", k.ID, k.CertName)
	}
	b, err := os.ReadFile(filepath.Join(dir, sha+".pem"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("private key %d of %s is kept on another host (per-host keys): this host has none in %s", k.ID, k.CertName, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading private key %d of %s: %w", k.ID, k.CertName, err)
	}
	key, err := pemutil.Key(b)
	if err != nil {
		return nil, fmt.Errorf("private key %d of %s: %w", k.ID, k.CertName, err)
	}
	if got, err := pemutil.PublicSHA(key.Public()); err != nil || got != sha {
		return nil, fmt.Errorf("private key %d of %s: the file in %s is not the key the store names", k.ID, k.CertName, dir)
	}
	return b, nil
}

// fleetOrder is the order that issued the fleet's current certificate: a
// host's own is a reissue under it.
func (x *Issuing) fleetOrder(ctx context.Context, plan Plan) (ca.Order, error) {
	base, err := x.Store.GetCertificate(ctx, plan.Spec.Base)
	if err != nil {
		return ca.Order{}, err
	}
	if base.CurrentVersion == 0 {
		return ca.Order{}, fmt.Errorf("the fleet's certificate %s is not issued yet", plan.Spec.Base)
	}
	v, err := x.Store.GetVersion(ctx, base.CurrentVersion)
	if err != nil {
		return ca.Order{}, err
	}
	o, err := x.Store.GetOrder(ctx, v.OrderID)
	if err != nil {
		return ca.Order{}, err
	}
	if o.CARef == "" {
		return ca.Order{}, fmt.Errorf("the fleet's certificate %s has no CA reference", plan.Spec.Base)
	}
	return ca.Order{Ref: o.CARef}, nil
}

// waitForFleetCert decides whether a host's own certificate has work now:
// none while the fleet's certificate is not issued, or while it is the
// one this host's was already reissued from (a renewal waits for the
// fleet's: a reissue under the same order extends nothing). It stores the
// next look and reports wait when there is nothing to do.
func (x *Issuing) waitForFleetCert(ctx context.Context, log *zap.Logger, c store.Certificate, plan Plan) (bool, error) {
	now := x.now()
	base, err := x.Store.GetCertificate(ctx, plan.Spec.Base)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return true, err
	}
	var next time.Time
	switch {
	case err != nil || base.Current == nil || base.State == store.StateRetired:
		next = now.Add(time.Minute)
		log.Info("waiting for the fleet's certificate before this host's own is reissued from it", zap.String("fleet_cert", plan.Spec.Base))
	case c.Current == nil, c.NextAction != ActionRenew, c.Current.NotAfter.Before(base.Current.NotAfter):
		return false, nil // never issued here, told to, or the fleet's is newer
	default:
		next = base.NextActionAt
		if next.Before(now.Add(time.Minute)) {
			next = now.Add(time.Minute)
		}
		log.Info("this host's certificate is renewed when the fleet's is", zap.String("fleet_cert", plan.Spec.Base), zap.Time("at", next))
	}
	return true, x.Store.UpdateCertificate(ctx, c.Name, func(cur *store.Certificate) error {
		cur.NextActionAt = next
		if cur.Current != nil {
			cur.NextAction = ActionRenew
		}
		return nil
	})
}

// promote makes v the fleet's current certificate of an account with
// per-host keys, without deploying it anywhere, and tells every host's
// own certificate to be reissued from it.
func (x *Issuing) promote(ctx context.Context, log *zap.Logger, c store.Certificate, plan Plan, v store.Version) error {
	jitter := 0.0
	if x.Rand != nil {
		jitter = x.Rand.Float64()
	}
	renewAt := RenewalTime(v.NotBefore, v.NotAfter, plan.Policy, jitter)
	if err := x.Store.UpdateCertificate(ctx, c.Name, func(cur *store.Certificate) error {
		cur.CurrentVersion, cur.State, cur.Failures, cur.LastError = v.ID, store.StateValid, 0, ""
		cur.NextAction, cur.NextActionAt, cur.RetryAfter = ActionRenew, renewAt, time.Time{}
		return nil
	}); err != nil {
		return err
	}
	certs, err := x.Store.ListCertificates(ctx)
	if err != nil {
		return err
	}
	hosts := 0
	for _, hc := range certs {
		if !strings.HasPrefix(hc.Name, c.Name+"@") || hc.State == store.StateRetired {
			continue
		}
		hosts++
		if err := x.Store.UpdateCertificate(ctx, hc.Name, func(cur *store.Certificate) error {
			cur.NextAction, cur.NextActionAt = ActionReissue, x.now()
			return nil
		}); err != nil {
			return err
		}
	}
	log.Info("the fleet's certificate is issued; each host has it reissued for its own key", zap.String(logkey.Serial, v.Serial), zap.Int("hosts", hosts))
	x.event(ctx, "info", "issued_for_fleet", c, fmt.Sprintf("serial %s issued for the fleet (per-host keys): not deployed; each host's own certificate is reissued from it", v.Serial))
	return nil
}
