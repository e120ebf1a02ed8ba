package scheduler

import (
	"context"
	"io"
	"sync"

	"github.com/sealgate/sealgate/gateway/delivery"
	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/queue"
)

// Body is the spooled message of an attempt. A method that sends it as
// it is hands it on unread: delivery streams it, a chunk at a time. A
// method that transforms it (encryption, escrow) calls Bytes, which
// waits for the byte budget to hold it whole.
type Body interface {
	delivery.Body
	Bytes() ([]byte, error)
}

// streamReserve is what an attempt takes from the byte budget for a
// body it streams: the delivery's read and BDAT buffers, not the body.
const streamReserve = 2 << 20

// spooled is the Body of one attempt, over the spool's content; it
// keeps count of the byte budget it holds.
type spooled struct {
	ctx  context.Context
	s    *Scheduler
	c    queue.Spooled
	held int64 // octets of the byte budget held

	mu    sync.Mutex
	whole []byte
	eight *bool // known 8-bit content, once scanned
}

// openBody opens message id's spooled body and takes from the byte
// budget what sending it as it is needs: an inline body (already in
// memory) its size, a body in a file the stream's buffers.
func (s *Scheduler) openBody(ctx context.Context, id string) (*spooled, error) {
	c, err := s.opts.Store.OpenBody(id)
	if err != nil {
		return nil, err
	}
	b := &spooled{ctx: ctx, s: s, c: c}
	need := c.Size()
	if !c.Inline() {
		need = min(need, streamReserve)
	}
	if err := b.reserve(need); err != nil {
		return nil, err
	}
	return b, nil
}

// reserve makes sure the body holds n octets of the byte budget (never
// more than the bound itself: a message larger than it goes out alone).
func (b *spooled) reserve(n int64) error {
	if b.s.bytes == nil {
		return nil
	}
	n = min(max(n, 1), b.s.opts.MaxBytesInFlight)
	if n <= b.held {
		return nil
	}
	if err := b.s.bytes.Acquire(b.ctx, n-b.held); err != nil {
		return err
	}
	b.held = n
	return nil
}

// release gives the byte budget back.
func (b *spooled) release() {
	if b.held > 0 {
		b.s.bytes.Release(b.held)
		b.held = 0
	}
}

func (b *spooled) Size() int64 { return b.c.Size() }

func (b *spooled) Open() (io.ReadCloser, error) {
	b.mu.Lock()
	whole := b.whole
	b.mu.Unlock()
	if whole != nil {
		return delivery.Bytes(whole).Open()
	}
	return b.c.Open()
}

// Pieces is the body when it is in memory (inline in its record, or
// loaded whole): delivery then writes it without read buffers.
func (b *spooled) Pieces() ([][]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.whole != nil {
		return [][]byte{b.whole}, true
	}
	if !b.c.Inline() {
		return nil, false
	}
	whole, err := b.c.Bytes()
	if err != nil {
		return nil, false
	}
	return [][]byte{whole}, true
}

// Bytes loads the body whole, once, after the byte budget has room for
// it.
func (b *spooled) Bytes() ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.whole != nil {
		return b.whole, nil
	}
	if b.s.bytes != nil && b.held < min(max(b.c.Size(), 1), b.s.opts.MaxBytesInFlight) {
		// What the stream held goes back first: an attempt never waits
		// for budget while holding some (four attempts each holding
		// their stream's share and each waiting for the rest would wait
		// forever). An inline body holds its size already.
		b.release()
		if err := b.reserve(b.c.Size()); err != nil {
			return nil, err
		}
	}
	whole, err := b.c.Bytes()
	if err != nil {
		return nil, err
	}
	b.whole = whole
	return whole, nil
}

// Has8bit scans the body once per attempt, however many groups send it.
func (b *spooled) Has8bit() (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.eight != nil {
		return *b.eight, nil
	}
	var src delivery.Body = b.c
	if b.whole != nil {
		src = delivery.Bytes(b.whole)
	} else if b.c.Inline() {
		whole, err := b.c.Bytes()
		if err != nil {
			return false, err
		}
		src = delivery.Bytes(whole)
	}
	eight, err := delivery.BodyHas8bit(src)
	if err != nil {
		return false, err
	}
	b.eight = &eight
	return eight, nil
}

// dsnHead is how much of a message a delivery status notification is
// given: more than the header it returns (64 KiB at most).
const dsnHead = 128 << 10

// head returns the first n octets of the body (all of it when shorter),
// read without loading the rest and without the byte budget. It must be
// called outside any spool commit: a damaged body file found by the read
// is quarantined, which is a commit.
func (b *spooled) head(n int) ([]byte, error) {
	if ps, ok := b.Pieces(); ok && len(ps) == 1 {
		return ps[0][:min(len(ps[0]), n)], nil // in memory: no copy
	}
	r, err := b.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, err
	}
	return out, nil
}

// sameBody says a and b are the same outgoing form: the same spooled
// body, or the same bytes.
func sameBody(a, b delivery.Body) bool {
	switch x := a.(type) {
	case *spooled:
		y, ok := b.(*spooled)
		return ok && x == y
	case delivery.Bytes:
		y, ok := b.(delivery.Bytes)
		return ok && mailtext.SameBytes(x, y)
	case BytesBody:
		y, ok := b.(BytesBody)
		return ok && mailtext.SameBytes(x, y)
	}
	return false
}

// BytesBody is a Body held in memory, for methods' tests and for
// callers that have the message at hand.
type BytesBody []byte

func (b BytesBody) Size() int64                  { return int64(len(b)) }
func (b BytesBody) Open() (io.ReadCloser, error) { return delivery.Bytes(b).Open() }
func (b BytesBody) Bytes() ([]byte, error)       { return b, nil }
func (b BytesBody) Has8bit() (bool, error)       { return delivery.Bytes(b).Has8bit() }
func (b BytesBody) Inline() bool                 { return true }
func (b BytesBody) Pieces() ([][]byte, bool)     { return [][]byte{b}, true }
