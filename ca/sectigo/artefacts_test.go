package sectigo_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/catest"
	"github.com/certd/certd/ca/sectigo"
	"github.com/certd/certd/dcv"
)

// fixedCSR is a CSR for www.example.com made once with openssl; its
// hashes below were computed with `openssl dgst -md5` and `-sha256` over
// this DER, independently of the code under test.
const (
	fixedCSR    = "MIIBAjCBqQIBADAaMRgwFgYDVQQDDA93d3cuZXhhbXBsZS5jb20wWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARLJQkgvCc9HZzSdK0FaPAK7nlraCNObgpysfzkYb1lr8g7o6ekSMiqftoJYJxsgh34f71MbjhrZWFI9dMNqji0oC0wKwYJKoZIhvcNAQkOMR4wHDAaBgNVHREEEzARgg93d3cuZXhhbXBsZS5jb20wCgYIKoZIzj0EAwIDSAAwRQIgeZSRZR/UGPB/wGrRBZ61Ui1vb0RNofJl3AiaTZ+LaNoCIQD6l6GgdxyenAo6CzQATEvClBUuEbAzDG++5X0J3XkGwA=="
	fixedMD5    = "CFF71545CEA8A7AFEDDFF900A4A47851"
	fixedSHA256 = "EB5DD67C8EC0A5EF1863B495270115B57FF301568E664BEDA8979030DBCF2604"
	// fixedRef's uniqueValue, computed with Python's hashlib as
	// sha256(b"certd-sectigo-uniquevalue\x00certd-order-42").hexdigest().upper()[:20].
	fixedRef = "certd-order-42"
	fixedUV  = "D002D4FC9D889D2820A6"
)

func fixedRequest(t *testing.T, names ...string) ca.Request {
	t.Helper()
	der, err := base64.StdEncoding.DecodeString(fixedCSR)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		names = []string{"www.example.com"}
	}
	return ca.Request{Domains: names, CSR: der, ClientRef: fixedRef}
}

