package admin

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/audit"
	"github.com/sealgate/sealgate/gateway/submit"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// TestOpenAPIDescribesEveryRouteAndNoOther: every route the API
// registers (with every option on) is in openapi.yaml, and every path
// and method there is served — no drift either way.
func TestOpenAPIDescribesEveryRouteAndNoOther(t *testing.T) {
	s := openStore(t)
	a := New(Options{Store: s, Keys: certs.NewKeyring(certs.NewSpoolKeyStore(s), nil), APIKeys: s, Requeue: &Requeuer{Store: s},
		Audit: audit.New(s, nil, nil), Metrics: http.NotFoundHandler(), Submit: submit.New(submit.Options{Spool: s}),
		Users: func() []config.User { return nil }, Engine: func() *policy.Engine { return nil },
		CheckDomain: func(context.Context, string) (any, error) { return nil, nil }})
	a.Handler(true) // pprof too: it must stay out of the description
	served := map[string]bool{}
	for _, p := range a.routes {
		method, path, _ := strings.Cut(p, " ")
		served[method+" "+path] = true
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	described := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			described[strings.ToUpper(method)+" "+path] = true
		}
	}
	var missing, stale []string
	for r := range served {
		if !described[r] && !matchesVariant(r, described) {
			missing = append(missing, r)
		}
	}
	for r := range described {
		if !served[r] && !matchesVariant(r, served) {
			stale = append(stale, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	if len(missing) > 0 {
		t.Errorf("served but not described: %v", missing)
	}
	if len(stale) > 0 {
		t.Errorf("described but not served: %v", stale)
	}
}

// TestOpenAPIDescribesEveryWayIn: the security schemes are the ways in
// that authenticate takes — X-API-Key, Bearer, Basic, OAuth 2.0 tokens
// (client credentials and password, from /oauth/token, with the scopes
// the API has) and signed requests — each is offered on every route, and
// the signed request the description gives as its example is one the
// server accepts.
func TestOpenAPIDescribesEveryWayIn(t *testing.T) {
	type flow struct {
		TokenURL string            `yaml:"tokenUrl"`
		Scopes   map[string]string `yaml:"scopes"`
	}
	type scheme struct {
		Type, In, Name, Scheme, Description string
		Flows                               map[string]flow
	}
	var doc struct {
		Security   []map[string][]string `yaml:"security"`
		Components struct {
			SecuritySchemes map[string]scheme `yaml:"securitySchemes"`
		}
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	schemes := doc.Components.SecuritySchemes
	var got []string
	for name, sc := range schemes {
		switch {
		case sc.Type == "apiKey":
			got = append(got, name+": "+sc.In+" "+sc.Name)
		case sc.Type == "http":
			got = append(got, name+": "+sc.Scheme)
		case sc.Type == "oauth2":
			for fname, f := range sc.Flows {
				got = append(got, fmt.Sprintf("%s: %s at %s, scopes %v", name, fname, f.TokenURL, slices.Sorted(maps.Keys(f.Scopes))))
			}
		default:
			got = append(got, name+": "+sc.Type)
		}
	}
	slices.Sort(got)
	want := []string{
		"apiKey: header X-API-Key",
		"basic: basic",
		"bearer: bearer",
		"oauth2: clientCredentials at /oauth/token, scopes [admin read send]",
		"oauth2: password at /oauth/token, scopes [admin read send]",
		"signedRequest: header Sealgate-Signature",
	}
	if !slices.Equal(got, want) {
		t.Errorf("security schemes:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	offered := map[string]bool{}
	for _, req := range doc.Security {
		for name := range req {
			offered[name] = true
		}
	}
	for name := range schemes {
		if !offered[name] {
			t.Errorf("scheme %s is not offered by the description's security", name)
		}
	}
	if _, ok := doc.Paths["/oauth/token"]["post"]; !ok {
		t.Error("the token URL /oauth/token is not described")
	}

	// The example signature is one the server takes.
	desc := schemes["signedRequest"].Description
	ex := regexp.MustCompile(`key (\S+) with the secret (\S+) signs\s+([A-Z]+) (\S+), empty body, at (\d+)`).FindStringSubmatch(desc)
	headers := regexp.MustCompile(`(?m)^\s*Sealgate-Signature: (key=\S+)$`).FindAllStringSubmatch(desc, -1) // the format, then the example
	if ex == nil || len(headers) != 2 {
		t.Fatalf("no worked example in the signed request's description:\n%s", desc)
	}
	s := openStore(t)
	hash := sha256.Sum256([]byte(ex[2]))
	if err := s.PutAPIKey(queue.APIKey{ID: ex[1], Name: "example", Scope: ScopeRead, Hash: hash[:], Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	a := New(Options{Store: s, APIKeys: s})
	unix, _ := strconv.ParseInt(ex[5], 10, 64)
	p, ok := a.signedPrincipal(httptest.NewRequest(ex[3], ex[4], nil), headers[1][1], time.Unix(unix, 0))
	if !ok || p.KeyID != ex[1] || !p.Signed {
		t.Errorf("the described example %s %s with %q is refused", ex[3], ex[4], headers[1][1])
	}
}

// matchesVariant: Go patterns and OpenAPI paths name a path parameter
// each their own way where one route serves two names (keys/{address}
// and keys/{fingerprint} are one pattern per method).
func matchesVariant(r string, set map[string]bool) bool {
	norm := func(s string) string {
		parts := strings.Split(s, "/")
		for i, p := range parts {
			if strings.HasPrefix(p, "{") {
				parts[i] = "{}"
			}
		}
		return strings.Join(parts, "/")
	}
	for o := range set {
		if norm(o) == norm(r) {
			return true
		}
	}
	return false
}

// TestOpenAPIExamplesMatchTheirSchemas: each example in the description
// is valid against the schema beside it (JSON Schema 2020-12, as OpenAPI
// 3.1 uses).
func TestOpenAPIExamplesMatchTheirSchemas(t *testing.T) {
	var raw any
	if err := yaml.Unmarshal(openAPI, &raw); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(jsonable(raw))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("openapi.json", doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	var walk func(v any, ptr string)
	walk = func(v any, ptr string) {
		m, ok := v.(map[string]any)
		if !ok {
			if l, ok := v.([]any); ok {
				for i, x := range l {
					walk(x, fmt.Sprintf("%s/%d", ptr, i))
				}
			}
			return
		}
		if ex, has := m["example"]; has {
			if _, hasSchema := m["schema"]; hasSchema {
				sch, err := c.Compile("openapi.json#" + ptr + "/schema")
				if err != nil {
					t.Fatalf("%s: %v", ptr, err)
				}
				if err := sch.Validate(ex); err != nil {
					t.Errorf("the example at %s does not match its schema: %v", ptr, err)
				}
				n++
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			walk(m[k], ptr+"/"+strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1"))
		}
	}
	walk(doc, "")
	if n < 8 {
		t.Errorf("%d examples checked; the description has more", n)
	}
}

// jsonable turns yaml.v3's maps into JSON's (and its ints into floats,
// as JSON numbers are read).
func jsonable(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			out[k] = jsonable(x)
		}
		return out
	case []any:
		for i, x := range v {
			v[i] = jsonable(x)
		}
		return v
	case int:
		return float64(v)
	}
	return v
}
