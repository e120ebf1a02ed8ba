package policy

import "strings"

// AutoForwarded reports whether a message was forwarded automatically by
// a mailbox rule, and by which marker: RFC 3834's Auto-Submitted:
// auto-forwarded, Microsoft 365's inbox-rule and auto-forward headers,
// Google's forwarding headers, and RFC 5322 Resent-* fields. header maps
// canonical field names to their values.
func AutoForwarded(header map[string][]string) (bool, string) {
	get := func(name string) []string {
		for k, v := range header {
			if strings.EqualFold(k, name) {
				return v
			}
		}
		return nil
	}
	for _, v := range get("Auto-Submitted") {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(v)), "auto-forwarded") {
			return true, "Auto-Submitted: auto-forwarded"
		}
	}
	for _, v := range get("X-MS-Exchange-Generated-Message-Source") {
		if strings.Contains(strings.ToLower(v), "mailbox rules agent") {
			return true, "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent"
		}
	}
	for _, name := range []string{
		"X-MS-Exchange-Organization-AutoForwarded", "X-MS-Exchange-Inbox-Rules-Loop",
		"X-Forwarded-To", "X-Forwarded-For",
	} {
		if vs := get(name); len(vs) > 0 {
			if name == "X-MS-Exchange-Organization-AutoForwarded" && strings.EqualFold(strings.TrimSpace(vs[0]), "false") {
				continue
			}
			return true, name
		}
	}
	for k := range header {
		if strings.HasPrefix(strings.ToLower(k), "resent-") {
			return true, "Resent-* header"
		}
	}
	return false, ""
}
