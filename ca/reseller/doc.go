// Package reseller is certd's issuer for the reseller /ssl-certificate
// REST API (seed 002; probably the Resello "Reseller Platform" API): HTTP
// Basic authentication with api_username:api_key, JSON bodies, one SSL
// Certificate object per order identified by its id, plans by UUID, and
// a client_reference for idempotency.
//
// What it is: a Client for the API's endpoints and an Issuer that
// implements ca.Issuer and ca.OrderAuthorizer. Orders are paid at submit
// (the issuer does not implement ca.Coster). The order's proofs are read
// from GET /ssl-certificate/{id}/validation-details, whose shape depends on
// the CA behind the plan (Sectigo-style CSR-hash CNAME or file,
// DigiCert-style random-value TXT or fileauth.txt); they are never
// computed locally. Resellersim is a strict simulator of the API for tests
// and the demo. What it is not: a client of /ssl-certificate-plan, or of
// anything but the certificate resource.
//
// Documented by the seed, used as documented: the paths, HTTP Basic
// authentication, the create/renew/reissue/validate body fields, the
// plan and client_reference filters of GET /ssl-certificate, the statuses
// "pending" and "active", and the download-{zip|pkcs7|crt|csr|ca}
// suffixes. A committed order is listed at once (creation answers with
// the object in status pending), so an empty listing for a client
// reference proves absence: this is the one CA where Reconcile can say
// "not found" without waiting.
//
// Inferred (not in any material we could reach), each marked where it is
// used and made configurable where a wrong guess would stop issuance:
//
//   - The object's keys "id", "status", "client_reference" and
//     "created_at" (id as string or number; created_at in RFC 3339). A
//     listed object whose client_reference differs from the one asked for
//     is ignored, in case a server ignores the filter.
//   - The listing's shape: a bare JSON array, or an object carrying the
//     array (Django REST Framework's paginated {"count", "next",
//     "results"}, or "data"/"items"); "next" links are followed only on
//     the configured host. The documentation's URL layout
//     (".../resource/serializers/...") suggests Django REST Framework.
//   - The statuses that end an order: Config.RejectedStatuses (default
//     DefaultRejectedStatuses). Any other status but "active" is treated as
//     still pending and logged at warn.
//   - The error body: DRF's {"detail": ...} and {"field": ["message"]}, or
//     {"message", "code", "errors"}; 402 or a message about funds or
//     balance means the account's money ran out (Code "quota").
//   - The validation-details shape: walked defensively for per-domain
//     objects (see parseValidation); unknown shapes are logged (keys only).
//   - The "domain" field of POST /{id}/validate (in the seed's sample, not
//     its parameter table): sent, with the name as ordered.
//   - The DELETE answer: a boolean key naming a refund ("refunded") or a
//     refund amount, when there is one; otherwise the refund is unknown.
//
// Every exchange is bounded by the account's request_timeout
// (ClientOptions.Timeout, default 60s): a CA that accepts a request and
// never answers costs that long, and an order left so is ambiguous,
// settled by a lookup before anything is sent again. A read
// (GET) that fails in transport or with 502, 503 or 504, and any call
// answered 429 with a short Retry-After, is retried inside the call
// (ClientOptions.Retries), each retry logged at warn; a POST is never
// resent after it was written. An HTML page (from a load balancer or
// proxy in front of the API) is named by its title, never quoted
// (ca.Snippet).
//
// Who may import it: cmd/certd (through Kind) and tests.
package reseller
