package atlas

import (
	"context"
	"net/http/httptrace"
	"sync/atomic"
)

// withWroteTrace sets wrote once the request headers have been written to
// the connection: from then on a failure is ambiguous (Atlas may have
// acted on the request); before it, the request certainly did not arrive.
func withWroteTrace(ctx context.Context, wrote *atomic.Bool) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
	})
}