// The artefacts are byte-exact to the reference (§3): hashes over the DER
// in uppercase hex; the file at /.well-known/pki-validation/<MD5>.txt
// holding the SHA-256, "sectigo.com" and the uniqueValue on their own
// lines; the CNAME _<MD5>.<domain> to <sha256[0:32]>.<sha256[32:64]>.<uniqueValue>.sectigo.com.
func TestArtefactsAreByteExact(t *testing.T) {
	req := fixedRequest(t)
	h, err := sectigo.HashCSR(req.CSR)
	if err != nil {
		t.Fatal(err)
	}
	if h.MD5 != fixedMD5 || h.SHA256 != fixedSHA256 {
		t.Fatalf("hashes %s %s, want %s %s", h.MD5, h.SHA256, fixedMD5, fixedSHA256)
	}
	uv, err := sectigo.UniqueValue(fixedRef)
	if err != nil || uv != fixedUV {
		t.Fatalf("uniqueValue %q (%v), want %q", uv, err, fixedUV)
	}

	// The reference's worked CNAME pattern, with its example uniqueValue.
	if got, want := sectigo.CNAMETarget(h, "aHXEOOEh"), "EB5DD67C8EC0A5EF1863B495270115B5.7FF301568E664BEDA8979030DBCF2604.aHXEOOEh.sectigo.com"; got != want {
		t.Fatalf("CNAME target %q, want %q", got, want)
	}
	if got, want := sectigo.CNAMETarget(h, ""), "EB5DD67C8EC0A5EF1863B495270115B5.7FF301568E664BEDA8979030DBCF2604.sectigo.com"; got != want {
		t.Fatalf("CNAME target without uniqueValue %q, want %q", got, want)
	}
	if got, want := sectigo.HTTPContent(h, ""), fixedSHA256+"\nsectigo.com"; got != want {
		t.Fatalf("two-line file %q, want %q", got, want)
	}

	cases := []struct {
		name   string
		domain string
		proof  ca.Proof
		iss    sectigo.IssuerOptions
		want   dcv.Challenge
	}{
		{"http file", "www.example.com", ca.Proof{Method: dcv.HTTPFile}, sectigo.IssuerOptions{},
			dcv.Challenge{Domain: "www.example.com", Method: dcv.HTTPFile, CARef: "HTTP_CSR_HASH",
				Path:    "/.well-known/pki-validation/CFF71545CEA8A7AFEDDFF900A4A47851.txt",
				Content: "EB5DD67C8EC0A5EF1863B495270115B57FF301568E664BEDA8979030DBCF2604\nsectigo.com\nD002D4FC9D889D2820A6"}},
		{"https file", "www.example.com", ca.Proof{Method: dcv.HTTPFile}, sectigo.IssuerOptions{HTTPScheme: "https"},
			dcv.Challenge{Domain: "www.example.com", Method: dcv.HTTPFile, CARef: "HTTPS_CSR_HASH",
				Path:    "/.well-known/pki-validation/CFF71545CEA8A7AFEDDFF900A4A47851.txt",
				Content: "EB5DD67C8EC0A5EF1863B495270115B57FF301568E664BEDA8979030DBCF2604\nsectigo.com\nD002D4FC9D889D2820A6"}},
		{"cname", "www.example.com", ca.Proof{Method: dcv.DNSCNAME}, sectigo.IssuerOptions{},
			dcv.Challenge{Domain: "www.example.com", Method: dcv.DNSCNAME, CARef: "CNAME_CSR_HASH",
				RecordName: "_cff71545cea8a7afeddff900a4a47851.www.example.com",
				Value:      "EB5DD67C8EC0A5EF1863B495270115B5.7FF301568E664BEDA8979030DBCF2604.D002D4FC9D889D2820A6.sectigo.com"}},
		{"cname for a wildcard is at its base", "*.example.com", ca.Proof{Method: dcv.DNSCNAME}, sectigo.IssuerOptions{},
			dcv.Challenge{Domain: "*.example.com", Method: dcv.DNSCNAME, CARef: "CNAME_CSR_HASH",
				RecordName: "_cff71545cea8a7afeddff900a4a47851.example.com",
				Value:      "EB5DD67C8EC0A5EF1863B495270115B5.7FF301568E664BEDA8979030DBCF2604.D002D4FC9D889D2820A6.sectigo.com"}},
		{"email with the proof's address", "www.example.com", ca.Proof{Method: dcv.Email, Email: "hostmaster@example.com"}, sectigo.IssuerOptions{},
			dcv.Challenge{Domain: "www.example.com", Method: dcv.Email, CARef: "EMAIL", EmailAddress: "hostmaster@example.com"}},
		{"email with the account's approver", "www.example.com", ca.Proof{Method: dcv.Email}, sectigo.IssuerOptions{Approver: "admin"},
			dcv.Challenge{Domain: "www.example.com", Method: dcv.Email, CARef: "EMAIL", EmailAddress: "admin@www.example.com"}},
		{"no proof: the account's default", "www.example.com", ca.Proof{}, sectigo.IssuerOptions{DCVMethod: sectigo.MethodHTTPS},
			dcv.Challenge{Domain: "www.example.com", Method: dcv.HTTPFile, CARef: "HTTPS_CSR_HASH",
				Path:    "/.well-known/pki-validation/CFF71545CEA8A7AFEDDFF900A4A47851.txt",
				Content: "EB5DD67C8EC0A5EF1863B495270115B57FF301568E664BEDA8979030DBCF2604\nsectigo.com\nD002D4FC9D889D2820A6"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.iss.Product = 488
			is := offlineIssuer(t, c.iss)
			req := fixedRequest(t, c.domain)
			chs, err := is.ChallengesBefore(req, map[string]ca.Proof{c.domain: c.proof})
			if err != nil {
				t.Fatal(err)
			}
			if len(chs) != 1 || chs[0] != c.want {
				t.Fatalf("got %+v\nwant %+v", chs, c.want)
			}
		})
	}
}

