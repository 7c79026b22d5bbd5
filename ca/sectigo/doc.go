// Package sectigo is certd's issuer for Sectigo's reseller Auto* API:
// AutoApplySSL to order, CollectSSL to read status and collect,
// AutoUpdateDCV and ResendDCVEmail to have domains checked again,
// GetDCVEmailAddressList for approver addresses, AutoReplaceSSL to
// reissue and AutoRevokeSSL to revoke. Domains are proved per order by
// Sectigo's CSR-hash DCV: an HTTP(S) file, a DNS CNAME or an approval
// email. It is not a client of Sectigo Certificate Manager (SCM, the REST
// API) nor of Sectigo's ACME service (ca/acme covers that).
//
// Only cmd/certd builds it (through Kind); the scheduler sees it as a
// ca.Issuer, ca.PreSubmitChallenger and ca.OrderAuthorizer. Orders are
// paid at submit: the issuer does not implement ca.Coster, so certd never
// replaces an order because validation failed; its artefacts stay
// published and Sectigo is asked to check again. sectigosim, beside it,
// is the strict simulator its tests and certd's demo run against.
//
// # Wire
//
// Every call is an HTTPS POST of an application/x-www-form-urlencoded
// body with loginName and loginPassword; parameter names are
// case-sensitive. AutoApplySSL, AutoReplaceSSL and CollectSSL are sent
// responseFormat=1 and every answer is read as URL-encoded parameters
// (errorCode, errorMessage, ...), falling back to the newline-delimited
// form for endpoints that ignore responseFormat. Each negative errorCode
// becomes a *ca.Error with CA "sectigo", Code the errorCode and Detail the
// errorMessage:
//
//	-42 call limit           Status 429, Retry = call_limit_retry (default 60s): certd pauses the account
//	-16 permission denied     Permanent (credentials refused, or the account is not enabled for the API)
//	-2, -3, -4 parameters     Permanent, the parameter named in Detail
//	-1, -17, -115             Permanent (HTTP instead of HTTPS, GET, no price for product and days)
//	-18, -20                  Permanent; from Fetch, ca.ErrRejected (refunded, cancelled)
//	other negative codes      a definite refusal, retried later
//
// Fetch reads an order Sectigo rejected, revoked or cancelled (its
// extended certificate status, or -18/-20) as ca.ErrRejected, also
// Permanent: certd buys no new certificate from a paid CA after a
// rejection until a person has looked.
//
// A call that may commit something (AutoApplySSL, AutoReplaceSSL,
// AutoRevokeSSL) whose answer is lost after the request was written — a
// dropped connection, a status other than 200, a body that is not an
// answer — is Ambiguous; a failure before it was written is not. The
// client retries nothing itself. The password is redacted from anything
// Sectigo sends back and never logged.
//
// Every exchange is bounded by the account's request_timeout
// (ClientOptions.Timeout, default 60s): a CA that accepts a request and
// never answers costs that long, and an order left so is ambiguous,
// settled by a lookup before anything is sent again. An HTML
// page (from a load balancer or proxy in front of the API) is named by
// its title, never quoted (ca.Snippet).
//
// # Artefacts
//
// The CSR's DER is hashed (MD5 and SHA-256, uppercase hex) and a
// uniqueValue derived from the order's client reference (see UniqueValue:
// 20 uppercase hex digits of a SHA-256), so the artefacts are a pure
// function of the request and survive a restart, and no two orders share
// a token:
//
//	HTTP_CSR_HASH / HTTPS_CSR_HASH  /.well-known/pki-validation/<MD5>.txt = "<SHA256>\nsectigo.com\n<uniqueValue>"
//	CNAME_CSR_HASH                  _<md5>.<domain> CNAME <SHA256[0:32]>.<SHA256[32:64]>.<uniqueValue>.sectigo.com
//	EMAIL                           the approver address (checked against GetDCVEmailAddressList first)
//
// HTTP methods are refused for wildcards; a wildcard's CNAME sits at its
// base name. certd's "http" proofs mean HTTP_CSR_HASH or HTTPS_CSR_HASH
// per the account's http_scheme (Sectigo checks only the scheme chosen).
//
// # Order references
//
// An order's reference (ca.Order.Ref) is "orderNumber/certificateID" (just
// the order number if Sectigo returned no certificate ID); an operator may
// give either form. A reissue keeps the order number with a new
// certificate ID. An authorization's reference adds "#<domain>".
//
// # Where the reference is silent or inferred
//
// certd's reference on the API leaves gaps; this package's choices:
//   - No lookup of an order by uniqueValue, CSR or date is documented
//     (WebHostReport's parameters and answer are unknown), and resubmitting
//     a CSR with its token would make Sectigo fail the original. So
//     Reconcile proves nothing: after a send it returns a Permanent error
//     wrapping ca.ErrUndetermined with the uniqueValue, CSR hashes, names
//     and send time, and certd leaves the order to an operator.
//   - The reference gives no per-domain DCV method at apply time for
//     multi-domain orders: the order is placed with one non-email method
//     (the primary domain's when it is not EMAIL) and the others are set
//     at once with AutoUpdateDCV (domainNames and newDCVEmailAddresses
//     space-separated, newMethods comma-separated; one call for the
//     email domains, one for the rest). domainNames at apply time is sent
//     comma-separated.
//   - The reference documents no per-domain DCV status (the CollectSSL
//     flag for domain/status pairs is unnamed), so every domain reads
//     AuthPending until the order's validation status says validated or
//     it is issued. The names of CollectSSL's extended-status fields
//     (certificateStatus, validationStatus) and certificate fields
//     (certificate, caCertificate) in the URL-encoded answer are inferred
//     (FieldCertificateStatus and the like); so are the status words:
//     rejected_statuses (default Rejected, Revoked, Cancelled, Canceled,
//     Refunded) and IssuerOptions.ValidatedStatuses are configurable.
//   - How to ask for a re-check is a choice (recheck): AutoUpdateDCV with
//     the domain's method (default; it also repairs a method that did not
//     take) or ResendDCVEmail (which resets the re-check schedule of the
//     non-email methods and resends the email). Either is sent at most
//     once per recheck_interval per domain, counted from the submission.
//   - CollectSSL is read at most once per poll_interval per order by
//     Authorizations (default 3h, Sectigo's guidance; configurable), calls
//     to it are serialised, and a pending Fetch carries the poll interval
//     as its Retry-After.
//   - -42 carries no wait: call_limit_retry (default 60s) is used.
//   - Line endings of the HTTP file: "\n", no newline after the last line.
//   - The dcvMethod Sectigo assumes when none is sent is truncated in the
//     reference: certd always sends one.
//   - The text layout of GetDCVEmailAddressList is not given: every line
//     holding one address (after an optional "label:") is read.
//   - Roots: the roots file when configured, else the self-signed
//     certificates of the CollectSSL bundle.
package sectigo
