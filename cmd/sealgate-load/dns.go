package main

import (
	"net"

	"github.com/miekg/dns"
)

// startDNS answers, on UDP and TCP at addr, as the resolver a gateway
// configured with outbound.dns_resolver asks: every name has the MX
// "mx.<name>", every A question is answered with ip. So MX delivery, the
// default, can be measured on loopback: the gateway resolves
// sink@dest.test to the sink like any destination.
func startDNS(addr, ip string) (func(), error) {
	answer := net.ParseIP(ip).To4()
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		for _, q := range req.Question {
			hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 300, Rrtype: q.Qtype}
			switch q.Qtype {
			case dns.TypeMX:
				m.Answer = append(m.Answer, &dns.MX{Hdr: hdr, Preference: 10, Mx: "mx." + q.Name})
			case dns.TypeA:
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: answer})
			}
		}
		if len(m.Answer) == 0 {
			// No such record (MTA-STS, TLSA): the zone's SOA, as a real
			// server sends it (RFC 2308), so a resolver may keep it.
			m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
				Ns: "ns.load.test.", Mbox: "hostmaster.load.test.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 300}}
		}
		w.WriteMsg(m)
	})
	udp := &dns.Server{Addr: addr, Net: "udp", Handler: mux}
	tcp := &dns.Server{Addr: addr, Net: "tcp", Handler: mux}
	errs := make(chan error, 2)
	for _, s := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { errs <- s.ListenAndServe() }()
		select {
		case <-started:
		case err := <-errs:
			udp.Shutdown()
			return nil, err
		}
	}
	return func() { udp.Shutdown(); tcp.Shutdown() }, nil
}
