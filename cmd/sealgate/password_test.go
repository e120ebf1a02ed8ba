package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/config"
)

// TestHashPasswordOnATerminal: on a terminal the password is asked for
// twice and never echoed (python3's pty module plays the terminal).
func TestHashPasswordOnATerminal(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 missing in CI")
		}
		t.Skip("python3 not installed")
	}
	bin := buildBinary(t)
	script := `
import os, pty, select, sys, termios, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "config", "hash-password"])
out = b""
def read_until(want, secs):
    global out
    end = time.time() + secs
    while time.time() < end and not want(out):
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                out += os.read(fd, 1024)
            except OSError:
                return
def echo_off():
    # Type only once the program has turned echo off, as a person would
    # (the prompt is printed just before): no race with the terminal.
    end = time.time() + 10
    while time.time() < end and termios.tcgetattr(fd)[3] & termios.ECHO:
        time.sleep(0.01)
read_until(lambda o: b"Password: " in o, 10); echo_off(); os.write(fd, sys.argv[2].encode() + b"\n")
read_until(lambda o: b"Repeat: " in o, 10); echo_off(); os.write(fd, sys.argv[2].encode() + b"\n")
read_until(lambda o: b"$2" in o and o.endswith(b"\r\n"), 20)
sys.stdout.write(out.decode(errors="replace"))
`
	out, err := exec.Command("python3", "-c", script, bin, "s3cret passphrase").CombinedOutput()
	if err != nil {
		t.Fatalf("pty run: %v\n%s", err, out)
	}
	got := string(out)
	if !strings.Contains(got, "Password: ") || !strings.Contains(got, "Repeat: ") {
		t.Errorf("no prompts on a terminal:\n%q", got)
	}
	if strings.Contains(got, "s3cret") {
		t.Errorf("the password was echoed:\n%q", got)
	}
	i := strings.Index(got, "$2")
	if i < 0 {
		t.Fatalf("no hash:\n%q", got)
	}
	hash := strings.TrimSpace(got[i:])
	if !config.CheckPassword(hash, "s3cret passphrase") {
		t.Errorf("the hash %q does not check against the password", hash)
	}
}
