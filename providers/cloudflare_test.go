package providers

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libdns/cloudflare"
	"github.com/libdns/libdns"
)

// fakeCloudflare checks requests against the shapes of Cloudflare's v4
// API and keeps the zone's records.
type fakeCloudflare struct {
	t     *testing.T
	token string
	mu    sync.Mutex
	next  int
	recs  map[string]map[string]any // id -> record
	seen  []string                  // "METHOD path" of every request
}

func (f *fakeCloudflare) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, r.Method+" "+r.URL.Path)
	reply := func(status int, result any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"success": status < 400, "errors": []any{}, "messages": []any{}, "result": result})
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(map[string]any{"success": false, "errors": []any{map[string]any{"code": 9109, "message": "Invalid access token"}}})
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/client/v4")
	switch {
	case r.Method == http.MethodGet && path == "/zones":
		if strings.TrimSuffix(r.URL.Query().Get("name"), ".") != "example.com" {
			reply(200, []any{})
			return
		}
		reply(200, []any{map[string]any{"id": "zone-1", "name": "example.com"}})
	case r.Method == http.MethodPost && path == "/zones/zone-1/dns_records":
		if r.Header.Get("Content-Type") != "application/json" {
			f.t.Errorf("create without a JSON content type: %q", r.Header.Get("Content-Type"))
		}
		var rec map[string]any
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &rec); err != nil {
			f.t.Errorf("create body: %v: %s", err, body)
		}
		for _, k := range []string{"type", "name", "content", "ttl"} {
			if _, ok := rec[k]; !ok {
				f.t.Errorf("create body lacks %q: %s", k, body)
			}
		}
		// Cloudflare takes names relative to the zone or absolute, and
		// stores them absolute.
		name, _ := rec["name"].(string)
		name = strings.TrimSuffix(name, ".")
		switch {
		case name == "@" || name == "":
			name = "example.com"
		case !strings.HasSuffix(name, "example.com"):
			name += ".example.com"
		}
		rec["name"] = name
		f.next++
		rec["id"] = fmt.Sprintf("rec-%d", f.next)
		f.recs[rec["id"].(string)] = rec
		reply(200, rec)
	case r.Method == http.MethodGet && path == "/zones/zone-1/dns_records":
		q := r.URL.Query()
		var out []any
		for _, rec := range f.recs {
			content, _ := rec["content"].(string)
			if rec["type"] == q.Get("type") && rec["name"] == q.Get("name") &&
				(q.Get("content.contains") == "" || strings.Contains(content, q.Get("content.contains"))) {
				out = append(out, rec)
			}
		}
		reply(200, out)
	case r.Method == http.MethodDelete && strings.HasPrefix(path, "/zones/zone-1/dns_records/"):
		id := strings.TrimPrefix(path, "/zones/zone-1/dns_records/")
		rec, ok := f.recs[id]
		if !ok {
			reply(404, nil)
			return
		}
		delete(f.recs, id)
		reply(200, map[string]any{"id": rec["id"]})
	default:
		f.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		reply(404, nil)
	}
}

// toServer sends every request to the test server, as the real client
// would send it to api.cloudflare.com.
type toServer struct{ base *url.URL }

func (t toServer) Do(req *http.Request) (*http.Response, error) {
	req.URL.Scheme, req.URL.Host = t.base.Scheme, t.base.Host
	return http.DefaultClient.Do(req)
}

func TestCloudflareKeepsForeignRecords(t *testing.T) {
	fake := &fakeCloudflare{t: t, token: "cf-token", recs: map[string]map[string]any{}}
	// A record someone else made, whose value contains certd's token.
	fake.recs["foreign"] = map[string]any{"id": "foreign", "type": "TXT", "name": "_acme-challenge.example.com", "content": `"prefix-tok-123-suffix"`, "ttl": 120}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	p, err := newCloudflare(&CloudflareConfig{})
	if err == nil {
		t.Fatal("a provider without a token was built")
	}
	p = &cloudflare.Provider{APIToken: "cf-token", HTTPClient: toServer{base}}
	rec := libdns.TXT{Name: "_acme-challenge", TTL: time.Minute, Text: "tok-123"}
	if _, err := p.AppendRecords(ctx, "example.com.", []libdns.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if len(fake.recs) != 2 {
		t.Fatalf("records after append: %v", fake.recs)
	}
	if _, err := p.DeleteRecords(ctx, "example.com.", []libdns.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if _, ok := fake.recs["foreign"]; !ok || len(fake.recs) != 1 {
		t.Fatalf("after delete: %v (the foreign record must stay, certd's must go)", fake.recs)
	}
	// A wrong token is an error, not a silent success.
	bad := &cloudflare.Provider{APIToken: "wrong", HTTPClient: toServer{base}}
	if _, err := bad.AppendRecords(ctx, "other.example.", []libdns.Record{rec}); err == nil {
		t.Fatal("a rejected token passed")
	}
	t.Logf("requests: %v", fake.seen)
}
