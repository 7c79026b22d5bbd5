package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/config"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/logkey"
	"github.com/certd/certd/store"
)

// adoptFiles reads and checks c's adopt files as an import would: the
// certificate names exactly c's domains, its key is c's key type and
// matches it, its chain links up, and it is valid now.
func adoptFiles(c *config.Certificate, now time.Time) (foreign, error) {
	a := c.Adopt
	f, err := readPEMSet(a.Cert, a.Cert, a.Chain, a.Key)
	if err != nil {
		return f, err
	}
	want := slices.Clone(c.Domains)
	sort.Strings(want)
	if got := leafNames(f.leaf); !slices.Equal(got, want) {
		return f, fmt.Errorf("%s names %v, the certificate %v", a.Cert, got, want)
	}
	if kt := keyType(f.key); kt != c.KeyType {
		return f, fmt.Errorf("%s is a %s key; the certificate's key_type is %s", a.Key, kt, c.KeyType)
	}
	return f, checkForeign(f, now)
}

// adoptConfigured makes each configured certificate's adopt files its
// first version while it has none: stored, deployed with its hooks and
// renewed on the normal schedule, so nothing is ordered while they are
// valid. Files that cannot be adopted are said loudly (error log and
// event) and the certificate is ordered as usual; check-config reports
// them before a start.
func adoptConfigured(ctx context.Context, log *zap.Logger, cfg *config.Config, st store.Store, d *deploy.Deployer) {
	for _, c := range cfg.Certificates {
		if c.Adopt == nil {
			continue
		}
		sc, err := st.GetCertificate(ctx, c.Name)
		if err != nil || sc.CurrentVersion != 0 {
			continue // adopted before, or issued since: adopt is for the first version
		}
		clog := log.With(zap.String(logkey.Cert, c.Name))
		f, err := adoptFiles(c, time.Now())
		if err != nil {
			clog.Error("the adopt files cannot be used; the certificate is ordered as usual", zap.Error(err))
			_, _ = st.AppendEvent(ctx, store.Event{Level: "error", Kind: "adopt_failed", CertName: c.Name, Account: c.Account,
				Message: fmt.Sprintf("adopt: %v; the certificate is ordered as usual", err)})
			continue
		}
		msg, err := adopt(ctx, st, d, "the configuration", importPlan{cert: c, f: f})
		if err != nil {
			clog.Error("adopting the configured files failed", zap.Error(err))
			continue
		}
		clog.Info(msg)
	}
}
