package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/internal/testutil"
)

// TestCrashLosesNoAcceptedMessage is the spool's crash test: the real
// binary takes mail over several connections for a destination that is
// down, is killed with SIGKILL in the middle of the load, and restarted
// with the destination up. Every message that got a 250 must arrive; the
// duplicates that at-least-once delivery allows are counted and reported.
func TestCrashLosesNoAcceptedMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()

	dns := testutil.NewDNSServer(t)
	dns.AddMX("dest.test", "mx.dest.test", 10)
	dns.AddA("mx.dest.test", "127.0.0.1")
	destPort := testutil.FreePort(t)
	smtpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfgPath := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`
hostname: gw.test
data_dir: %s
inbound:
  listen: %s
admin:
  listen: 127.0.0.1:%d
queue:
  retry_initial: 100ms
  retry_max: 300ms
outbound:
  dns_resolver: %s
  smtp_port: %d
  connect_timeout: 2s
  allowed_private_networks: [127.0.0.0/8] # the sink
`, filepath.Join(dir, "data"), smtpAddr, testutil.FreePort(t), dns.Addr(), destPort))

	srv := startServer(t, bin, cfgPath, smtpAddr)

	const total, conns = 200, 4
	var mu sync.Mutex
	accepted := map[int]bool{}
	var wg sync.WaitGroup
	killed := make(chan struct{})
	var killOnce sync.Once
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := smtp.Dial(smtpAddr)
			if err != nil {
				return
			}
			defer cl.Close()
			if cl.Hello("client.test") != nil {
				return
			}
			for i := c; i < total; i += conns {
				if sendSeq(cl, i) != nil {
					return // the server died under us
				}
				mu.Lock()
				accepted[i] = true
				n := len(accepted)
				mu.Unlock()
				if n == total/2 {
					killOnce.Do(func() {
						srv.Process.Kill() // SIGKILL, mid-load
						close(killed)
					})
				}
			}
		}()
	}
	senders := make(chan struct{})
	go func() { wg.Wait(); close(senders) }()
	select {
	case <-killed:
	case <-senders:
		t.Fatal("the senders stopped before the kill point")
	case <-time.After(2 * time.Minute):
		t.Fatal("the load did not reach the kill point")
	}
	<-senders
	srv.Wait()
	mu.Lock()
	got250 := len(accepted)
	mu.Unlock()
	t.Logf("%d messages got 250 before SIGKILL", got250)
	if got250 < total/2 {
		t.Fatalf("only %d accepted before the kill", got250)
	}

	sink := testutil.NewSMTPSink(t, testutil.SinkOptions{ListenAddr: fmt.Sprintf("127.0.0.1:%d", destPort)})
	startServer(t, bin, cfgPath, smtpAddr)

	// The client sends again what never got its 250, as a real one would.
	cl, err := smtp.Dial(smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range total {
		if !accepted[i] {
			if err := sendSeq(cl, i); err != nil {
				t.Fatalf("resending %d after restart: %v", i, err)
			}
		}
	}
	cl.Quit()

	seqRe := regexp.MustCompile(`(?m)^X-Seq: (\d+)\r$`)
	deadline := time.Now().Add(90 * time.Second)
	for {
		seen := map[int]int{}
		for _, m := range sink.Messages() {
			if mm := seqRe.FindSubmatch(m.Data); mm != nil {
				n, _ := strconv.Atoi(string(mm[1]))
				seen[n]++
			}
		}
		missing, dups := 0, 0
		for i := range total {
			if seen[i] == 0 {
				missing++
			}
		}
		for _, k := range seen {
			dups += max(k-1, 0)
		}
		if missing == 0 {
			t.Logf("all %d messages delivered (%d accepted before the kill); %d duplicates", len(seen), got250, dups)
			// With the server running, the queue CLI goes through its
			// admin API and sees the same spool.
			code, stdout, stderr := sealgate(t, "queue", "list", "--config", cfgPath)
			if code != 0 || !strings.Contains(stdout, "delivered:1") {
				t.Errorf("queue list against the running server: exit %d\n%s%s", code, stdout, stderr)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages never delivered after restart", missing, total)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func sendSeq(cl *smtp.Client, i int) error {
	if err := cl.Mail("sender@org.test", nil); err != nil {
		return err
	}
	if err := cl.Rcpt("patient@dest.test", nil); err != nil {
		return err
	}
	w, err := cl.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: sender@org.test\r\nTo: patient@dest.test\r\nSubject: crash %d\r\nX-Seq: %d\r\n\r\n", i, i)
	for range 30 { // about 2 KB of body
		fmt.Fprintf(w, "%s\r\n", bytes.Repeat([]byte("x"), 70))
	}
	return w.Close()
}

// buildBinary compiles cmd/sealgate once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sealgate")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startServer runs `sealgate serve` and waits until it accepts SMTP; the
// process is stopped when the test ends.
func startServer(t *testing.T, bin, cfgPath, smtpAddr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	logPath := filepath.Join(t.TempDir(), "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
		logFile.Close()
		if t.Failed() {
			if data, err := os.ReadFile(logPath); err == nil {
				t.Logf("server log:\n%s", tail(data, 4000))
			}
		}
	})
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", smtpAddr, time.Second)
		if err == nil {
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if len(line) > 3 && line[:3] == "220" {
				return cmd
			}
		}
		if i == 300 {
			t.Fatalf("server did not start listening on %s", smtpAddr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
