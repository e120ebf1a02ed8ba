package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on the unit we ship,
// with ExecStart pointed at a freshly built sealgate (verify checks that
// the commands exist). It needs no running systemd. Any complaint about
// the unit — an unknown key is only a warning to verify — fails the test.
func TestSystemdUnitVerifies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: apt-get install systemd); the unit is not verified")
	}
	unit, err := os.ReadFile("../../packaging/sealgate.service")
	if err != nil {
		t.Fatal(err)
	}
	const shipped = "\nExecStart=/usr/local/bin/sealgate "
	if strings.Count(string(unit), shipped) != 1 {
		t.Fatalf("the unit has no line %q to point at the test's binary", strings.TrimSpace(shipped))
	}
	bin := buildBinary(t)
	path := filepath.Join(t.TempDir(), "sealgate.service")
	writeFile(t, path, strings.Replace(string(unit), shipped, "\nExecStart="+bin+" ", 1))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, "sealgate.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		} else if line != "" {
			t.Logf("systemd-analyze verify (not about our unit): %s", line)
		}
	}
}
