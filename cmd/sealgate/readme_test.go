package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeCommands keeps the README honest: it names exactly the two
// set-up commands, CI runs the test command as written, and the config
// examples it shows work.
func TestReadmeCommands(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllSubmatch(readme, -1)
	if len(blocks) < 2 {
		t.Fatalf("README has %d sh blocks, want the run and test commands first", len(blocks))
	}
	run, test := strings.TrimSpace(string(blocks[0][1])), strings.TrimSpace(string(blocks[1][1]))
	if run != "go run ./cmd/sealgate serve" {
		t.Errorf("first README command %q, want the run command", run)
	}
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ci), "\n"+test+"\n") {
		t.Errorf(".ci/run does not run the README's test command %q", test)
	}
	// "sealgate config check" on the documented example succeeds.
	if code, out, errOut := sealgate(t, "config", "check", "../../sealgate.example.yaml"); code != 0 {
		t.Errorf("config check of the example: exit %d %s %s", code, out, errOut)
	}
	// The serve defaults the README states are the embedded ones.
	for _, s := range []string{"127.0.0.1:2525", "127.0.0.1:8025", "./sealgate-data", "[127.0.0.0/8, ::1/128]"} {
		if !strings.Contains(string(readme), s) {
			t.Errorf("README does not state the default %s", s)
		}
	}
}

// TestDocsSayTheCertificateFileHoldsTheFullChain: Microsoft 365
// connectors and Google Workspace routes validate the listener's chain
// and name, so the set-up sections of the README and the example config
// say that inbound.tls.cert_file holds the full chain, leaf first.
func TestDocsSayTheCertificateFileHoldsTheFullChain(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../sealgate.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	section := func(doc, start, end string) string {
		_, rest, ok := strings.Cut(doc, start)
		body, _, _ := strings.Cut(rest, end)
		if !ok {
			t.Fatalf("no section %q", start)
		}
		return body
	}
	for name, text := range map[string]string{
		"README, Microsoft 365":    section(string(readme), "### Microsoft 365", "\n### "),
		"README, Google Workspace": section(string(readme), "### Google Workspace", "\n### "),
		"example, inbound.tls":     section(string(example), "\n  tls:\n", "\n    key_file:"),
	} {
		text = strings.Join(strings.Fields(strings.ReplaceAll(text, "#", "")), " ")
		for _, want := range []string{"cert_file", "full chain", "first, then", "intermediates"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s does not say %q (that cert_file holds the full chain, leaf first):\n%s", name, want, text)
			}
		}
	}
}
