package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDefaults(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if c.Inbound.Listen != "127.0.0.1:2525" || c.Admin.Listen != "127.0.0.1:8025" || c.DataDir != "./sealgate-data" {
		t.Errorf("contract defaults: %q %q %q", c.Inbound.Listen, c.Admin.Listen, c.DataDir)
	}
	if got := c.Inbound.TrustedNetworks; !reflect.DeepEqual(got, []string{"127.0.0.0/8", "::1/128"}) {
		t.Errorf("trusted networks %v: the defaults must trust loopback only", got)
	}
	if !c.Inbound.RequireTLS || c.Queue.RetryInitial.D() != time.Minute || c.Queue.RetryMax.D() != time.Hour ||
		c.Queue.Expiry.D() != 120*time.Hour || c.Outbound.SMTPPort != 25 {
		t.Errorf("defaults: %+v %+v", c.Inbound, c.Queue)
	}
	if c.SpoolKeyFile() != filepath.Join("sealgate-data", "spool.key") {
		t.Errorf("spool key file %q", c.SpoolKeyFile())
	}
}

func TestPartialFileKeepsOtherDefaults(t *testing.T) {
	c, err := Parse("partial.yaml", []byte("inbound:\n  listen: 0.0.0.0:25\nqueue:\n  expiry: 72h\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Inbound.Listen != "0.0.0.0:25" || c.Queue.Expiry.D() != 72*time.Hour {
		t.Errorf("changed keys not applied: %q %s", c.Inbound.Listen, c.Queue.Expiry)
	}
	if c.Inbound.MaxRecipients != 1000 || c.Queue.RetryMax.D() != time.Hour || c.Admin.Listen != "127.0.0.1:8025" {
		t.Error("keys the file does not list lost their defaults")
	}
	if c.Source != "partial.yaml" {
		t.Errorf("Source = %q", c.Source)
	}
	// Lists replace the default list.
	c, err = Parse("list.yaml", []byte("inbound:\n  trusted_networks: [\"10.0.0.0/8\"]\n"))
	if err != nil || !reflect.DeepEqual(c.Inbound.TrustedNetworks, []string{"10.0.0.0/8"}) {
		t.Errorf("list replace: %v, %v", c, err)
	}
	if _, err := Parse("empty.yaml", nil); err != nil {
		t.Errorf("an empty file must be valid: %v", err)
	}
}

// TestBadConfigs runs the golden cases in testdata/bad: each NN-name.yaml
// must be refused with exactly the error text in NN-name.err.
func TestBadConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) == 0 {
		t.Fatal("no golden cases")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".yaml") + ".err")
			if err != nil {
				t.Fatal(err)
			}
			_, err = Load(f)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load(%s) = %v, want Errors", f, err)
			}
			if got := err.Error(); got != strings.TrimSpace(string(want)) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestExampleDocumentsEveryKey keeps sealgate.example.yaml valid and
// complete: it must load, and every key of the schema must appear in it.
func TestExampleDocumentsEveryKey(t *testing.T) {
	const example = "../sealgate.example.yaml"
	if _, err := Load(example); err != nil {
		t.Fatalf("the example config does not load: %v", err)
	}
	data, _ := os.ReadFile(example)
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if n.Kind == yaml.DocumentNode {
			walk(n.Content[0], path)
			return
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := joinPath(path, n.Content[i].Value)
			present[p] = true
			walk(n.Content[i+1], p)
		}
	}
	walk(&root, "")
	for _, key := range schemaKeys(reflect.TypeFor[Config](), "") {
		if !present[key] {
			t.Errorf("sealgate.example.yaml does not document %s", key)
		}
	}
}

// schemaKeys lists the dotted paths of every YAML key of a struct type
// (list elements are not descended into).
func schemaKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		p := joinPath(prefix, tag)
		keys = append(keys, p)
		if ft := t.Field(i).Type; ft.Kind() == reflect.Struct && ft != durationType {
			keys = append(keys, schemaKeys(ft, p)...)
		}
	}
	return keys
}

