// Package scheduler is certd's lifecycle engine: it decides what is due
// (renewals, claim reassertion, orders to poll), runs the work with bounded
// concurrency, backoff and jitter, and records every outcome in the store.
// robfig/cron/v3 drives the periodic pass.
//
// It may import ca, dcv, deploy and store; it never imports a particular
// CA or provider: cmd/certd builds those and hands them in.
package scheduler
