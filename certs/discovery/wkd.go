package discovery

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/certs"
)

// zbase32 is the alphabet of z-base-32 (draft-koch-openpgp-webkey-service
// §3.1 refers to it), which WKD uses for the hashed local part.
const zbase32 = "ybndrfg8ejkmcpqxot1uwisza345h769"

// wkdHash is the z-base-32 encoding of the SHA-1 of the lower-cased
// local part: 160 bits, 32 characters.
func wkdHash(local string) string {
	sum := sha1.Sum([]byte(strings.ToLower(local)))
	var b strings.Builder
	var acc uint32
	bits := 0
	for _, c := range sum {
		acc = acc<<8 | uint32(c)
		bits += 8
		for bits >= 5 {
			b.WriteByte(zbase32[(acc>>(bits-5))&31])
			bits -= 5
		}
	}
	if bits > 0 {
		b.WriteByte(zbase32[(acc<<(5-bits))&31])
	}
	return b.String()
}

// wkdURL is the key's URL by the advanced method (on host
// openpgpkey.DOMAIN) or the direct method (on DOMAIN itself).
func wkdURL(local, domain string, advanced bool, port int) string {
	host, path := domain, "/.well-known/openpgpkey/hu/"
	if advanced {
		host, path = "openpgpkey."+domain, "/.well-known/openpgpkey/"+domain+"/hu/"
	}
	if port != 443 {
		host = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return "https://" + host + path + wkdHash(local) + "?l=" + url.QueryEscape(local)
}

// wkd asks the domain's Web Key Directory: by the advanced method when
// openpgpkey.DOMAIN exists in the DNS, else by the direct method (the
// draft falls back only when that host does not exist, so a directory
// host that is down is not bypassed).
func (d *Discoverer) wkd(ctx context.Context, address, local, domain string) ([]certs.Key, time.Duration, string) {
	if why, ok := d.unreachable(domain); ok {
		return nil, 0, why
	}
	addrs, err := d.opts.Resolver.Addrs(ctx, "openpgpkey."+domain)
	if err != nil {
		why := "WKD: DNS lookup of openpgpkey." + domain + " failed"
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			d.rememberUnreachable(domain, why)
		}
		return nil, 0, why
	}
	advanced := len(addrs) > 0
	method := "direct"
	if advanced {
		method = "advanced"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wkdURL(local, domain, advanced, d.opts.WKDPort), nil)
	if err != nil {
		return nil, 0, "WKD: " + err.Error()
	}
	resp, err := d.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		why := fmt.Sprintf("WKD (%s) %s unreachable: %v", method, req.URL.Hostname(), err)
		if !errors.Is(err, context.Canceled) { // the caller gave up; the host may be fine
			d.rememberUnreachable(domain, why)
		}
		return nil, 0, why
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, 0, "WKD 404 (" + method + ")"
	case resp.StatusCode != http.StatusOK:
		return nil, 0, fmt.Sprintf("WKD HTTP %d (%s)", resp.StatusCode, method)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, certs.MaxDiscoveredKeyBytes+1))
	if err != nil {
		return nil, 0, fmt.Sprintf("WKD (%s): reading the answer: %v", method, err)
	}
	keys, err := certs.DiscoveredOpenPGP(data, address, certs.SourceWKD, d.opts.Now())
	if err != nil {
		return nil, 0, fmt.Sprintf("WKD (%s) key refused: %s", method, refusal(err))
	}
	return keys, 0, ""
}
