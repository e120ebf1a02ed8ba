// Command sealgate-load is the load generator behind BENCHMARKS.md. It
// sends N messages of S bytes over C concurrent SMTP connections to a
// gateway and reports accepted messages per second and the accept latency
// (end of DATA to the 250 reply). With -sink it also runs a counting SMTP
// sink, so a gateway configured to relay to it (outbound.smarthost) can be
// measured end to end: delivered messages per second. With -dns it also
// answers DNS so that every domain's MX is the sink: MX delivery on the
// default configuration, measured the same way. With -pid it reports the
// server's CPU per message and peak RSS; -tree makes that the whole
// process tree (CPU summed, PSS sampled), so that Postfix, a master and
// its children, can be measured beside sealgate with the same command.
//
// It is a measuring tool, not a test: run it against a gateway on
// loopback, on a quiet machine, and record the figures with the command
// and the machine.
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:2525", "gateway SMTP address")
	n := flag.Int("n", 1000, "messages to send")
	c := flag.Int("c", 10, "concurrent connections")
	size := flag.Int("size", 10*1024, "message size in bytes")
	perConn := flag.Int("per-conn", 100, "messages per connection before reconnecting")
	sinkAddr := flag.String("sink", "", "also run a counting SMTP sink on this address and wait for delivery")
	wait := flag.Duration("wait", 2*time.Minute, "how long to wait for deliveries at the sink")
	pid := flag.Int("pid", 0, "gateway process ID, to report its peak RSS (VmHWM)")
	subject := flag.String("subject", "load", "the messages' Subject (\"[secure] load\" to have them encrypted)")
	rcpt := flag.String("rcpt", "sink@dest.test", "the recipient (its domain's MX is the sink with -dns)")
	dnsAddr := flag.String("dns", "", "also answer DNS here: every domain's MX resolves to the sink's address (for MX delivery)")
	apiURL := flag.String("api", "", "send through the send API at this URL (http://127.0.0.1:8025/api/v1/messages) instead of SMTP; -c clients with keep-alive")
	apiKey := flag.String("api-key", "", "with -api: the send key, id:secret (its domains must allow sender.test)")
	flag.BoolVar(&sinkTLS, "sink-tls", false, "the sink offers STARTTLS (a self-signed certificate), for runs that require TLS out")
	idle := flag.Int("idle", 0, "instead of sending: open this many idle SMTP sessions (100 per source address, 127.0.0.2 on) and report the gateway's RSS (-pid)")
	drain := flag.Int("drain", 0, "instead of sending: run the sink (and -dns), wait for this many deliveries and report the gateway's CPU per delivered message (-pid): a spooled backlog draining")
	tree := flag.Bool("tree", false, "with -pid: measure the process and all its descendants (CPU summed, peak PSS sampled), for a server made of several processes such as Postfix")
	flag.Parse()
	if *idle > 0 {
		if err := idleSessions(*addr, *idle, 100, *pid); err != nil {
			fmt.Fprintln(os.Stderr, "sealgate-load:", err)
			os.Exit(1)
		}
		return
	}
	if *dnsAddr != "" {
		host, _, err := net.SplitHostPort(*sinkAddr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sealgate-load: -dns needs -sink host:port")
			os.Exit(2)
		}
		stop, err := startDNS(*dnsAddr, host)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sealgate-load:", err)
			os.Exit(1)
		}
		defer stop()
	}
	if *drain > 0 {
		if err := drainRun(*sinkAddr, *drain, *wait, *pid); err != nil {
			fmt.Fprintln(os.Stderr, "sealgate-load:", err)
			os.Exit(1)
		}
		return
	}
	send := func(more func() bool, deferred *atomic.Int64, body []byte) ([]time.Duration, error) {
		return sendLoop(*addr, body, *rcpt, *perConn, more, deferred)
	}
	if *apiURL != "" {
		send = func(more func() bool, deferred *atomic.Int64, body []byte) ([]time.Duration, error) {
			return apiLoop(*apiURL, *apiKey, body, more, deferred)
		}
	}
	if err := run(send, *n, *c, makeMessage(*size, *subject, *rcpt), *sinkAddr, *wait, *pid, *tree); err != nil {
		fmt.Fprintln(os.Stderr, "sealgate-load:", err)
		os.Exit(1)
	}
}

