package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certd/certd/config"
)

// TestSyntaxErrorNamesTheLineAtFault: yaml.v3 names the line before a
// parser error, the end of the input for a construct opened on line 1, and
// no line at all for bytes that are not text; certd names the line (and
// for garbage, the column) where the text goes wrong.
func TestSyntaxErrorNamesTheLineAtFault(t *testing.T) {
	cases := []struct {
		name, data, msg string
		line, col       int
	}{
		{"quote opened on line 1", "schedule: \"*/5 * * * *\nlog: {level: info}\n\n", "found unexpected end of stream", 1, 1},
		{"quote opened later", "log: {level: info}\nschedule: '*/5 * * * *\nworkers: 2\n", "found unexpected end of stream", 2, 1},
		{"quote closed, then one left open", "schedule: \"*/5 *\n  * * *\"\nworkers: 2\nlog: {level: 'info}\n", "found unexpected end of stream", 4, 1},
		{"flow list left open", "workers: 2\nlog: [info\nschedule: x\n", "did not find expected ',' or ']'", 2, 1},
		{"text after a quoted value", "workers: 2\nschedule: \"x\" y\nlog: {}\n", "did not find expected key", 2, 1},
		{"list item in a mapping", "workers: 2\n- x\nlog: {}\n", "did not find expected key", 2, 1},
		{"key less indented", "log:\n  level: info\n format: json\nworkers: 2\n", "did not find expected key", 3, 1},
		{"key without colon", "log:\n  level\n  format: json\n", "mapping values are not allowed", 3, 1},
		{"control character", "log:\n  level: in\x01fo\n", "control characters are not allowed", 2, 12},
		{"invalid UTF-8", "workers: 2\nlog:\n  lé\xff\xfe: x\n", "invalid", 3, 5},
		{"binary from the start", "\x7fELF\x02\x01\x01\x00\x00\x00", "control characters are not allowed", 1, 1},
		{"unknown alias", "workers: 2\nlog: *nope\n", "unknown anchor", 2, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse("c.yaml", []byte(c.data), opts())
			var errs config.Errors
			if !errors.As(err, &errs) || len(errs) != 1 {
				t.Fatalf("want one config.Errors, got %v", err)
			}
			e := errs[0]
			if e.Pos.File != "c.yaml" || e.Pos.Line != c.line || e.Pos.Col != c.col || !strings.Contains(e.Msg, c.msg) {
				t.Errorf("got %v, want c.yaml:%d:%d: ...%s", e, c.line, c.col, c.msg)
			}
		})
	}
}

// TestLoadNamesTheFileThatIsNoConfiguration: a directory, or a file that
// is not text (a binary given by mistake), is refused as a config.Errors
// naming the file, and for the binary its line and column.
func TestLoadNamesTheFileThatIsNoConfiguration(t *testing.T) {
	dir := t.TempDir()
	_, err := config.Load(dir, opts())
	var errs config.Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("directory: want one config.Errors, got %T %v", err, err)
	}
	if want := dir + ": is a directory, not a configuration file"; !strings.HasPrefix(errs[0].Error(), want) {
		t.Errorf("directory: got %q, want it to start %q", errs[0], want)
	}

	bin := filepath.Join(dir, "certd")
	if err := os.WriteFile(bin, []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00>\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(bin, opts())
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("binary: want one config.Errors, got %T %v", err, err)
	}
	if want := bin + ":1:1: invalid YAML: control characters are not allowed"; errs[0].Error() != want {
		t.Errorf("binary: got %q, want %q", errs[0], want)
	}

}

