package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/certd/certd/store"
)

// Resolution is an operator's word on a certificate's open order, for
// the cases certd never decides on its own (a CA that cannot say whether
// it holds an order whose answer was lost).
type Resolution string

// Resolutions.
const (
	// ResolveFound: the order exists at the CA under the given reference
	// (found in the CA's portal); certd collects it.
	ResolveFound Resolution = "found"
	// ResolveAbsent: the CA holds no such order; certd sends the same
	// order (same key, same reference) again.
	ResolveAbsent Resolution = "absent"
	// ResolveAbandon: the order is given up (cancelled at the CA, or not
	// wanted); the next attempt places a new one.
	ResolveAbandon Resolution = "abandon"
)

// OperatorStore is what ResolveOrder needs.
type OperatorStore interface {
	store.Certificates
	store.Orders
	store.Events
}

// ResolveOrder records an operator's resolution of certName's open order
// and makes the certificate due at once. It returns the order as stored.
func ResolveOrder(ctx context.Context, st OperatorStore, certName string, how Resolution, ref string) (store.Order, error) {
	open, err := st.OpenOrders(ctx)
	if err != nil {
		return store.Order{}, err
	}
	var o *store.Order
	for i := range open {
		if open[i].CertName == certName {
			o = &open[i]
		}
	}
	if o == nil {
		return store.Order{}, fmt.Errorf("%s has no open order", certName)
	}
	msg := ""
	switch how {
	case ResolveFound:
		if ref == "" {
			return *o, errors.New("found needs the CA's reference for the order")
		}
		o.State, o.CARef, o.LastError = store.OrderPending, ref, ""
		msg = fmt.Sprintf("an operator found order %s at the CA as %s; certd collects it", o.IdempotencyKey, ref)
	case ResolveAbsent:
		if o.State == store.OrderPending {
			return *o, fmt.Errorf("order %s is pending at the CA as %s: it exists; abandon it instead", o.IdempotencyKey, o.CARef)
		}
		o.State, o.SentAt, o.LastError = store.OrderIntent, time.Time{}, ""
		msg = fmt.Sprintf("an operator confirmed the CA holds no order %s; it is sent again", o.IdempotencyKey)
	case ResolveAbandon:
		o.State, o.LastError = store.OrderAbandoned, "abandoned by an operator"
		msg = fmt.Sprintf("an operator abandoned order %s (%s); the next attempt places a new order", o.IdempotencyKey, o.CARef)
	default:
		return *o, fmt.Errorf("unknown resolution %q", how)
	}
	if err := st.SaveOrder(ctx, *o); err != nil {
		return *o, err
	}
	var c store.Certificate
	if err := st.UpdateCertificate(ctx, certName, func(x *store.Certificate) error {
		if x.State == store.StateNeedsOperator || x.State == store.StateFailing {
			x.State, x.Failures = store.StateIssuing, 0
		}
		x.NextActionAt, x.RetryAfter = time.Now(), time.Time{}
		if x.NextAction == "" {
			x.NextAction = ActionIssue
		}
		c = *x
		return nil
	}); err != nil {
		return *o, err
	}
	_, _ = st.AppendEvent(ctx, store.Event{Level: "warn", Kind: "order_resolved", CertName: certName, Account: c.Account, Message: msg})
	return *o, nil
}
