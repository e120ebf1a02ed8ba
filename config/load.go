package config

import (
	"cmp"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

//go:embed defaults.yaml
var defaultsYAML []byte

// defaultsName is how errors name the embedded defaults.
const defaultsName = "(defaults)"

// FieldError is one problem in a config file: where it is and what is
// wrong.
type FieldError struct {
	File string
	Line int
	Path string // dotted key path, "inbound.trusted_networks[1]"
	Msg  string
}

func (e *FieldError) Error() string {
	switch {
	case e.Path == "" && e.Line == 0:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	case e.Path == "":
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	case e.Line == 0:
		return fmt.Sprintf("%s: %s: %s", e.File, e.Path, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Path, e.Msg)
}

// Errors is every problem found in a config, in file order.
type Errors []*FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Default returns the embedded default configuration.
func Default() (*Config, error) {
	return Parse("", nil)
}

// Load reads path, overlays it on the embedded defaults and validates the
// result. The error is an Errors value naming file, line and key of each
// problem.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	return Parse(path, data)
}

// Parse is Load for data already read; name is used in errors. An empty
// name with nil data yields the defaults.
func Parse(name string, data []byte) (*Config, error) {
	d := &decoder{pos: map[string]position{}}
	cfg := &Config{}
	if d.decodeFile(defaultsName, defaultsYAML, cfg); len(d.errs) > 0 {
		return nil, d.errs // a broken embedded default is a build defect
	}
	if name != "" {
		if !d.decodeFile(name, data, cfg) {
			return nil, d.errs // a syntax error: nothing else is reliable
		}
		cfg.Source = name
	}
	d.resolvePaths(cfg)
	if f := cfg.Policy.RulesFile; f != "" {
		d.decodeRulesFile(f, cfg)
	}
	d.resolveRulePaths(cfg)
	// Values that did not decode keep their defaults, so validation
	// still finds the file's other problems: report them all at once.
	v := &validator{pos: d.pos}
	v.validate(cfg)
	cfg.pos = d.pos
	errs := append(d.errs, v.errs...)
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *FieldError) int {
			return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
		})
		return nil, errs
	}
	return cfg, nil
}

// position is where a key's value was last set.
type position struct {
	file string
	line int
}

// decoder walks yaml.Node trees into the Config structs, so that every
// error knows its line, and remembers where each key path was set so
// validation can point at the value it rejects.
type decoder struct {
	errs Errors
	pos  map[string]position
	file string
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{File: d.file, Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// decodeFile overlays one YAML document on cfg; it reports false when
// the file is not YAML at all.
func (d *decoder) decodeFile(name string, data []byte, cfg *Config) bool {
	d.file = name
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		d.errs = append(d.errs, yamlSyntaxError(name, err))
		return false
	}
	if len(doc.Content) == 0 {
		return true // an empty file changes nothing
	}
	d.decode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "")
	return true
}

// relativeTo makes *p, set at key, relative to the directory of the file
// that set it: a config file means the paths it names from where it
// lies, not from wherever sealgate was started. Absolute paths, empty
// ones and the embedded defaults' (data_dir "./sealgate-data": the
// working directory, for the quick start) stay as they are.
func (d *decoder) relativeTo(key string, p *string) {
	pos, ok := d.pos[key]
	if !ok || pos.file == defaultsName || *p == "" || filepath.IsAbs(*p) {
		return
	}
	*p = filepath.Join(filepath.Dir(pos.file), *p)
}

// resolvePaths applies relativeTo to every path of the config file.
func (d *decoder) resolvePaths(cfg *Config) {
	d.relativeTo("data_dir", &cfg.DataDir)
	d.relativeTo("inbound.tls.cert_file", &cfg.Inbound.TLS.CertFile)
	d.relativeTo("inbound.tls.key_file", &cfg.Inbound.TLS.KeyFile)
	d.relativeTo("queue.key_file", &cfg.Queue.KeyFile)
	for i := range cfg.Outbound.ExtraRootCAs {
		d.relativeTo(fmt.Sprintf("outbound.extra_root_cas[%d]", i), &cfg.Outbound.ExtraRootCAs[i])
	}
	d.relativeTo("outbound.smarthost.password_file", &cfg.Outbound.Smarthost.PasswordFile)
	for i := range cfg.DKIM.Keys {
		d.relativeTo(fmt.Sprintf("dkim.keys[%d].key_file", i), &cfg.DKIM.Keys[i].KeyFile)
	}
	d.relativeTo("policy.rules_file", &cfg.Policy.RulesFile)
	d.relativeTo("keys.archive_key_file", &cfg.Keys.ArchiveKeyFile)
	for i := range cfg.Keys.SMIMERoots {
		d.relativeTo(fmt.Sprintf("keys.smime_roots[%d]", i), &cfg.Keys.SMIMERoots[i])
	}
	d.relativeTo("escrow.key_file", &cfg.Escrow.KeyFile)
	d.relativeTo("audit.signing_key", &cfg.Audit.SigningKey)
	for i := range cfg.Webhooks.Endpoints {
		d.relativeTo(fmt.Sprintf("webhooks.endpoints[%d].secret_file", i), &cfg.Webhooks.Endpoints[i].SecretFile)
	}
	d.relativeTo("portal.tls.cert_file", &cfg.Portal.TLS.CertFile)
	d.relativeTo("admin.tls.cert_file", &cfg.Admin.TLS.CertFile)
	d.relativeTo("admin.tls.key_file", &cfg.Admin.TLS.KeyFile)
	d.relativeTo("portal.tls.key_file", &cfg.Portal.TLS.KeyFile)
	d.relativeTo("store.postgres.key_file", &cfg.Store.Postgres.KeyFile)
	d.relativeTo("escrow.object_store.access_key_file", &cfg.Escrow.ObjectStore.AccessKeyFile)
	d.relativeTo("escrow.object_store.secret_key_file", &cfg.Escrow.ObjectStore.SecretKeyFile)
}

