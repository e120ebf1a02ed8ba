package smtpin

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// connLimiter bounds SMTP connections in total and per client (an IPv4
// address, an IPv6 /64: one host holds a whole /64). A connection over a
// limit is answered "421 4.7.0" (RFC 5321 §3.8) and closed before a
// session starts, so a flood from one client cannot take the slots of
// everyone else; a tenth of the slots is kept for trusted networks, so a
// flood from outside cannot lock the tenant out either.
type connLimiter struct {
	total, perIP    int
	trusted         func(netip.Addr) bool
	mu              sync.Mutex
	count           int
	byIP            map[netip.Addr]int
	listeners       []net.Listener
	listenersClosed bool                      // a stop began: a listener wrapped now is closed
	open            map[*limitedConn]struct{} // for a forced stop
}

func newConnLimiter(total, perIP int, trusted func(netip.Addr) bool) *connLimiter {
	return &connLimiter{total: total, perIP: perIP, trusted: trusted, byIP: map[netip.Addr]int{}, open: map[*limitedConn]struct{}{}}
}

// clientKey is what per-client limits count by: the address, or its /64
// for IPv6.
func clientKey(ip netip.Addr) netip.Addr {
	if ip.Is6() && !ip.Is4In6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// setLimits changes the caps for the connections that come next; the
// ones open stay open.
func (cl *connLimiter) setLimits(total, perIP int) {
	cl.mu.Lock()
	cl.total, cl.perIP = total, perIP
	cl.mu.Unlock()
}

// reserved is how many slots only trusted clients may take.
func (cl *connLimiter) reserved() int {
	if cl.total <= 1 {
		return 0
	}
	return max(cl.total/10, 1)
}

// underPressure: most slots are taken, so idle sessions that have not
// started a transaction get a short timeout.
func (cl *connLimiter) underPressure() bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.total > 0 && cl.count*4 >= cl.total*3
}

// wrap returns l with the limits applied. plain says whether a refusal
// can be written as an SMTP reply (not on an implicit-TLS port, where
// the client expects a TLS handshake first).
//
// A listener wrapped after closeListeners is closed at once: a Serve
// that starts after the stop began accepts nothing.
func (cl *connLimiter) wrap(l net.Listener, plain bool) net.Listener {
	cl.mu.Lock()
	cl.listeners = append(cl.listeners, l)
	if cl.listenersClosed {
		l.Close()
	}
	cl.mu.Unlock()
	return &limitedListener{Listener: l, cl: cl, plain: plain}
}

// forceClose closes every connection still open at the socket, under
// whatever the SMTP library is doing with it: the last step of a stop
// whose deadline has passed.
func (cl *connLimiter) forceClose() int {
	cl.mu.Lock()
	conns := make([]*limitedConn, 0, len(cl.open))
	for c := range cl.open {
		conns = append(conns, c)
	}
	cl.mu.Unlock()
	for _, c := range conns {
		c.Conn.Close()
	}
	return len(conns)
}

func (cl *connLimiter) closeListeners() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.listenersClosed = true
	for _, l := range cl.listeners {
		l.Close()
	}
}

// admit takes a slot for ip, or says which limit refused it.
func (cl *connLimiter) admit(ip netip.Addr) string {
	trusted := cl.trusted != nil && cl.trusted(ip)
	ip = clientKey(ip)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	switch {
	case cl.total > 0 && cl.count >= cl.total,
		cl.total > 0 && !trusted && cl.count >= cl.total-cl.reserved():
		return "421 4.7.0 Too many connections, try again later\r\n"
	case cl.perIP > 0 && cl.byIP[ip] >= cl.perIP:
		return "421 4.7.0 Too many connections from your address, try again later\r\n"
	}
	cl.count++
	cl.byIP[ip]++
	return ""
}

func (cl *connLimiter) release(ip netip.Addr, c *limitedConn) {
	ip = clientKey(ip)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	delete(cl.open, c)
	cl.count--
	if cl.byIP[ip]--; cl.byIP[ip] <= 0 {
		delete(cl.byIP, ip)
	}
}

type limitedListener struct {
	net.Listener
	cl    *connLimiter
	plain bool
}

func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var ip netip.Addr
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			ip = ap.Addr().Unmap()
		}
		if refusal := l.cl.admit(ip); refusal != "" {
			if l.plain {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				c.Write([]byte(refusal))
			}
			c.Close()
			continue
		}
		lc := &limitedConn{Conn: c}
		lc.release = func() { l.cl.release(ip, lc) }
		l.cl.mu.Lock()
		l.cl.open[lc] = struct{}{}
		l.cl.mu.Unlock()
		return lc, nil
	}
}

// limitedConn gives its slot back when closed (once).
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