func offlineIssuer(t *testing.T, opts sectigo.IssuerOptions) *sectigo.Issuer {
	t.Helper()
	c, err := sectigo.NewClient(sectigo.ClientOptions{URL: "https://127.0.0.1:1", LoginName: loginName, LoginPassword: configSecret(password)})
	if err != nil {
		t.Fatal(err)
	}
	is, err := sectigo.NewIssuer(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

// The uniqueValue, and so every artefact, is a pure function of the
// client reference and the CSR: a restarted certd (a new issuer) gets the
// artefacts it published before the restart, and another order (another
// reference) gets different ones, so a token is never reused.
func TestUniqueValueIsDeterministic(t *testing.T) {
	how := map[string]ca.Proof{"www.example.com": {Method: dcv.HTTPFile}}
	var first []string
	for range 3 {
		is := offlineIssuer(t, sectigo.IssuerOptions{Product: 488})
		chs, err := is.ChallengesBefore(fixedRequest(t), how)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(chs[0].Content, "\n")
		if len(lines) != 3 || lines[2] != fixedUV {
			t.Fatalf("file %q: the third line is not the uniqueValue %s of reference %s", chs[0].Content, fixedUV, fixedRef)
		}
		if first == nil {
			first = lines
		} else if strings.Join(first, "\n") != strings.Join(lines, "\n") {
			t.Fatalf("a new issuer gives %q, the first gave %q", lines, first)
		}
	}
	other := fixedRequest(t)
	other.ClientRef = fixedRef + "-next"
	chs, err := offlineIssuer(t, sectigo.IssuerOptions{Product: 488}).ChallengesBefore(other, how)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(chs[0].Content, fixedUV) {
		t.Fatal("another order reuses the uniqueValue")
	}
	for _, ref := range []string{"a", strings.Repeat("x", 500), "ünïcode/ref#1"} {
		uv, err := sectigo.UniqueValue(ref)
		if err != nil || len(uv) != 20 || strings.Trim(uv, "0123456789ABCDEF") != "" {
			t.Fatalf("uniqueValue of %q is %q (%v): want 20 alphanumerics", ref, uv, err)
		}
	}
	if _, err := sectigo.UniqueValue(""); err == nil {
		t.Fatal("a request without a client reference got a uniqueValue")
	}
}

// What cannot be proved is refused before anything is published or sent.
func TestChallengesRefused(t *testing.T) {
	cases := []struct {
		name    string
		opts    sectigo.IssuerOptions
		domains []string
		how     map[string]ca.Proof
		want    string
	}{
		{"http for a wildcard", sectigo.IssuerOptions{Product: 489}, []string{"*.example.com"},
			map[string]ca.Proof{"*.example.com": {Method: dcv.HTTPFile}}, "wildcard"},
		{"delegated dns", sectigo.IssuerOptions{Product: 488}, []string{"www.example.com"},
			map[string]ca.Proof{"www.example.com": {Method: dcv.DNSTXT, Delegated: true}}, "delegated"},
		{"email without an address", sectigo.IssuerOptions{Product: 488}, []string{"www.example.com"},
			map[string]ca.Proof{"www.example.com": {Method: dcv.Email}}, "approver"},
		{"two names on a single-domain product", sectigo.IssuerOptions{Product: 488}, []string{"a.example.com", "b.example.com"},
			nil, "single-domain"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := offlineIssuer(t, c.opts).ChallengesBefore(fixedRequest(t, c.domains...), c.how)
			if err == nil || !strings.Contains(err.Error(), c.want) || !ca.IsPermanent(err) {
				t.Fatalf("err = %v, want a permanent error about %q", err, c.want)
			}
		})
	}
}

// certd's `dns` method (a DNS record through the configured provider)
// becomes Sectigo's CSR-hash CNAME.
func TestDNSProofIsTheCSRHashCNAME(t *testing.T) {
	is := offlineIssuer(t, sectigo.IssuerOptions{Product: 488})
	req := catest.Request(t, []string{"www.example.com"})
	chs, err := is.ChallengesBefore(req, map[string]ca.Proof{"www.example.com": {Method: dcv.DNSTXT}})
	if err != nil || len(chs) != 1 {
		t.Fatalf("%v %v", chs, err)
	}
	h, _ := sectigo.HashCSR(req.CSR)
	if ch := chs[0]; ch.Method != dcv.DNSCNAME || !strings.HasPrefix(ch.RecordName, "_"+strings.ToLower(h.MD5)+".") || !strings.HasSuffix(ch.Value, ".sectigo.com") {
		t.Fatalf("a dns proof gave %+v", ch)
	}
}
