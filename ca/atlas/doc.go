// Package atlas is certd's issuer for GlobalSign Atlas (HVCA API v2):
// account-level domain claims proved by DNS TXT (optionally through a
// CNAME delegation) or an HTTP gsdv.txt file, and certificates issued
// against verified claims, over mTLS with short-lived bearer tokens.
// Orders are paid at submit. The strict simulator is atlassim.
//
// Where the guide and ../reference are silent, certd chooses, and each
// choice is configurable on the account:
//
//   - How long Atlas may take to issue an accepted request
//     (issuance_window, default 1h). Reports list a certificate only once
//     issued, so after a lost answer to POST /certificates "not listed"
//     proves the order absent only this long after it was sent; before
//     that the order stays ambiguous and is never sent again.
//   - Issuing-CA rotation (fetch_issuer, default true). GET /trustchain
//     names only the current issuing CA; a certificate issued before a
//     rotation and fetched after a restart is signed by one no served
//     chain holds. certd then reads the issuer from the leaf's AIA
//     caIssuers URL (http or https, one certificate, DER or PEM, at most
//     64 KiB) and uses it only if it signed the leaf and a served chain
//     signed it. Off, such an order waits with ErrChainUnavailable.
//   - The CNAME delegation label (delegation_label, default
//     "_acme-challenge"): Atlas accepts any "_"-prefixed label.
//   - When a claim is proved again (reassert_before, default 30 days
//     before its expires_at), and which parent domains are claimed
//     instead of each name (claim_domains).
//
// Every exchange is bounded by the account's request_timeout
// (ClientOptions.Timeout, default 60s): a CA that accepts a request and
// never answers costs that long, and an order left so is ambiguous,
// settled by a lookup before anything is sent again. An error
// answer that is not Atlas's JSON problem (an HTML page from a load
// balancer) is reported by its status alone, never quoted.
package atlas