// TestMisspeltKeyIsReportedOnce: a misspelt key is reported as unknown,
// with the key it stands for, and the "required" check of that key adds
// nothing (it used to come first, at the line where the block starts,
// and send the operator looking for a key that is there).
func TestMisspeltKeyIsReportedOnce(t *testing.T) {
	const head = "accounts:\n  atlas: {type: globalsign-atlas, api_key: env:K, api_secret: env:S, client_cert: /c, client_key: env:CK}\n" +
		"dns:\n  primary: {type: rfc2136, server: \"127.0.0.1:53\", key_name: k, key: env:T}\n"
	cases := []struct {
		name, data, unknown, meant string
	}{
		{"plug-in key", "accounts:\n  atlas:\n    type: globalsign-atlas\n    api_key: env:K\n    api_secret: env:S\n    client_cert: /c\n    client_kye: env:CK\nallow_empty: true\n",
			"accounts.atlas.client_kye", "client_key"},
		{"nested plug-in key", "accounts:\n  le:\n    type: acme\n    directory: https://acme.example/dir\n    eab: {kd: k, hmac_key: env:H}\nallow_empty: true\n",
			"accounts.le.eab.kd", "kid"},
		{"plug-in key, case", "accounts:\n  le:\n    type: acme\n    Directory: letsencrypt\nallow_empty: true\n",
			"accounts.le.Directory", "directory"},
		{"certificate name", head + "certificates:\n  - nmae: www\n    domains: [www.example.com]\n    account: atlas\n    dcv: {method: dns, provider: primary}\n    deploy: {dir: /srv}\n",
			"certificates[0].nmae", "name"},
		{"certificate account", head + "certificates:\n  - name: www\n    domains: [www.example.com]\n    acount: atlas\n    dcv: {method: dns, provider: primary}\n    deploy: {dir: /srv}\n",
			"certificates[0].acount", "account"},
		{"dcv method", head + "certificates:\n  - name: www\n    domains: [www.example.com]\n    account: atlas\n    dcv: {mehtod: dns, provider: primary}\n    deploy: {dir: /srv}\n",
			"certificates[0].dcv.mehtod", "method"},
		{"deploy dir", head + "certificates:\n  - name: www\n    domains: [www.example.com]\n    account: atlas\n    dcv: {method: dns, provider: primary}\n    deploy: {dri: /srv}\n",
			"certificates[0].deploy.dri", "dir"},
		{"top-level key", "certficates: []\n", "certficates", "certificates"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "certd.yaml")
			if err := os.WriteFile(path, []byte(c.data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := config.Load(path, opts())
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("want config.Errors, got %v", err)
			}
			found := false
			for _, e := range errs {
				switch {
				case e.Pos.Path == c.unknown && strings.Contains(e.Msg, "did you mean "+c.meant+"?"):
					found = true
				default:
					t.Errorf("error besides the unknown key: %v", e)
				}
			}
			if !found {
				t.Errorf("no unknown-key error at %s naming %s; got:\n%v", c.unknown, c.meant, err)
			}
		})
	}
}

// TestRequiredKeyStillReportedBesideAnUnrelatedUnknownKey: the unknown
// key hides only the key it is a misspelling of.
func TestRequiredKeyStillReportedBesideAnUnrelatedUnknownKey(t *testing.T) {
	data := "accounts:\n  atlas:\n    type: globalsign-atlas\n    api_key: env:K\n    api_secret: env:S\n    client_cert: /c\n    colour: red\nallow_empty: true\n"
	_, err := config.Parse("c.yaml", []byte(data), opts())
	if err == nil || !strings.Contains(err.Error(), "accounts.atlas.client_key: client_key is required") ||
		!strings.Contains(err.Error(), `unknown key "colour" (expected one of:`) {
		t.Errorf("want both the missing and the unknown key, got:\n%v", err)
	}
}

// TestNestedPluginKeyPaths: a key nested in a plug-in block is named by
// its dotted path (accounts.le.eab.kid), not as one quoted key
// (accounts.le["eab.kid"]), both when it is wrong and when it is missing.
func TestNestedPluginKeyPaths(t *testing.T) {
	for data, want := range map[string]string{
		"accounts:\n  le:\n    type: acme\n    directory: https://acme.example/dir\n    eab: {kid: k, hmac_key: 5}\nallow_empty: true\n": "accounts.le.eab.hmac_key: inline secrets are not accepted",
		"accounts:\n  le:\n    type: acme\n    directory: https://acme.example/dir\n    eab: {hmac_key: env:H}\nallow_empty: true\n":     "accounts.le.eab.kid: eab.kid is required",
	} {
		_, err := config.Parse("c.yaml", []byte(data), opts())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q, got:\n%v", want, err)
		}
	}
}

