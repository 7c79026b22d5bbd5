package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Webhook posts messages as JSON. With Slack set, the body is Slack's
// incoming-webhook shape ({"text": ...}); otherwise certd's own fields.
type Webhook struct {
	URL    string // may embed a token: never logged
	Slack  bool
	Client *http.Client
}

// Name implements Sender.
func (w *Webhook) Name() string { return "webhook" }

// Send implements Sender.
func (w *Webhook) Send(ctx context.Context, m Message) error {
	var body any = map[string]any{"kind": m.Kind, "certificate": m.Cert, "account": m.Account, "domains": m.Domains,
		"subject": m.Subject, "text": m.Text, "time": m.At.UTC().Format(time.RFC3339)}
	if w.Slack {
		body = map[string]string{"text": "*" + m.Subject + "*\n" + render(m)}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("building the request: invalid URL") // the URL may hold a token: not echoed
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "certd")
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("posting to %s: %w", req.URL.Host, unwrapURLError(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %d", req.URL.Host, resp.StatusCode)
	}
	return nil
}

// unwrapURLError drops *url.Error's copy of the URL (it may hold a token).
func unwrapURLError(err error) error {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && u.Unwrap() != nil {
		return u.Unwrap()
	}
	return err
}