// resolveRulePaths applies relativeTo to the rules' to_file, inline or
// from policy.rules_file (relative to that file).
func (d *decoder) resolveRulePaths(cfg *Config) {
	for i := range cfg.Policy.Rules {
		d.relativeTo(fmt.Sprintf("policy.rules[%d].match.to_file", i), &cfg.Policy.Rules[i].Match.ToFile)
	}
}

// decodeRulesFile appends the rules of policy.rules_file (a YAML list of
// rules) to the inline ones; errors name that file and its lines.
func (d *decoder) decodeRulesFile(file string, cfg *Config) {
	data, err := os.ReadFile(file)
	if err != nil {
		p := d.pos["policy.rules_file"]
		d.errs = append(d.errs, &FieldError{File: p.file, Line: p.line, Path: "policy.rules_file", Msg: fmt.Sprintf("cannot read %s: %v", file, unwrapPathError(err))})
		return
	}
	d.file = file
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		d.errs = append(d.errs, yamlSyntaxError(file, err))
		return
	}
	if len(doc.Content) == 0 {
		return
	}
	list := doc.Content[0]
	if list.Kind != yaml.SequenceNode {
		d.fail(list, "policy.rules_file", "expected a list of rules, got %s", describe(list))
		return
	}
	for _, item := range list.Content {
		var r Rule
		idx := len(cfg.Policy.Rules)
		d.decode(item, reflect.ValueOf(&r).Elem(), fmt.Sprintf("policy.rules[%d]", idx))
		cfg.Policy.Rules = append(cfg.Policy.Rules, r)
	}
}

var durationType = reflect.TypeFor[Duration]()

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		if v.Kind() == reflect.Slice {
			v.SetLen(0)
			d.pos[path] = position{d.file, n.Line}
		}
		return // "key:" with no value keeps the current value (and where it came from)
	}
	d.pos[path] = position{d.file, n.Line}
	if v.Type() == durationType {
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "expected a duration like \"90s\", \"5m\" or \"120h\"")
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			d.fail(n, path, "expected a duration like \"90s\", \"5m\" or \"120h\", got %q", n.Value)
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "expected a mapping of keys, got %s", describe(n))
			return
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			sub := joinPath(path, key.Value)
			if seen[key.Value] {
				d.fail(key, sub, "key given twice")
				continue
			}
			seen[key.Value] = true
			f, ok := fieldByTag(v, key.Value)
			if !ok {
				d.fail(key, sub, "unknown key %q", key.Value)
				continue
			}
			d.decode(val, f, sub)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "expected a mapping, got %s", describe(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			sub := joinPath(path, key.Value)
			d.pos[sub] = position{d.file, key.Line}
			elem := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, elem, sub)
			m.SetMapIndex(reflect.ValueOf(key.Value).Convert(v.Type().Key()), elem)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "expected a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || err != nil {
			d.fail(n, path, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			d.fail(n, path, "expected an integer, got %s", describe(n))
			return
		}
		if v.OverflowInt(i) {
			d.fail(n, path, "integer %s out of range", n.Value)
			return
		}
		v.SetInt(i)
	default:
		d.fail(n, path, "unsupported config field type %s", v.Type())
	}
}

// fieldByTag finds the struct field whose yaml tag is key.
func fieldByTag(v reflect.Value, key string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag == key && tag != "-" {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// yamlSyntaxError turns yaml's "yaml: line N: msg" into a FieldError.
func yamlSyntaxError(file string, err error) *FieldError {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, after
			}
		}
	}
	return &FieldError{File: file, Line: line, Msg: "invalid YAML: " + msg}
}

// MarshalYAML writes a Duration as "90s".
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// String formats a Duration as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }
