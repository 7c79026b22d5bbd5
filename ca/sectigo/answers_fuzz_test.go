package sectigo

import (
	"errors"
	"net/url"
	"strconv"
	"testing"
)

// FuzzAnswer feeds Sectigo answers, in both forms the simulator writes
// (URL-encoded with responseFormat=1, and the status-line form), to the
// parsers: parseAnswer, readOrderAnswer, the certificate decoding of
// CollectSSL and the parameter an error names. None may panic; a parsed
// answer always has a numeric errorCode; an order answer either has its
// order number or is ambiguous (Sectigo may have placed the order: look
// it up, never apply again).
func FuzzAnswer(f *testing.F) {
	for _, s := range []string{
		"errorCode=0&orderNumber=1234567&certificateID=7654321&uniqueValue=c4a1b2d3e4&totalCost=0",
		"errorCode=1&orderNumber=1234568&totalCost=59.00",
		"errorCode=-2&errorMessage=The+%27domainNames%27+argument+is+invalid",
		"errorCode=-42&errorMessage=Call+limit+exceeded",
		"errorCode=2&certificateStatus=Valid&validationStatus=Validated&certificate=MIIBszCCAVmgAwIBAgIBATAK&caCertificate=MIIBrDCCAVKgAwIBAgIBATAK&caCertificate=-----BEGIN+CERTIFICATE-----%0AMIIB%0A-----END+CERTIFICATE-----%0A",
		"errorCode=0&certificateStatus=Currently+being+processed+by+Sectigo&validationStatus=Not+Validated",
		"0\n1234567\n0.00\n\n7654321\nc4a1b2d3e4\n",
		"-14\nAn unknown error occurred!\n",
		"0\r\nadmin@example.com\r\nhostmaster@example.com\r\n",
		"<html><body>502 Bad Gateway</body></html>",
		"errorCode=0",
		"",
	} {
		f.Add([]byte(s))
	}
	form := url.Values{"loginName": {"n"}, "loginPassword": {"p"}, "domainNames": {"example.com"}, "csr": {"x"}, "dcvMethod": {"CNAME_CSR_HASH"}}
	f.Fuzz(func(t *testing.T, raw []byte) {
		vals, err := parseAnswer(raw)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if _, err := strconv.Atoi(vals.Get("errorCode")); err != nil {
			t.Fatalf("parsed answer with errorCode %q", vals.Get("errorCode"))
		}
		if p := namedParam(vals.Get("errorMessage"), form); p == "loginPassword" || p != "" && form[p] == nil && !containsWord(knownParams, p) {
			t.Fatalf("the error names parameter %q", p)
		}
		res, err := readOrderAnswer("AutoApplySSL", vals)
		switch {
		case err == nil && res.OrderNumber == "":
			t.Fatal("an order answer without its order number")
		case err != nil && !errors.Is(err, ErrAmbiguous):
			t.Fatalf("an order answer without its number is not ambiguous: %v", err)
		}
		for _, v := range append([]string{vals.Get(FieldCertificate)}, vals[FieldCACertificate]...) {
			if der, err := decodeCert(v); err == nil && v != "" && der == nil {
				t.Fatalf("certificate %q decoded to nothing without an error", v)
			}
		}
	})
}