// sender sends messages while more() says so and returns each one's
// accept latency.
type sender func(more func() bool, deferred *atomic.Int64, body []byte) ([]time.Duration, error)

func run(send sender, n, c int, body []byte, sinkAddr string, wait time.Duration, pid int, tree bool) error {
	var sink *countingSink
	if sinkAddr != "" {
		var err error
		if sink, err = startSink(sinkAddr); err != nil {
			return err
		}
		defer sink.close()
	}
	size := len(body)

	cpuOf := cpuTime
	if tree {
		cpuOf = treeCPU
	}
	cpu0, cpuErr := cpuOf(pid)
	var pss *pssSampler
	if tree && pid != 0 {
		pss = samplePSS(pid, 200*time.Millisecond)
	}
	var next, deferred atomic.Int64
	latencies := make([][]time.Duration, c)
	errs := make([]error, c)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			latencies[w], errs[w] = send(func() bool { return next.Add(1) <= int64(n) }, &deferred, body)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	all := slices.Concat(latencies...)
	slices.Sort(all)
	fmt.Printf("sent %d messages of %d bytes over %d connections in %s\n", len(all), size, c, elapsed.Round(time.Millisecond))
	fmt.Printf("accepted/s: %.0f\n", float64(len(all))/elapsed.Seconds())
	fmt.Printf("accept latency p50: %s  p99: %s\n", pct(all, 50), pct(all, 99))
	if d := deferred.Load(); d > 0 {
		fmt.Printf("temporary refusals (4xx, retried): %d\n", d)
	}

	if sink != nil {
		deadline := time.Now().Add(wait)
		for sink.count.Load() < int64(len(all)) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		got := sink.count.Load()
		last := time.Unix(0, sink.last.Load())
		d := last.Sub(start)
		fmt.Printf("delivered %d/%d; delivered/s: %.0f (first send to last delivery %s)\n",
			got, len(all), float64(got)/d.Seconds(), d.Round(time.Millisecond))
	}
	if pid != 0 {
		if cpu1, err := cpuOf(pid); err == nil && cpuErr == nil && len(all) > 0 {
			fmt.Printf("gateway CPU: %.3f ms per message\n", float64((cpu1-cpu0).Microseconds())/1000/float64(len(all)))
		}
		if pss != nil {
			fmt.Printf("gateway peak PSS (process tree, sampled every 200 ms): %d kB\n", pss.peakKB())
		} else if hwm, err := peakRSS(pid); err == nil {
			fmt.Printf("gateway peak RSS: %s\n", hwm)
		} else {
			fmt.Printf("gateway peak RSS: unknown (%v)\n", err)
		}
	}
	return nil
}

// drainRun counts deliveries of a backlog the gateway already holds:
// from the sink's start to the n-th delivery it reports the delivery
// rate and the gateway's CPU per delivered message.
func drainRun(sinkAddr string, n int, wait time.Duration, pid int) error {
	if sinkAddr == "" || pid == 0 {
		return errors.New("-drain needs -sink and -pid")
	}
	sink, err := startSink(sinkAddr)
	if err != nil {
		return err
	}
	defer sink.close()
	cpu0, err := cpuTime(pid)
	if err != nil {
		return err
	}
	start := time.Now()
	deadline := start.Add(wait)
	for sink.count.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cpu1, err := cpuTime(pid)
	if err != nil {
		return err
	}
	got := sink.count.Load()
	first, last := time.Unix(0, sink.first.Load()), time.Unix(0, sink.last.Load())
	fmt.Printf("drained %d/%d; delivered/s: %.0f (first to last delivery %s)\n",
		got, n, float64(got)/last.Sub(first).Seconds(), last.Sub(first).Round(time.Millisecond))
	if got > 0 {
		fmt.Printf("gateway CPU: %.3f ms per delivered message\n", float64((cpu1-cpu0).Microseconds())/1000/float64(got))
	}
	if hwm, err := peakRSS(pid); err == nil {
		fmt.Printf("gateway peak RSS: %s\n", hwm)
	}
	return nil
}

