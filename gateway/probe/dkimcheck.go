package probe

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/internal/dnsres"
)

// DKIMCheck is the verdict on one configured key's DNS record.
type DKIMCheck struct {
	Name      string // selector._domainkey.domain
	KeyFile   string
	Published string // the TXT record found, "" if none
	Want      string // the record the key needs
	OK        bool
	Problem   string
}

// CheckDKIM looks up the DKIM records of domain's configured keys through
// the configured resolver and says whether each matches its key. It
// returns an error only when the domain has no key configured.
func CheckDKIM(ctx context.Context, cfg *config.Config, domain string) ([]DKIMCheck, error) {
	r, err := dnsres.New(cfg.Outbound.DNSResolver, 10*time.Second)
	if err != nil {
		return nil, err
	}
	var out []DKIMCheck
	for _, k := range cfg.DKIM.Keys {
		if !strings.EqualFold(k.Domain, domain) {
			continue
		}
		c := DKIMCheck{Name: k.Selector + "._domainkey." + strings.ToLower(k.Domain), KeyFile: k.KeyFile}
		key, err := config.LoadDKIMKey(k.KeyFile)
		if err != nil {
			c.Problem = err.Error()
			out = append(out, c)
			continue
		}
		if c.Want, err = certs.DKIMRecord(key); err != nil {
			c.Problem = err.Error()
			out = append(out, c)
			continue
		}
		txts, err := r.TXT(ctx, c.Name)
		switch {
		case err != nil:
			c.Problem = err.Error()
		case len(txts) == 0:
			c.Problem = "no TXT record published"
		default:
			c.Published = txts[0]
			c.OK = dkimTag(c.Published, "p") == dkimTag(c.Want, "p")
			if !c.OK {
				c.Problem = "the published public key (p=) is not this key's"
			}
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no DKIM key configured for %s (dkim.keys)", domain)
	}
	return out, nil
}

// dkimTag returns the value of tag in a DKIM tag list, whitespace removed.
func dkimTag(record, tag string) string {
	for part := range strings.SplitSeq(record, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.TrimSpace(k) == tag {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return ""
}
