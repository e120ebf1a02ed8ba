package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// idleSessions opens n SMTP sessions that greet and then stay idle, from
// 127.0.0.2, 127.0.0.3, … (perIP each, under the per-address limit), and
// reports the gateway's resident memory with them all open.
func idleSessions(addr string, n, perIP, pid int) error {
	before, _ := statusKB(pid, "VmRSS:")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for i := range n {
		local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i/perIP))}
		d := net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("session %d: %w", i, err)
		}
		conns = append(conns, c)
		r := bufio.NewReader(c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "220") {
			return fmt.Errorf("session %d: greeting %q %v", i, line, err)
		}
		fmt.Fprintf(c, "EHLO idle%d.test\r\n", i)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("session %d: EHLO: %w", i, err)
			}
			if len(line) >= 4 && line[3] == ' ' {
				break
			}
		}
		c.SetDeadline(time.Time{})
	}
	time.Sleep(2 * time.Second)
	after, _ := statusKB(pid, "VmRSS:")
	fmt.Printf("%d idle sessions opened in %s\n", len(conns), time.Since(start).Round(time.Millisecond))
	fmt.Printf("gateway RSS: %d kB before, %d kB with them open (%+d kB, %.1f kB per session)\n",
		before, after, after-before, float64(after-before)/float64(len(conns)))
	return nil
}

// statusKB reads a "Name: N kB" line of /proc/pid/status.
func statusKB(pid int, name string) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no %s", name)
}