// TestCertificateReportsEveryBadDomain: each bad domain of a certificate
// is reported at its own line, not only the first.
func TestCertificateReportsEveryBadDomain(t *testing.T) {
	data := "accounts:\n  atlas: {type: globalsign-atlas, api_key: env:K, api_secret: env:S, client_cert: /c, client_key: env:CK}\n" +
		"dns:\n  primary: {type: rfc2136, server: \"127.0.0.1:53\", key_name: k, key: env:T}\n" +
		"certificates:\n  - name: www\n    account: atlas\n    dcv: {method: dns, provider: primary}\n    deploy: {dir: /srv}\n    domains:\n" +
		"      - bad_one.example.com\n      - www.example.com\n      - i❤.example.com\n      - www.example.com\n      - intranet\n"
	_, err := config.Parse("c.yaml", []byte(data), opts())
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want config.Errors, got %v", err)
	}
	want := map[string]int{ // path -> line
		"certificates[0].domains[0]": 11, "certificates[0].domains[2]": 13,
		"certificates[0].domains[3]": 14, "certificates[0].domains[4]": 15,
	}
	for _, e := range errs {
		if line, ok := want[e.Pos.Path]; ok && e.Pos.Line == line {
			delete(want, e.Pos.Path)
		}
	}
	for p, line := range want {
		t.Errorf("no error for %s at line %d; got:\n%v", p, line, err)
	}
}

// TestPluginBlocksReportEveryError: every plug-in type reports all the
// problems of its block at once (two unknown keys, and the checks that
// run after decoding), not only the first it meets.
func TestPluginBlocksReportEveryError(t *testing.T) {
	o := opts()
	for kind, table := range map[string]map[string]config.Decoder{"accounts": o.Accounts, "dns": o.DNS, "http": o.HTTP} {
		for typ := range table {
			t.Run(kind+"/"+typ, func(t *testing.T) {
				data := kind + ":\n  p:\n    type: " + typ + "\n    zz_first: 1\n    zz_second: 2\nallow_empty: true\n"
				_, err := config.Parse("c.yaml", []byte(data), o)
				if err == nil {
					t.Fatal("accepted")
				}
				for _, k := range []string{"zz_first", "zz_second"} {
					if !strings.Contains(err.Error(), kind+".p."+k+`: unknown key "`+k+`"`) {
						t.Errorf("no error for %s; got:\n%v", k, err)
					}
				}
			})
		}
	}
	// Checks after decoding: two problems of each account type.
	for typ, c := range map[string]struct{ block, first, second string }{
		"globalsign-atlas": {"api_secret: env:S, client_cert: /c", "api_key is required", "client_key is required"},
		"acme":             {"directory: nowhere, email: not-an-address", "unknown preset", "invalid address"},
		"sectigo":          {"login_name: n, days: 999", "login_password is required", "days must be between"},
		"reseller":         {"url: https://r.example, dcv_type: SMOKE", "username is required", "dcv_type must be"},
		"markmonitor":      {"api_key: env:K, username: u, password: env:P, certificate_type: NOPE, root_hash: MD5", "certificate_type must be", "root_hash is empty"},
	} {
		t.Run("checks/"+typ, func(t *testing.T) {
			data := "accounts:\n  p: {type: " + typ + ", " + c.block + "}\nallow_empty: true\n"
			_, err := config.Parse("c.yaml", []byte(data), o)
			if err == nil || !strings.Contains(err.Error(), c.first) || !strings.Contains(err.Error(), c.second) {
				t.Errorf("want both %q and %q, got:\n%v", c.first, c.second, err)
			}
		})
	}
}
