package delivery

// The message body on the wire: DATA content with dot-stuffing (RFC 5321
// §4.5.2) written in runs rather than a byte at a time, the same body
// made whole for BDAT (RFC 3030), and the 8-bit test behind
// BODY=8BITMIME (RFC 6152).

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
)

// Body is the message as it leaves (CRLF line endings), read as a
// stream from its start at each Open: delivery holds a chunk of it at a
// time, never a large body whole.
type Body interface {
	Size() int64
	Open() (io.ReadCloser, error)
}

// EightBitKnown is a Body that knows whether it has 8-bit bytes, so
// that MAIL FROM's BODY=8BITMIME does not need a pass over it.
type EightBitKnown interface {
	Has8bit() (bool, error)
}

// InMemory is a Body whose bytes are at hand, in pieces (a signature
// header, then the spooled body): delivery writes them as they are, with
// no read buffers. ok is false when they are not (a body in a file).
type InMemory interface {
	Pieces() (pieces [][]byte, ok bool)
}

func pieces(b Body) ([][]byte, bool) {
	if m, ok := b.(InMemory); ok {
		return m.Pieces()
	}
	return nil, false
}

// Bytes is a Body held in memory.
type Bytes []byte

// Size is len(b).
func (b Bytes) Size() int64 { return int64(len(b)) }

// Open reads b.
func (b Bytes) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }

// Has8bit scans b.
func (b Bytes) Has8bit() (bool, error) { return has8bit(b), nil }

// Pieces is b.
func (b Bytes) Pieces() ([][]byte, bool) { return [][]byte{b}, true }