func TestDurationRoundTrip(t *testing.T) {
	c, err := Parse("d.yaml", []byte("queue:\n  retry_initial: 90s\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(c.Queue)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "retry_initial: 1m30s") {
		t.Errorf("marshalled: %s", out)
	}
	c2, err := Parse("d2.yaml", []byte("queue:\n"+indent(string(out))))
	if err != nil || c2.Queue != c.Queue {
		t.Errorf("round trip: %+v vs %+v (%v)", c2.Queue, c.Queue, err)
	}
}

func indent(s string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}

func TestPasswords(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !CheckPassword(h, "correct horse") || CheckPassword(h, "wrong") {
		t.Error("bcrypt check")
	}
	if err := checkHashFormat(h); err != nil {
		t.Errorf("own hash refused: %v", err)
	}
	// argon2id (RFC 9106) of "correct horse", salt "somesaltsalt",
	// m=65536 t=3 p=2, 32-byte key, in the PHC form the argon2 tools print.
	const a2 = "$argon2id$v=19$m=65536,t=3,p=2$c29tZXNhbHRzYWx0$JG+iOQVkAfuiKLGcUg45/4EMePrNmbdMmi5XnO+XiH8"
	if err := checkHashFormat(a2); err != nil {
		t.Fatalf("argon2id hash refused: %v", err)
	}
	if !CheckPassword(a2, "correct horse") || CheckPassword(a2, "wrong") {
		t.Error("argon2id check")
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/bad/*.yaml")
	for _, s := range seeds {
		data, _ := os.ReadFile(s)
		f.Add(data)
	}
	ex, _ := os.ReadFile("../sealgate.example.yaml")
	f.Add(ex)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", c, err)
		}
	})
}

func TestRulesFileAndRecipientList(t *testing.T) {
	c, err := Parse("main.yaml", []byte("policy:\n  rules:\n    - {name: inline, match: {from: [\"x@*\"]}, chain: [escrow]}\n  rules_file: testdata/rules/good.yaml\n"))
	if err != nil {
		t.Fatal(err)
	}
	rules := c.Policy.Rules
	if len(rules) != 2 || rules[0].Name != "inline" || rules[1].Name != "file-rule" {
		t.Fatalf("rules %+v", rules)
	}
	if got := rules[1].Match.ToFileEntries; len(got) != 2 || got[0] != "*@clinic.test" || got[1] != "lab.test" {
		t.Errorf("recipient list %q", got)
	}
	_, err = Parse("main.yaml", []byte("policy:\n  rules_file: testdata/rules/with-error.yaml\n"))
	if err == nil || err.Error() != `testdata/rules/with-error.yaml:5: policy.rules[1].match.subject: rule "broken": bad regular expression: error parsing regexp: missing closing ): `+"`(oops`" {
		t.Errorf("error in a rules file: %v", err)
	}
}

// TestPathsAreRelativeToTheConfigFile: a path a config file names is
// taken from the file's directory, wherever sealgate runs; absolute
// paths and the embedded default data_dir stay as they are, and a rules
// file's to_file is relative to the rules file.
func TestPathsAreRelativeToTheConfigFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc")
	if err := os.MkdirAll(filepath.Join(dir, "rules"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "rules", "list.txt"), []byte("*@clinic.test\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "rules", "rules.yaml"), []byte("- name: listed\n  match: {to_file: list.txt}\n  chain: [tls-verified, bounce]\n"), 0o600)
	cfgFile := filepath.Join(dir, "sealgate.yaml")
	os.WriteFile(cfgFile, []byte("data_dir: state\nqueue:\n  key_file: /srv/spool.key\nescrow:\n  key_file: keys/escrow.key\npolicy:\n  rules_file: rules/rules.yaml\n"), 0o600)
	c, err := Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][2]string{
		"data_dir":          {c.DataDir, filepath.Join(dir, "state")},
		"queue.key_file":    {c.Queue.KeyFile, "/srv/spool.key"},
		"escrow.key_file":   {c.Escrow.KeyFile, filepath.Join(dir, "keys", "escrow.key")},
		"policy.rules_file": {c.Policy.RulesFile, filepath.Join(dir, "rules", "rules.yaml")},
		"to_file":           {c.Policy.Rules[0].Match.ToFile, filepath.Join(dir, "rules", "list.txt")},
	} {
		if got[0] != got[1] {
			t.Errorf("%s = %q, want %q", name, got[0], got[1])
		}
	}
	if entries := c.Policy.Rules[0].Match.ToFileEntries; len(entries) != 1 || entries[0] != "*@clinic.test" {
		t.Errorf("to_file entries %v", entries)
	}
	d, err := Default()
	if err != nil || d.DataDir != "./sealgate-data" {
		t.Errorf("default data_dir %q, %v", d.DataDir, err)
	}
}

// TestAdminOffLoopbackNeedsTLS: the admin listener may face the network
// only with a certificate.
func TestAdminOffLoopbackNeedsTLS(t *testing.T) {
	if _, err := Parse("a.yaml", []byte("admin:\n  listen: 0.0.0.0:8025\n  tls: {cert_file: /etc/c.pem, key_file: /etc/k.pem}\n")); err != nil {
		t.Errorf("with a certificate: %v", err)
	}
	if _, err := Parse("a.yaml", []byte("admin:\n  listen: 0.0.0.0:8025\n  tls: {cert_file: /etc/c.pem}\n")); err == nil || !strings.Contains(err.Error(), "give both") {
		t.Errorf("a certificate without its key: %v", err)
	}
}

// TestAnEmptyKeyKeepsTheDefaultAndItsMeaning: "data_dir:" with no value
// keeps the default, which stays relative to the working directory.
func TestAnEmptyKeyKeepsTheDefaultAndItsMeaning(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "sealgate.yaml")
	os.WriteFile(f, []byte("data_dir:\n"), 0o600)
	c, err := Load(f)
	if err != nil || c.DataDir != "./sealgate-data" {
		t.Errorf("data_dir = %q, %v", c.DataDir, err)
	}
}
