// Package markmonitor is certd's issuer for the Markmonitor SSL Certs API
// (DigiCert behind it): an organisation with contacts declared once, orders
// paid when placed, domains proved per order with DigiCert's random value
// (a DNS TXT, a DNS CNAME, an HTTP file or an approval email), collected
// as PEM or PKCS #7. It is not a client of DigiCert's own CertCentral API
// nor of its ACME service (ca/acme covers that).
//
// Only cmd/certd builds it (through Kind); the scheduler sees it as a
// ca.Issuer, ca.OrderAuthorizer and ca.ChallengeLocator. Orders are paid
// at submit: the issuer does not implement ca.Coster, so certd never
// replaces an order because validation failed or is slow; its proofs stay
// published and DigiCert is asked to check again. Reissue, Cancel and
// Revoke are there for later wiring. mmsim, beside it, is the strict
// simulator its tests and certd's demo run against.
//
// # Wire
//
// Every call carries the account's x-api-key and a bearer JWT from POST
// {auth_url}/auth/authenticate (username, password). The JWT lives 90
// minutes (its exp claim, when it has one, is believed if shorter): it is
// renewed through GET {auth_url}/auth/refresh when less than
// refresh_before (10m) is left, and a new login follows a 401 (the
// refused request is sent once more: a 401 commits nothing). One login or
// refresh runs at a time; callers waiting for it share its outcome.
//
// The documented limit, 100 requests a minute, is kept by a sliding log
// shared by every call of the account's client (logins included): the
// next request waits until the oldest of the last 100 is a minute and 2s
// old, so the 101st request in any minute is never sent (a token bucket
// would let up to 200 through in some minute). The account's rate_limit
// setting, when given, paces requests too.
//
// Answers that are not a success become a *ca.Error with CA
// "markmonitor", the HTTP status, the CA's code (or the guide's name for
// the status, BAD_REQUEST ...) and its message, with the API key, the
// password and any JWT redacted:
//
//	400, 403, 404               Permanent (the request, the API key or a reference must change)
//	401 after a new login       Permanent (credentials refused)
//	409                         retried later (the order's state does not allow it now)
//	429                         Status 429, Retry = Retry-After (rate_limit_retry, 60s, when absent)
//	5xx and others              retried later; Ambiguous for POST and PATCH (they may have been committed)
//
// A POST or PATCH whose answer is lost after the request was written is
// Ambiguous; a failure before it was written is not. Nothing is retried
// inside the client but the one resend after a 401.
//
// Every exchange is bounded by the account's request_timeout
// (ClientOptions.Timeout, default 60s): a CA that accepts a request and
// never answers costs that long, and an order left so is ambiguous,
// settled by a lookup before anything is sent again. An HTML
// page (from a load balancer or proxy in front of the API) is named by
// its title, never quoted (ca.Snippet).
//
// # Organisation and contacts
//
// The account block declares the organisation (name, address, city,
// state, country, zip, phone) and its contacts (names, job title, email,
// phone, types ORGANIZATION_CONTACT and EXTENDED_VALIDATION_APPROVER).
// Before the first order the issuer looks it up by name (GET
// /organization?name=), creates it with its contacts when there is none
// (POST /organization), adds declared contacts it lacks (POST /contact,
// matched by email), and keeps the resourceIds for every later order: the
// CA is the source of truth, and an issuer started later finds them
// again. An organisation create whose answer was lost is not sent again
// before search_window has passed. organization_id instead names one made
// in the portal (guide §8.1).
//
// OV and EV orders may be placed while the organisation is being
// validated; DigiCert issues only once it is. Such an order, and an EV
// order waiting for its approver (DIGI_NEEDS_APPROVAL), is a wait, not a
// failure: Fetch returns ca.ErrPending with a Detail saying what it waits
// for.
//
// # Orders
//
// Submit places POST /order: organizationId, contacts, certificateType,
// locale, provider, and cert {commonName, dnsNames (every domain), csr
// (PEM), dcvMethod (one per order: the account's dcv_method, or through
// SubmitWith the method the certificate's proofs name), algorithmHash (RSA
// or ECC, from the CSR's key), rootHash (only when root_hash is set)}. The
// order's resourceId from the 202 answer is the reference.
//
// Reconcile, after a lost answer, searches the orders by common name (GET
// /order?commonNames=, every page) and takes the one with the request's
// CSR, or with its common name and names created after the request was
// stored. An empty search is a definite absence only search_window (10m)
// after the order was sent (orders may show in the search with a lag);
// before that it is ca.ErrUndetermined.
//
// Fetch reads the order and maps its status (see Fetch); an issued one is
// downloaded (GET /order/{id}/downloadCert?format=pem_all with Accept:
// application/x-pkcs7-certificates, as the guide requires). The body is
// sniffed, not its Content-Type: PEM certificates, a PEM PKCS7 block, a
// DER .p7b or a Base64 one. Roots are the roots file when configured, else
// the download's self-signed certificates.
//
// # Domain control validation
//
// Authorizations reads the order's per-name random values and offers, per
// the order's method:
//
//	DNS_TXT_TOKEN    TXT <domain> = <token>                (txt_name: dnsauth puts it at _dnsauth.<domain>)
//	DNS_CNAME_TOKEN  CNAME <token>.<domain> -> dcv.digicert.com   (the guide's wording; cname_form: dnsauth
//	                 gives DigiCert's current _dnsauth.<domain> -> <token>.dcv.digicert.com)
//	HTTP_TOKEN       http://<domain>/.well-known/pki-validation/fileauth.txt = <token> (never for a wildcard)
//	EMAIL            the approver address DigiCert lists, if any (nothing to publish)
//
// A wildcard is proved at its base name. certd's "dns" proofs mean
// dns_method: TXT (default) or CNAME. Respond asks DigiCert to check the
// order's pending names now (PATCH /order/{id}/validateDomains) at most
// once per recheck_interval per order, and returns at once.
//
// # Where the guide is silent: certd's reading
//
// The guide names fields in prose only, and certd's reference found no
// public Swagger. Everything below is inferred; the uncertain parts are
// configuration:
//   - Base paths: the cert service is ".../cert/v1" (the form of every
//     endpoint in the guide, though §7 says "certs"): url, auth_url.
//   - JSON names of every body (Credentials, NewOrganization, NewContact,
//     NewOrder, NewCert, ReissueRequest, ValidateDomainsRequest,
//     RevokeRequest, and the answers Organization, Contact, OrderInfo,
//     CertInfo, DomainDCV): camelCase as in the field names the guide
//     does give (resourceId, providerId, algorithmHash, rootHash).
//     json_names renames any key both ways (for example
//     {dcvToken: randomValue}). Where the per-name DCV state lives
//     (cert.domains[] with name, dcvToken, validationStatus, emails,
//     message; or an order-wide cert.dcvToken) is inferred too.
//   - The JWT in the authenticate and refresh answers is read from token,
//     jwt, accessToken, access_token, idToken or id_token, a JSON string,
//     or a bare token.
//   - Query parameters (page, size, name, commonNames, statuses,
//     certificateTypes, organizationId, format): query_names renames
//     them. Pages are read as Spring Data's ({"content", "totalPages",
//     "last"}, or items, data, results, a bare array); first_page (0) and
//     page_size (50) are configuration, search_max_pages (40) bounds a
//     search. The guide gives no creation-time filter: the window is
//     applied to each order's createdDate by certd.
//   - The PATCH action tokens: actions.cancel (cancel), actions.revoke
//     (revoke), actions.reissue (reissue), actions.validate_domains
//     (validateDomains).
//   - Status words of validation: organization_validated_statuses and
//     domain_validated_statuses (default VALIDATED, VALID, COMPLETED,
//     APPROVED). The order statuses are the guide's, exactly.
//   - provider (DIGICERT) and locale (en) values.
//   - The error body's shape: code, errorCode or error, and message,
//     detail, errorMessage or errors are read.
//   - Where DigiCert looks for the TXT (txt_name) and which CNAME form
//     (cname_form) Markmonitor's orders use.
package markmonitor