// BodyHas8bit reports whether body has a byte with the high bit set,
// reading it once unless it knows.
func BodyHas8bit(body Body) (bool, error) {
	if k, ok := body.(EightBitKnown); ok {
		return k.Has8bit()
	}
	r, err := body.Open()
	if err != nil {
		return false, err
	}
	defer r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if has8bit(buf[:n]) {
			return true, nil
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

var (
	crlf    = []byte("\r\n")
	dotCRLF = []byte(".\r\n")
	dot     = []byte(".")
	cr      = []byte("\r")
	lf      = []byte("\n")
)

// dotWriter writes a message body as DATA content: a "." that begins a
// line gets another in front of it, a bare LF goes out as CRLF (there is
// never a bare LF on the wire), and Close ends an unterminated last line
// with CRLF before the terminating ".". A bare CR passes unchanged, as
// with net/textproto's writer (the intake refuses one anyway).
//
// It looks at the body only where a line ends: bytes.IndexByte finds
// each LF and everything between two insertions goes to w in one Write.
// Its state carries over from one Write to the next, so a body may
// arrive in pieces split anywhere.
type dotWriter struct {
	w         io.Writer
	midLine   bool // the last byte written did not end a line
	lastWasCR bool // the last byte written was CR
}

func newDotWriter(w io.Writer) *dotWriter { return &dotWriter{w: w} }

func (d *dotWriter) Write(p []byte) (int, error) {
	start := 0 // the run of p not yet written
	for i := 0; i < len(p); {
		if !d.midLine {
			d.midLine = true
			if p[i] == '.' {
				if err := d.insert(p[start:i], dot); err != nil {
					return 0, err
				}
				start = i
			}
		}
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		lfAt := i + j
		prevCR := d.lastWasCR
		if lfAt > 0 {
			prevCR = p[lfAt-1] == '\r'
		}
		if !prevCR {
			if err := d.insert(p[start:lfAt], cr); err != nil {
				return 0, err
			}
			start = lfAt
		}
		d.midLine = false
		i = lfAt + 1
	}
	if len(p) > 0 {
		d.lastWasCR = p[len(p)-1] == '\r'
	}
	if start < len(p) {
		if _, err := d.w.Write(p[start:]); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// insert writes run, then extra.
func (d *dotWriter) insert(run, extra []byte) error {
	if len(run) > 0 {
		if _, err := d.w.Write(run); err != nil {
			return err
		}
	}
	_, err := d.w.Write(extra)
	return err
}

// Close ends the last line and writes the terminating ".". It does not
// close w.
func (d *dotWriter) Close() error {
	if d.midLine {
		end := crlf
		if d.lastWasCR {
			end = lf
		}
		if _, err := d.w.Write(end); err != nil {
			return err
		}
	}
	_, err := d.w.Write(dotCRLF)
	return err
}

// wholeLinesPieces reports whether pieces, one after the other, are
// already as BDAT sends a body: every LF after a CR, and the last byte
// an LF (or no bytes at all).
func wholeLinesPieces(pieces [][]byte) bool {
	prevCR, empty := false, true
	var last byte
	for _, p := range pieces {
		if len(p) == 0 {
			continue
		}
		for i := 0; ; {
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				break
			}
			k := i + j
			if k > 0 && p[k-1] != '\r' || k == 0 && !prevCR {
				return false
			}
			i = k + 1
		}
		prevCR, empty, last = p[len(p)-1] == '\r', false, p[len(p)-1]
	}
	return empty || last == '\n'
}

// crlfReader reads a body as BDAT sends it, every line ending
// CRLF: a bare LF becomes CRLF, and a last line without an end
// gets one (a body that ends in a lone CR gets its LF).
type crlfReader struct {
	r       io.Reader
	in, out []byte
	pending []byte // of out, not handed out yet
	prevCR  bool   // the last input byte was CR
	lastOut byte   // the last byte handed out (0: none yet)
	eof     bool
}

// newCRLFReader reads r, of about size bytes (its buffer is no larger
// than the body needs).
func newCRLFReader(r io.Reader, size int64) *crlfReader {
	return &crlfReader{r: r, in: make([]byte, min(size+1, 32<<10))}
}

func (c *crlfReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(c.pending) == 0 {
		if c.eof {
			return 0, io.EOF
		}
		n, err := c.r.Read(c.in)
		c.out = c.convert(c.out[:0], c.in[:n])
		if err == io.EOF {
			c.eof = true
			switch {
			case len(c.out) > 0 && c.out[len(c.out)-1] == '\n', len(c.out) == 0 && (c.lastOut == 0 || c.lastOut == '\n'):
			case len(c.out) > 0 && c.out[len(c.out)-1] == '\r', len(c.out) == 0 && c.lastOut == '\r':
				c.out = append(c.out, '\n')
			default:
				c.out = append(c.out, crlf...)
			}
		} else if err != nil {
			return 0, err
		}
		c.pending = c.out
	}
	n := copy(p, c.pending)
	c.lastOut = c.pending[n-1]
	c.pending = c.pending[n:]
	return n, nil
}

// convert appends in to out with a CR put before every bare LF.
func (c *crlfReader) convert(out, in []byte) []byte {
	for len(in) > 0 {
		j := bytes.IndexByte(in, '\n')
		if j < 0 {
			out = append(out, in...)
			c.prevCR = in[len(in)-1] == '\r'
			return out
		}
		out = append(out, in[:j]...)
		if j == 0 && !c.prevCR || j > 0 && in[j-1] != '\r' {
			out = append(out, '\r')
		}
		out = append(out, '\n')
		c.prevCR = false
		in = in[j+1:]
	}
	return out
}

// bdatChunks cuts a body into BDAT chunks of at most size bytes, in one
// reused buffer; last says no chunk follows.
type bdatChunks struct {
	r    *bufio.Reader
	buf  []byte
	done bool
}

// newBDATChunks cuts body, of about bodySize bytes, into chunks of at
// most size. The chunk buffer is no larger than the body can become (every
// line end a bare LF, made CRLF): a 10 KB message does not clear a
// megabyte.
func newBDATChunks(body io.Reader, bodySize int64, size int) *bdatChunks {
	return &bdatChunks{r: bufio.NewReaderSize(newCRLFReader(body, bodySize), int(min(bodySize+16, 32<<10))),
		buf: make([]byte, min(int64(size), 2*bodySize+2))}
}

// chunker hands out a body's BDAT chunks: the next one (in pieces,
// valid until the next call) and whether it is the last; io.EOF after
// the last.
type chunker interface {
	next() (chunk [][]byte, last bool, err error)
}

func (b *bdatChunks) next() ([][]byte, bool, error) {
	if b.done {
		return nil, false, io.EOF
	}
	n, err := io.ReadFull(b.r, b.buf)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		b.done = true
		return [][]byte{b.buf[:n]}, true, nil
	case err != nil:
		return nil, false, err
	}
	if _, err := b.r.Peek(1); err == io.EOF {
		b.done = true
		return [][]byte{b.buf[:n]}, true, nil
	} else if err != nil {
		return nil, false, err
	}
	return [][]byte{b.buf[:n]}, false, nil
}

// pieceChunks cuts a body held in memory, already in whole CRLF lines,
// into chunks without copying it.
type pieceChunks struct {
	pieces [][]byte
	size   int
	done   bool
}

func (p *pieceChunks) next() ([][]byte, bool, error) {
	if p.done {
		return nil, false, io.EOF
	}
	var out [][]byte
	n := 0
	for len(p.pieces) > 0 && n < p.size {
		take := min(len(p.pieces[0]), p.size-n)
		if take > 0 {
			out = append(out, p.pieces[0][:take])
		}
		n += take
		if p.pieces[0] = p.pieces[0][take:]; len(p.pieces[0]) == 0 {
			p.pieces = p.pieces[1:]
		}
	}
	for len(p.pieces) > 0 && len(p.pieces[0]) == 0 {
		p.pieces = p.pieces[1:]
	}
	p.done = len(p.pieces) == 0
	return out, p.done, nil
}

// has8bit reports whether any byte of b has its high bit set; it reads
// eight bytes at a time, as it runs over every message sent.
func has8bit(b []byte) bool {
	const high = 0x8080808080808080
	for len(b) >= 32 {
		if (binary.LittleEndian.Uint64(b)|binary.LittleEndian.Uint64(b[8:])|
			binary.LittleEndian.Uint64(b[16:])|binary.LittleEndian.Uint64(b[24:]))&high != 0 {
			return true
		}
		b = b[32:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// WithHeader is body with header fields put in front of it (a DKIM
// signature), read without copying body.
func WithHeader(fields []byte, body Body) Body {
	return &withHeader{fields: fields, body: body}
}

type withHeader struct {
	fields []byte
	body   Body
}

func (w *withHeader) Size() int64 { return int64(len(w.fields)) + w.body.Size() }

func (w *withHeader) Open() (io.ReadCloser, error) {
	r, err := w.body.Open()
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(w.fields), r), r}, nil
}

func (w *withHeader) Pieces() ([][]byte, bool) {
	rest, ok := pieces(w.body)
	if !ok {
		return nil, false
	}
	return append([][]byte{w.fields}, rest...), true
}

func (w *withHeader) Has8bit() (bool, error) {
	if has8bit(w.fields) {
		return true, nil
	}
	return BodyHas8bit(w.body)
}

// Unreadable is a body that could not be read (its spooled file): each
// Open fails with err, so a delivery of it defers with 4.3.0 instead of
// sending anything.
func Unreadable(size int64, err error) Body { return unreadable{size, err} }

type unreadable struct {
	size int64
	err  error
}

func (u unreadable) Size() int64                  { return u.size }
func (u unreadable) Open() (io.ReadCloser, error) { return nil, u.err }
func (u unreadable) Has8bit() (bool, error)       { return false, u.err }
