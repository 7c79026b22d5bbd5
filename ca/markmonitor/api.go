package markmonitor

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/certd/certd/ca"
)

// The paths of guide §7 under the cert service base, and of §5.2 under
// the authentication service base.
const (
	pathOrganization = "/organization"
	pathContact      = "/contact"
	pathOrder        = "/order"
)

// ValidID reports whether id can be a resourceId: the guide says a UUID;
// any run of letters, digits and dashes is accepted, so that it is safe
// in a path.
func ValidID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	return strings.IndexFunc(id, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-')
	}) < 0
}

func idError(what, id string) error {
	return planError(what, fmt.Errorf("markmonitor: %q is not a resourceId", id))
}

// Login logs in now (or refreshes the JWT if due): a check of the
// credentials. Other calls log in by themselves.
func (c *Client) Login(ctx context.Context) error {
	_, err := c.token(ctx)
	return err
}

// list reads every page of a listing (at most MaxPages); complete=false
// when more pages were left unread.
func (c *Client) list(ctx context.Context, route, path string, query url.Values) ([]json.RawMessage, bool, error) {
	var all []json.RawMessage
	for i := 0; i < c.opts.MaxPages; i++ {
		page := c.opts.FirstPage + i
		q := url.Values{}
		for k, v := range query {
			q[k] = v
		}
		q.Set("page", strconv.Itoa(page))
		q.Set("size", strconv.Itoa(c.opts.PageSize))
		r := request{route: route, method: http.MethodGet, path: path, query: q, bearer: true}
		resp, err := c.do(ctx, r)
		if err != nil {
			return nil, false, err
		}
		items, more, err := pageOf(resp.body, page, c.opts.FirstPage, c.opts.PageSize)
		if err != nil {
			return nil, false, c.failure(r, resp.status, "the page is not what certd expects: "+snippet(resp.body), false, err)
		}
		all = append(all, items...)
		if !more {
			return all, true, nil
		}
	}
	return all, false, nil
}

// FindOrganizations lists the account's organisations filtered by name
// (GET /organization?name=).
func (c *Client) FindOrganizations(ctx context.Context, name string) ([]Organization, error) {
	raw, complete, err := c.list(ctx, "GET /organization", pathOrganization, url.Values{"name": {name}})
	if err != nil {
		return nil, err
	}
	if !complete {
		return nil, &ca.Error{CA: caName, Op: "GET /organization", Detail: fmt.Sprintf("more than %d pages of organisations named %q", c.opts.MaxPages, name)}
	}
	out := make([]Organization, 0, len(raw))
	for _, item := range raw {
		var o Organization
		if err := json.Unmarshal(item, &o); err != nil {
			return nil, &ca.Error{CA: caName, Op: "GET /organization", Detail: "an organisation is not what certd expects: " + snippet(item), Err: err}
		}
		out = append(out, o)
	}
	return out, nil
}

// Organization reads an organisation (GET /organization/{id}).
func (c *Client) Organization(ctx context.Context, id string) (Organization, error) {
	if !ValidID(id) {
		return Organization{}, idError("GET /organization/{id}", id)
	}
	r := request{route: "GET /organization/{id}", method: http.MethodGet, path: pathOrganization + "/" + id, bearer: true}
	var o Organization
	resp, err := c.do(ctx, r)
	if err == nil {
		err = c.decode(r, resp, &o)
	}
	return o, err
}

// CreateOrganization creates an organisation with its contacts (POST
// /organization, 201). A lost answer is ambiguous.
func (c *Client) CreateOrganization(ctx context.Context, org NewOrganization) (Organization, error) {
	r := request{route: "POST /organization", method: http.MethodPost, path: pathOrganization, body: org, bearer: true, commits: true}
	var o Organization
	resp, err := c.do(ctx, r)
	if err == nil {
		err = c.decode(r, resp, &o)
	}
	return o, err
}

// CreateContact adds a contact to an organisation (POST /contact, 201). A
// lost answer is ambiguous.
func (c *Client) CreateContact(ctx context.Context, ct NewContact) (Contact, error) {
	r := request{route: "POST /contact", method: http.MethodPost, path: pathContact, body: ct, bearer: true, commits: true}
	var out Contact
	resp, err := c.do(ctx, r)
	if err == nil {
		err = c.decode(r, resp, &out)
	}
	return out, err
}

