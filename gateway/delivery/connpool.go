package delivery

import (
	"context"
	"sync"
	"time"
)

// connPool keeps connections that finished a transaction cleanly, per
// destination, for the next message to the same destination: a tenant's
// burst to one partner domain then costs one TCP and TLS handshake, not
// one per message. Entries older than the idle timeout are closed when
// the pool is next touched.
type connPool struct {
	idle time.Duration
	mu   sync.Mutex
	free map[string][]pooledConn
}

type pooledConn struct {
	conn  *outboundConn
	since time.Time
}

func newConnPool(idle time.Duration) *connPool {
	return &connPool{idle: idle, free: map[string][]pooledConn{}}
}

// get takes the most recently used idle connection to dest, or nil.
func (p *connPool) get(dest string) *outboundConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sweepLocked()
	list := p.free[dest]
	if len(list) == 0 {
		return nil
	}
	c := list[len(list)-1]
	p.free[dest] = list[:len(list)-1]
	return c.conn
}

// put returns a connection for reuse.
func (p *connPool) put(dest string, c *outboundConn) {
	if p.idle <= 0 {
		c.sess.quit()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sweepLocked()
	p.free[dest] = append(p.free[dest], pooledConn{conn: c, since: time.Now()})
}

func (p *connPool) sweepLocked() {
	cutoff := time.Now().Add(-p.idle)
	for dest, list := range p.free {
		keep := list[:0]
		for _, c := range list {
			if c.since.Before(cutoff) {
				go c.conn.sess.quit() // QUIT may wait on a slow peer; not under the lock
				continue
			}
			keep = append(keep, c)
		}
		if len(keep) == 0 {
			delete(p.free, dest)
		} else {
			p.free[dest] = keep
		}
	}
}

// closeAll closes every idle connection (at shutdown).
func (p *connPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for dest, list := range p.free {
		for _, c := range list {
			c.conn.sess.close()
		}
		delete(p.free, dest)
	}
}

// destinationSlots bounds concurrent deliveries per destination, so one
// big recipient domain cannot take every connection and a small one is
// not flooded.
type destinationSlots struct {
	limit int
	mu    sync.Mutex
	sems  map[string]chan struct{}
}

func newDestinationSlots(limit int) *destinationSlots {
	return &destinationSlots{limit: limit, sems: map[string]chan struct{}{}}
}

func (s *destinationSlots) sem(dest string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.sems[dest]
	if !ok {
		ch = make(chan struct{}, s.limit)
		s.sems[dest] = ch
	}
	return ch
}

func (s *destinationSlots) acquire(ctx context.Context, dest string) error {
	select {
	case s.sem(dest) <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *destinationSlots) release(dest string) { <-s.sem(dest) }
