package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MTA-STS (RFC 8461): parsing a policy and matching MX hosts against it.
// Fetching and caching are I/O and live in the gateway and the spool;
// here are only the pure parts. Report-only TLSRPT (RFC 8460) is separate.

// MTASTSMode is a policy's mode.
type MTASTSMode string

// Policy modes (RFC 8461 §3.2).
const (
	MTASTSEnforce MTASTSMode = "enforce"
	MTASTSTesting MTASTSMode = "testing"
	MTASTSNone    MTASTSMode = "none"
)

// maxMTASTSAge is the largest max_age a policy may state (RFC 8461 §3.2:
// up to 31557600 seconds, about one year).
const maxMTASTSAge = 31557600

// MTASTSPolicy is a parsed policy.
type MTASTSPolicy struct {
	Mode   MTASTSMode    `json:"mode"`
	MX     []string      `json:"mx"`
	MaxAge time.Duration `json:"max_age"`
}

// ErrBadMTASTSPolicy wraps every reason a policy body is refused.
var ErrBadMTASTSPolicy = errors.New("bad MTA-STS policy")

// ParseMTASTS parses a policy body (RFC 8461 §3.2). It is strict about
// what the RFC requires — version STSv1, a known mode, max_age in range,
// at least one mx unless the mode is none, no duplicate single-valued
// keys — and ignores unknown keys, as the RFC asks for extensibility.
func ParseMTASTS(body []byte) (*MTASTSPolicy, error) {
	fail := func(format string, args ...any) (*MTASTSPolicy, error) {
		return nil, fmt.Errorf("%w: %s", ErrBadMTASTSPolicy, fmt.Sprintf(format, args...))
	}
	p := &MTASTSPolicy{}
	seen := map[string]bool{}
	for n, line := range strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n") {
		line = strings.TrimRight(line, " \t")
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return fail("line %d: no key: value", n+1)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if key != "mx" && seen[key] {
			return fail("line %d: %s given twice", n+1, key)
		}
		seen[key] = true
		switch key {
		case "version":
			if value != "STSv1" {
				return fail("version %q, want STSv1", value)
			}
		case "mode":
			switch m := MTASTSMode(value); m {
			case MTASTSEnforce, MTASTSTesting, MTASTSNone:
				p.Mode = m
			default:
				return fail("unknown mode %q", value)
			}
		case "max_age":
			secs, err := strconv.ParseUint(value, 10, 32)
			if err != nil || secs > maxMTASTSAge || len(value) > 10 {
				return fail("max_age %q is not a number of seconds up to %d", value, maxMTASTSAge)
			}
			p.MaxAge = time.Duration(secs) * time.Second
		case "mx":
			if !validMXPattern(value) {
				return fail("line %d: bad mx pattern %q", n+1, value)
			}
			p.MX = append(p.MX, strings.ToLower(value))
		}
	}
	switch {
	case !seen["version"]:
		return fail("no version")
	case p.Mode == "":
		return fail("no mode")
	case !seen["max_age"]:
		return fail("no max_age")
	case p.Mode != MTASTSNone && len(p.MX) == 0:
		return fail("mode %s without mx", p.Mode)
	}
	return p, nil
}

func validMXPattern(p string) bool {
	p = strings.TrimPrefix(p, "*.")
	if p == "" || strings.Contains(p, "*") {
		return false
	}
	for label := range strings.SplitSeq(p, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
	}
	return true
}

// MatchesMX reports whether host is allowed by the policy's mx patterns.
// A "*." pattern matches exactly one leftmost label (RFC 8461 §4.1).
func (p *MTASTSPolicy) MatchesMX(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if suffix, ok := strings.CutPrefix(pat, "*."); ok {
			label, rest, found := strings.Cut(host, ".")
			if found && label != "" && rest == suffix {
				return true
			}
		} else if host == pat {
			return true
		}
	}
	return false
}

// ParseMTASTSRecord reads the _mta-sts TXT record (RFC 8461 §3.1) and
// returns its id.
func ParseMTASTSRecord(txt string) (string, error) {
	id := ""
	for i, field := range strings.Split(txt, ";") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return "", fmt.Errorf("MTA-STS record: field %q without =", field)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case i == 0 && (k != "v" || v != "STSv1"):
			return "", fmt.Errorf("MTA-STS record does not start with v=STSv1")
		case k == "id":
			if v == "" || len(v) > 32 {
				return "", fmt.Errorf("MTA-STS record: bad id %q", v)
			}
			id = v
		}
	}
	if id == "" {
		return "", errors.New("MTA-STS record without id")
	}
	return id, nil
}
