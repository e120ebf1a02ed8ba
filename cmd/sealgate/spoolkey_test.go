package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testutil"
)

// `sealgate serve` on a spool whose key is missing or belongs to another
// spool must refuse to start (exit 1, naming the key file), and leave the
// spool as it was: with the right key back, the mail is still queued.
func TestServeRefusesMissingOrWrongSpoolKey(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	seedSpool(t, data)
	keyFile := filepath.Join(data, "spool.key")
	otherData := filepath.Join(dir, "other")
	seedSpool(t, otherData)

	serveWith := func(extra string) (int, string) {
		t.Helper()
		cfg := filepath.Join(dir, "sealgate.yaml")
		writeFile(t, cfg, fmt.Sprintf("data_dir: %s\ninbound: {listen: 127.0.0.1:%d}\nadmin: {listen: 127.0.0.1:%d}\n%s",
			data, testutil.FreePort(t), testutil.FreePort(t), extra))
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "serve", "--config", cfg).CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("serve did not refuse to start:\n%s", out)
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		return 0, string(out)
	}

	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(keyFile)
	if code, out := serveWith(""); code != 1 || !strings.Contains(out, keyFile) || !strings.Contains(out, "restore the key file") {
		t.Errorf("serve without the spool key: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(keyFile); err == nil {
		t.Error("serve created a new key for a spool that holds mail")
	}

	otherKey := filepath.Join(otherData, "spool.key")
	if code, out := serveWith("queue: {key_file: " + otherKey + "}\n"); code != 1 || !strings.Contains(out, otherKey) || !strings.Contains(out, "not the key of the spool") {
		t.Errorf("serve with another spool's key: exit %d\n%s", code, out)
	}

	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "data_dir: "+data+"\n")
	code, stdout, stderr := sealgate(t, "queue", "list", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "seeded@org.test") || !strings.Contains(stdout, "1 messages") {
		t.Errorf("queue list with the key restored: exit %d\n%s%s", code, stdout, stderr)
	}
}
