// Package testutil holds test fixtures shared by sealgate's packages: a
// loopback DNS server, a recording destination SMTP server, a test CA.
// Everything listens on loopback and is stopped in t.Cleanup.
package testutil

import (
	"encoding/base64"
	"encoding/hex"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// DNSServer is an authoritative-looking DNS server on 127.0.0.1 (UDP and
// TCP on the same port) answering from records the test adds at run time.
// Unknown names get NXDOMAIN; a known name without the asked type gets an
// empty NOERROR answer (NODATA).
type DNSServer struct {
	addr    string
	udp     *dns.Server
	tcp     *dns.Server
	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
	fail    map[string]bool     // SERVFAIL
	drop    map[string]bool     // never answer
	ad      bool
	queries map[string]int
	ttl     uint32 // of every answer: 0 unless SetTTL, as records change mid-test
}

// SetTTL makes every answer carry ttl seconds (default 0, so that a
// caching resolver never keeps an answer a test is about to change).
func (s *DNSServer) SetTTL(ttl uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttl = ttl
}

// NewDNSServer starts a server; it stops when the test ends.
func NewDNSServer(t testing.TB) *DNSServer {
	t.Helper()
	// UDP and TCP on the same port: the UDP port the kernel picks may be
	// taken for TCP by another socket, so try a few.
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatalf("no port free for both UDP and TCP: %v", err)
		}
	}
	s := &DNSServer{
		addr:    pc.LocalAddr().String(),
		records: map[string][]dns.RR{},
		fail:    map[string]bool{},
		drop:    map[string]bool{},
		queries: map[string]int{},
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: mux}
	s.tcp = &dns.Server{Listener: ln, Handler: mux}
	started := make(chan struct{}, 2)
	s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	<-started
	<-started
	t.Cleanup(func() {
		s.udp.Shutdown()
		s.tcp.Shutdown()
	})
	return s
}

// Addr is the server's host:port, for outbound.dns_resolver.
func (s *DNSServer) Addr() string { return s.addr }

func (s *DNSServer) add(rr string) {
	r, err := dns.NewRR(rr)
	if err != nil {
		panic("testutil: bad record " + rr + ": " + err.Error()) // a defect in the test itself
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name := strings.ToLower(r.Header().Name)
	s.records[name] = append(s.records[name], r)
}

// AddMX adds an MX record for domain.
func (s *DNSServer) AddMX(domain, host string, pref uint16) {
	s.add(dns.Fqdn(domain) + " 300 IN MX " + strconv.Itoa(int(pref)) + " " + dns.Fqdn(host))
}

// AddNullMX publishes RFC 7505's "MX 0 ." for domain.
func (s *DNSServer) AddNullMX(domain string) {
	s.add(dns.Fqdn(domain) + " 300 IN MX 0 .")
}

// AddA adds an A record.
func (s *DNSServer) AddA(host, ip string) { s.add(dns.Fqdn(host) + " 300 IN A " + ip) }

// AddAAAA adds an AAAA record.
func (s *DNSServer) AddAAAA(host, ip string) { s.add(dns.Fqdn(host) + " 300 IN AAAA " + ip) }

// AddTXT adds a TXT record made of the given strings.
func (s *DNSServer) AddTXT(name string, txt ...string) {
	r := &dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}, Txt: txt}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[strings.ToLower(r.Hdr.Name)] = append(s.records[strings.ToLower(r.Hdr.Name)], r)
}

// AddTLSA adds a TLSA record (data in hex).
func (s *DNSServer) AddTLSA(name string, usage, selector, matching uint8, data string) {
	s.add(dns.Fqdn(name) + " 300 IN TLSA " + strconv.Itoa(int(usage)) + " " + strconv.Itoa(int(selector)) + " " + strconv.Itoa(int(matching)) + " " + data)
}

// AddOPENPGPKEY adds an OPENPGPKEY record (RFC 7929) holding key, a
// binary OpenPGP key block, at name.
func (s *DNSServer) AddOPENPGPKEY(name string, key []byte) {
	s.add(dns.Fqdn(name) + " 300 IN OPENPGPKEY " + base64.StdEncoding.EncodeToString(key))
}

// AddSMIMEA adds an SMIMEA record (RFC 8162) at name; data is the
// DER certificate (matching type 0) or its digest.
func (s *DNSServer) AddSMIMEA(name string, usage, selector, matching uint8, data []byte) {
	s.add(dns.Fqdn(name) + " 300 IN SMIMEA " + strconv.Itoa(int(usage)) + " " + strconv.Itoa(int(selector)) + " " +
		strconv.Itoa(int(matching)) + " " + hex.EncodeToString(data))
}

// ReplaceTXT replaces every TXT record of name.
func (s *DNSServer) ReplaceTXT(name string, txt ...string) {
	s.remove(name, dns.TypeTXT)
	s.AddTXT(name, txt...)
}

// ReplaceA replaces every A record of host.
func (s *DNSServer) ReplaceA(host, ip string) {
	s.remove(host, dns.TypeA)
	s.AddA(host, ip)
}

func (s *DNSServer) remove(name string, rrtype uint16) {
	key := strings.ToLower(dns.Fqdn(name))
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep []dns.RR
	for _, rr := range s.records[key] {
		if rr.Header().Rrtype != rrtype {
			keep = append(keep, rr)
		}
	}
	s.records[key] = keep
}

// SetServfail makes every query for name fail with SERVFAIL.
func (s *DNSServer) SetServfail(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[strings.ToLower(dns.Fqdn(name))] = true
}

// ClearServfail undoes SetServfail.
func (s *DNSServer) ClearServfail(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.fail, strings.ToLower(dns.Fqdn(name)))
}

// SetDrop makes the server ignore queries for name (the client times out).
func (s *DNSServer) SetDrop(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop[strings.ToLower(dns.Fqdn(name))] = true
}

// SetAD sets or clears the AD (authenticated data) bit on answers.
func (s *DNSServer) SetAD(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ad = on
}

// Queries is how many queries for name the server has seen.
func (s *DNSServer) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[strings.ToLower(dns.Fqdn(name))]
}

func (s *DNSServer) serve(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	s.queries[name]++
	drop, fail, ad, ttl := s.drop[name], s.fail[name], s.ad, s.ttl
	rrs, known := s.records[name]
	var answer []dns.RR
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Qtype {
			c := dns.Copy(rr)
			c.Header().Ttl = s.ttl
			answer = append(answer, c)
		}
	}
	s.mu.Unlock()

	if drop {
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.AuthenticatedData = ad
	switch {
	case fail:
		m.Rcode = dns.RcodeServerFailure
	case !known:
		m.Rcode = dns.RcodeNameError
	default:
		m.Answer = answer
	}
	if len(m.Answer) == 0 && (m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError) && ttl > 0 {
		// A negative answer carries the zone's SOA (RFC 2308 §3), so a
		// resolver may keep it: only once SetTTL allows caching.
		m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns: "ns.test.", Mbox: "hostmaster.test.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: ttl}}
	}
	w.WriteMsg(m)
}
