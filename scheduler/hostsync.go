package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/logkey"
	"github.com/certd/certd/store"
)

// SyncHost deploys on this host the current version of each of names
// (the certificates this host lists) when this host does not serve it
// yet: in a fleet, the host that issued a version deploys it on itself,
// and every other host picks it up here. It needs no lease and writes
// only this host's deployment records and events, so a host whose reload
// fails shows as failing without holding up the others. A version whose
// deploy failed here is tried again with a backoff (30s doubling to 1h).
func (x *Issuing) SyncHost(ctx context.Context, names []string) error {
	var errs []error
	for _, name := range names {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := x.syncOne(ctx, name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (x *Issuing) syncOne(ctx context.Context, name string) error {
	c, err := x.Store.GetCertificate(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.CurrentVersion == 0 || c.State == store.StateRetired || c.Current == nil || !x.now().Before(c.Current.NotAfter) {
		return nil
	}
	deps, err := x.Store.ListDeployments(ctx, name)
	if err != nil {
		return err
	}
	failed := 0
	var lastTry time.Time
	for _, d := range deps { // newest first
		if d.Host != x.Host {
			continue
		}
		if d.VersionID == c.CurrentVersion && d.State == "live" {
			if plan, err := x.Plans(name); err == nil {
				if live := deploy.Inspect(plan.Deploy); !live.Missing && live.Fingerprint == c.Current.Fingerprint {
					return nil // served here already
				}
				// Deployed here once, but the files are gone or
				// altered since: put them back.
				break
			}
			return nil
		}
		if d.VersionID != c.CurrentVersion {
			break
		}
		if d.State == "failed" || d.State == "started" {
			failed++
			if lastTry.IsZero() {
				lastTry = d.StartedAt
			}
		}
	}
	if failed > 0 {
		wait := 30 * time.Second << min(failed-1, 7)
		if wait > time.Hour {
			wait = time.Hour
		}
		if x.now().Before(lastTry.Add(wait)) {
			return nil
		}
	}
	plan, err := x.Plans(name)
	if err != nil {
		return err
	}
	v, err := x.Store.GetVersion(ctx, c.CurrentVersion)
	if err != nil {
		return err
	}
	log := x.log().With(zap.String(logkey.Cert, name), zap.String("host", x.Host))
	res, err := x.deployFiles(ctx, log, c, plan, v)
	if err != nil {
		log.Warn("deploying the fleet's current version on this host failed; retried with a backoff", zap.String(logkey.Serial, v.Serial), zap.Int(logkey.Attempt, failed+1), zap.Error(err))
		x.event(ctx, "error", "deploy_failed", c, fmt.Sprintf("serial %s could not be deployed%s (attempt %d): %v", v.Serial, x.onHost(), failed+1, err))
		return err
	}
	log.Info("fleet's current version deployed on this host", zap.String(logkey.Serial, v.Serial), zap.String("path", res.Path))
	x.event(ctx, "info", "deployed", c, fmt.Sprintf("serial %s deployed to %s%s", v.Serial, res.Path, x.onHost()))
	return nil
}