// CreateOrder places an order (POST /order, 202 with the order). It is
// paid: a lost answer (or a 5xx) is ambiguous.
func (c *Client) CreateOrder(ctx context.Context, o NewOrder) (OrderInfo, error) {
	r := request{route: "POST /order", method: http.MethodPost, path: pathOrder, body: o, bearer: true, commits: true}
	var out OrderInfo
	resp, err := c.do(ctx, r)
	if err == nil {
		err = c.decode(r, resp, &out)
	}
	return out, err
}

// Order reads an order with its certificate and status (GET
// /order/{id}).
func (c *Client) Order(ctx context.Context, id string) (OrderInfo, error) {
	if !ValidID(id) {
		return OrderInfo{}, idError("GET /order/{id}", id)
	}
	r := request{route: "GET /order/{id}", method: http.MethodGet, path: pathOrder + "/" + id, bearer: true}
	var out OrderInfo
	resp, err := c.do(ctx, r)
	if err == nil {
		err = c.decode(r, resp, &out)
	}
	return out, err
}

// OrderQuery filters the order search (guide §7.4.3). Empty fields are
// not sent.
type OrderQuery struct {
	CommonNames      []string
	Statuses         []string
	CertificateTypes []string
	OrganizationID   string
}

// SearchOrders lists the orders matching q (GET /order, every page up to
// MaxPages); complete=false when pages were left unread.
func (c *Client) SearchOrders(ctx context.Context, q OrderQuery) ([]OrderInfo, bool, error) {
	query := url.Values{}
	for k, v := range map[string][]string{"commonNames": q.CommonNames, "statuses": q.Statuses, "certificateTypes": q.CertificateTypes} {
		if len(v) > 0 {
			query.Set(k, strings.Join(v, ","))
		}
	}
	if q.OrganizationID != "" {
		query.Set("organizationId", q.OrganizationID)
	}
	raw, complete, err := c.list(ctx, "GET /order", pathOrder, query)
	if err != nil {
		return nil, false, err
	}
	out := make([]OrderInfo, 0, len(raw))
	for _, item := range raw {
		var o OrderInfo
		if err := json.Unmarshal(item, &o); err != nil {
			return nil, false, &ca.Error{CA: caName, Op: "GET /order", Detail: "an order is not what certd expects: " + snippet(item), Err: err}
		}
		out = append(out, o)
	}
	return out, complete, nil
}

// Download reads the order's certificate in format (p7b or pem_all),
// with the Accept header the guide requires. It returns the body and its
// Content-Type.
func (c *Client) Download(ctx context.Context, id, format string) ([]byte, string, error) {
	if !ValidID(id) {
		return nil, "", idError("GET /order/{id}/downloadCert", id)
	}
	r := request{route: "GET /order/{id}/downloadCert", method: http.MethodGet, path: pathOrder + "/" + id + "/downloadCert",
		query: url.Values{"format": {format}}, accept: AcceptPKCS7, bearer: true}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, "", err
	}
	return resp.body, resp.header.Get("Content-Type"), nil
}

// Action changes an order (PATCH /order/{id}/{action}) and returns it as
// the API answers. Actions commit: a lost answer is ambiguous. body may
// be nil.
func (c *Client) Action(ctx context.Context, id, action string, body any) (OrderInfo, error) {
	route := "PATCH /order/{id}/" + action
	if !ValidID(id) {
		return OrderInfo{}, idError(route, id)
	}
	if action == "" || strings.ContainsAny(action, "/?#% ") {
		return OrderInfo{}, planError(route, fmt.Errorf("markmonitor: %q is not an action", action))
	}
	r := request{route: route, method: http.MethodPatch, path: pathOrder + "/" + id + "/" + action, body: body, bearer: true, commits: true}
	resp, err := c.do(ctx, r)
	if err != nil {
		return OrderInfo{}, err
	}
	var out OrderInfo
	if len(strings.TrimSpace(string(resp.body))) == 0 {
		return out, nil // an action may answer without a body
	}
	if err := c.decode(r, resp, &out); err != nil {
		return OrderInfo{}, err
	}
	return out, nil
}
