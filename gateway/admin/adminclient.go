package admin

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/sealgate/sealgate/queue"
)

// AdminClient runs queue operations against a running server through its
// admin HTTP API. It implements QueueOps.
type AdminClient struct {
	base  string
	token string
	http  *http.Client
}

// NewAdminClient returns a client for the admin listener at addr
// (host:port) that presents token (the data dir's admin.token).
func NewAdminClient(addr, token string) *AdminClient {
	return &AdminClient{
		base:  "http://" + dialable(addr),
		token: token,
		http:  &http.Client{Timeout: 30 * time.Second},
	}
}

// NewAdminClientTLS is NewAdminClient for a listener with admin.tls: it
// speaks HTTPS and trusts exactly the certificate in certFile (the
// listener's own, pinned: the CLI runs beside the server, and a name
// check against a wildcard listen address would mean nothing).
func NewAdminClientTLS(addr, token, certFile string) (*AdminClient, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("admin.tls certificate: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("admin.tls certificate %s: no PEM CERTIFICATE", certFile)
	}
	pinned := block.Bytes
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], pinned) {
				return errors.New("the admin listener's certificate is not the one in admin.tls.cert_file")
			}
			return nil
		},
	}
	return &AdminClient{base: "https://" + dialable(addr), token: token, http: &http.Client{Timeout: 30 * time.Second, Transport: tr}}, nil
}

// dialable turns a wildcard listen address into one a client can dial
// on this machine.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// List returns every message in the spool, oldest first.
func (c *AdminClient) List() ([]queue.Message, error) {
	var all []queue.Message
	after := ""
	for {
		msgs, next, err := c.ListPage(after, maxPage)
		if err != nil {
			return nil, err
		}
		all = append(all, msgs...)
		if next == "" {
			return all, nil
		}
		after = next
	}
}

// ListPage returns one page of the queue (see QueueOps).
func (c *AdminClient) ListPage(after string, limit int) ([]queue.Message, string, error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var msgs []queue.Message
	h, err := c.call(http.MethodGet, "/api/v1/queue?"+q.Encode(), nil, &msgs)
	if err != nil {
		return nil, "", err
	}
	return msgs, h.Get("Next-After"), nil
}

// Get returns one message's envelope, recipients and history.
func (c *AdminClient) Get(id string) (*queue.Message, error) {
	var m queue.Message
	if err := c.do(http.MethodGet, "/api/v1/queue/"+url.PathEscape(id), &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Resolve turns a unique ID prefix into the message's ID.
func (c *AdminClient) Resolve(prefix string) (string, error) {
	m, err := c.Get(prefix)
	if err != nil {
		return "", err
	}
	return m.ID, nil
}

// Retry makes the pending recipients of id due now.
func (c *AdminClient) Retry(id string) error {
	return c.do(http.MethodPost, "/api/v1/queue/"+url.PathEscape(id)+"/retry", nil)
}

// RetryAll makes every pending recipient due now.
func (c *AdminClient) RetryAll() (int, error) {
	var res struct{ Retried int }
	err := c.do(http.MethodPost, "/api/v1/queue/retry", &res)
	return res.Retried, err
}

// Delete removes a message from the spool.
func (c *AdminClient) Delete(id string) error {
	return c.do(http.MethodDelete, "/api/v1/queue/"+url.PathEscape(id), nil)
}

// Hold stops delivery attempts of id until Release.
func (c *AdminClient) Hold(id string) error {
	return c.do(http.MethodPost, "/api/v1/queue/"+url.PathEscape(id)+"/hold", nil)
}

// Release lets a held message be delivered again.
func (c *AdminClient) Release(id string) error {
	return c.do(http.MethodPost, "/api/v1/queue/"+url.PathEscape(id)+"/release", nil)
}

// Domains lists the TLS history of destination domains.
func (c *AdminClient) Domains() ([]queue.DomainInfo, error) {
	var ds []queue.DomainInfo
	err := c.do(http.MethodGet, "/api/v1/domains", &ds)
	return ds, err
}

// ResetDomain forgets what was learned about a domain's TLS.
func (c *AdminClient) ResetDomain(domain string) error {
	return c.do(http.MethodPost, "/api/v1/domains/"+url.PathEscape(domain)+"/reset", nil)
}

// errConflict is a 409: the server cannot do that in its present
// configuration (escrow routes on a node without escrow).
var errConflict = errors.New("admin API: not available on this server")

func (c *AdminClient) do(method, path string, out any) error {
	return c.doBody(method, path, nil, out)
}

// doBody sends in (when not nil) as a JSON body and decodes the reply
// into out.
func (c *AdminClient) doBody(method, path string, in, out any) error {
	_, err := c.call(method, path, in, out)
	return err
}

// send is doBody under the name the key commands use.
func (c *AdminClient) send(method, path string, in, out any) error {
	return c.doBody(method, path, in, out)
}

// call sends one request and decodes the answer into out; it returns
// the response's header.
func (c *AdminClient) call(method, path string, in, out any) (http.Header, error) {
	var reqBody io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		reqBody = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.base+path, reqBody)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil || method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: %w", c.base, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, queue.ErrNotFound
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, ErrUnauthorized
	case resp.StatusCode == http.StatusConflict:
		return nil, errConflict
	case resp.StatusCode == http.StatusUnprocessableEntity:
		var e struct{ Error, Kind string }
		_ = json.Unmarshal(body, &e)
		return nil, &refusedError{msg: e.Error, kind: e.Kind}
	case resp.StatusCode != http.StatusOK:
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		return nil, fmt.Errorf("admin API at %s: %s: %s", c.base, resp.Status, e.Error)
	}
	if out == nil {
		return resp.Header, nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return nil, fmt.Errorf("admin API at %s: bad response: %w", c.base, err)
	}
	return resp.Header, nil
}
