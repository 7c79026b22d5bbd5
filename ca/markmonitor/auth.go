package markmonitor

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
)

// expirySkew: a JWT this close to its expiry is not sent any more (clock
// differences, time in flight).
const expirySkew = 30 * time.Second

// refreshHoldOff: after a refresh failed (other than a 401), the current
// token is used this long before a refresh is tried again.
const refreshHoldOff = 30 * time.Second

// token returns a JWT to send: the current one while it has more than
// RefreshBefore left, else a refreshed one (GET /auth/refresh), else a new
// login (POST /auth/authenticate). One caller logs in at a time; callers
// that waited for it share its outcome, success or failure.
func (c *Client) token(ctx context.Context) (string, error) {
	c.mu.Lock()
	tok, exp, gen, holdOff := c.jwt, c.exp, c.gen, c.holdOff
	c.mu.Unlock()
	now := c.opts.Now()
	if c.usable(tok, exp, holdOff, now) {
		return tok, nil
	}
	select {
	case c.login <- struct{}{}:
	case <-ctx.Done():
		return "", &ca.Error{CA: caName, Op: "login", Detail: "waiting for a login in progress", Err: ctx.Err()}
	}
	defer func() { <-c.login }()
	c.mu.Lock()
	tok, exp, holdOff = c.jwt, c.exp, c.holdOff
	shared, lastErr := c.gen != gen, c.lastErr
	c.mu.Unlock()
	now = c.opts.Now()
	if c.usable(tok, exp, holdOff, now) {
		return tok, nil // another caller logged in or refreshed meanwhile
	}
	if shared && lastErr != nil {
		return "", lastErr // the attempt this caller waited for failed
	}
	if tok != "" && exp.Sub(now) > expirySkew {
		fresh, fexp, err := c.refresh(ctx, tok)
		if err == nil {
			c.set(fresh, fexp, nil)
			c.log.Debug("markmonitor: JWT refreshed", zap.Time("expires", fexp))
			return fresh, nil
		}
		if ce, ok := ca.AsError(err); !ok || ce.Status != http.StatusUnauthorized {
			// The token still works: use it, and refresh on a later call.
			c.log.Warn("markmonitor: refreshing the JWT failed; the current one is used while it lasts", zap.Error(err),
				zap.Duration("left", exp.Sub(now).Round(time.Second)))
			c.mu.Lock()
			c.gen++
			c.lastErr = nil
			c.holdOff = now.Add(refreshHoldOff)
			c.mu.Unlock()
			return tok, nil
		}
		// Refused: log in again.
	}
	fresh, fexp, err := c.authenticate(ctx)
	c.set(fresh, fexp, err)
	if err != nil {
		return "", err
	}
	c.log.Info("markmonitor: logged in", zap.Time("expires", fexp))
	return fresh, nil
}

// usable: tok has more than RefreshBefore left, or a refresh failed a
// moment ago and it has not expired yet.
func (c *Client) usable(tok string, exp, holdOff, now time.Time) bool {
	if tok == "" {
		return false
	}
	left := exp.Sub(now)
	return left > c.opts.RefreshBefore || (now.Before(holdOff) && left > expirySkew)
}

// set records a login or refresh attempt's outcome.
func (c *Client) set(tok string, exp time.Time, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.lastErr = err
	if err == nil {
		c.jwt, c.exp = tok, exp
	}
}

// drop forgets tok after the API refused it, unless another caller has
// already replaced it.
func (c *Client) drop(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jwt == tok {
		c.jwt, c.exp = "", time.Time{}
	}
}

// authenticate logs in with the username and password.
func (c *Client) authenticate(ctx context.Context) (string, time.Time, error) {
	r := request{route: "POST /auth/authenticate", method: http.MethodPost, auth: true, path: "/auth/authenticate",
		body: Credentials{Username: c.opts.Username, Password: c.opts.Password.Reveal()}}
	resp, err := c.send(ctx, r)
	if err != nil {
		return "", time.Time{}, err
	}
	if resp.status < 200 || resp.status >= 300 {
		return "", time.Time{}, c.statusError(r, resp)
	}
	return c.readToken(r, resp)
}

// refresh renews tok.
func (c *Client) refresh(ctx context.Context, tok string) (string, time.Time, error) {
	r := request{route: "GET /auth/refresh", method: http.MethodGet, auth: true, path: "/auth/refresh", token: tok}
	resp, err := c.send(ctx, r)
	if err != nil {
		return "", time.Time{}, err
	}
	if resp.status < 200 || resp.status >= 300 {
		return "", time.Time{}, c.statusError(r, resp)
	}
	return c.readToken(r, resp)
}

func (c *Client) readToken(r request, resp *response) (string, time.Time, error) {
	tok := tokenOf(resp.body)
	if tok == "" {
		return "", time.Time{}, c.failure(r, resp.status, "the answer holds no token", false, errors.New("no JWT in the answer"))
	}
	now := c.opts.Now()
	exp := now.Add(c.opts.TokenLifetime)
	if e, ok := jwtExpiry(tok); ok && e.Before(exp) {
		exp = e // the token says it lasts less
	}
	return tok, exp, nil
}

// maxJWTExp is the largest exp claim read (Unix seconds, the year 33658).
const maxJWTExp = 1e12

// jwtExpiry reads a JWT's exp claim, without verifying the token (the API
// does that; the client only schedules its refresh).
func jwtExpiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == "" {
		return time.Time{}, false
	}
	f, err := claims.Exp.Float64()
	// An exp beyond any real instant (1e300) would overflow int64 into
	// the distant past, and the token would be refreshed before every
	// call (found by FuzzTokenAnswer): it is read as no exp at all.
	if err != nil || f < 1 || f > maxJWTExp {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}