// sendLoop sends messages over one connection at a time while more()
// says so, reconnecting every perConn messages. A 4xx reply (the
// gateway's byte budget, say) is retried after a pause, as an MTA would,
// and counted in deferred.
func sendLoop(addr string, body []byte, rcpt string, perConn int, more func() bool, deferred *atomic.Int64) ([]time.Duration, error) {
	var lat []time.Duration
	for {
		cl, err := smtp.Dial(addr)
		if err != nil {
			return lat, err
		}
		if err := cl.Hello("load.test"); err != nil {
			cl.Close()
			return lat, err
		}
		for range perConn {
			if !more() {
				cl.Quit()
				return lat, nil
			}
			for tries := 0; ; tries++ {
				d, err := sendOne(cl, body, rcpt)
				var se *smtp.SMTPError
				if err != nil && errors.As(err, &se) && se.Code/100 == 4 && tries < 600 {
					deferred.Add(1)
					if cl.Reset() != nil {
						cl.Close()
						return lat, err
					}
					time.Sleep(100 * time.Millisecond)
					continue
				}
				if err != nil {
					cl.Close()
					return lat, err
				}
				lat = append(lat, d)
				break
			}
		}
		cl.Quit()
	}
}

// sendOne runs one transaction and returns the time from the end of
// the data to the 250.
func sendOne(cl *smtp.Client, body []byte, rcpt string) (time.Duration, error) {
	if err := cl.Mail("load@sender.test", &smtp.MailOptions{Size: int64(len(body))}); err != nil {
		return 0, err
	}
	if err := cl.Rcpt(rcpt, nil); err != nil {
		return 0, err
	}
	w, err := cl.Data()
	if err != nil {
		return 0, err
	}
	if _, err := w.Write(body); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := w.Close(); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// makeMessage builds a plain message of about size bytes with CRLF lines.
// apiLoop posts messages to the send API over one keep-alive client: a
// 429 or 503 is retried after a pause, as a client would.
func apiLoop(url, key string, body []byte, more func() bool, deferred *atomic.Int64) ([]time.Duration, error) {
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	var lat []time.Duration
	for more() {
		for tries := 0; ; tries++ {
			req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				return lat, err
			}
			req.Header.Set("Content-Type", "message/rfc822")
			req.Header.Set("X-API-Key", key)
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				return lat, err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && tries < 600 {
				deferred.Add(1)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if resp.StatusCode != http.StatusCreated {
				return lat, fmt.Errorf("send API: %s", resp.Status)
			}
			lat = append(lat, time.Since(start))
			break
		}
	}
	return lat, nil
}

func makeMessage(size int, subject, rcpt string) []byte {
	var b bytes.Buffer
	b.Grow(size + 1024)
	b.WriteString("From: load@sender.test\r\nTo: " + rcpt + "\r\nSubject: " + subject + "\r\n" +
		"Message-ID: <load@sender.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n")
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.Bytes()
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)*p/100, len(sorted)-1)
	return sorted[i].Round(10 * time.Microsecond)
}

func peakRSS(pid int) (string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", errors.New("no VmHWM")
}

// countingSink accepts every message and counts it.
type countingSink struct {
	srv   *smtp.Server
	ln    net.Listener
	count atomic.Int64
	first atomic.Int64 // unix nanos of the first delivery
	last  atomic.Int64 // unix nanos of the last delivery
}

// sinkTLS: the sink offers STARTTLS (-sink-tls).
var sinkTLS bool

// selfSigned makes a throwaway certificate for the sink.
func selfSigned(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func startSink(addr string) (*countingSink, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &countingSink{ln: ln}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sinkSession{sink: s}, nil
	}))
	if sinkTLS {
		cert, err := selfSigned("sink.test")
		if err != nil {
			return nil, err
		}
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	s.srv.Domain = "sink.test"
	s.srv.ErrorLog = discardLog{}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *countingSink) close() { s.srv.Close() }

type sinkSession struct{ sink *countingSink }

func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.sink.count.Add(1)
	now := time.Now().UnixNano()
	s.sink.first.CompareAndSwap(0, now)
	s.sink.last.Store(now)
	return nil
}

type discardLog struct{}

func (discardLog) Printf(string, ...any) {}
func (discardLog) Println(...any)        {}

// cpuTime is the CPU time (user + system) pid has used so far.
func cpuTime(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, errors.New("no pid")
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: utime and stime are the 14th and 15th of the line.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad /proc stat")
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}
