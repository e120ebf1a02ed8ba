package certs

import (
	"encoding/base64"
	"io"
)

// armorWriter writes an OpenPGP message in ASCII armor (RFC 9580 §6.2),
// byte for byte what go-crypto's armor.Encode writes for a "PGP MESSAGE"
// without headers: LF line ends, 64 characters a line, the CRC24
// footer. It exists because that encoder computes the CRC a bit at a
// time (half the CPU of encrypting a large message) and allocates for
// every line end; the footer itself cannot go — RFC 9580 says not to
// emit it, but GnuPG 2.2 refuses armor without it ("premature eof (no
// CRC)").
type armorWriter struct {
	out   io.Writer
	crc   uint32
	raw   [48]byte // bytes waiting for a whole line (48 bytes are 64 characters)
	n     int
	lines int
	line  [65]byte // "\n" and 64 characters: a line end comes before every line but the first
}

const (
	crc24Init = 0xb704ce
	crc24Poly = 0x1864cfb
)

var crc24Table = func() (t [256]uint32) {
	for i := range t {
		crc := uint32(i) << 16
		for range 8 {
			crc <<= 1
			if crc&0x1000000 != 0 {
				crc ^= crc24Poly
			}
		}
		t[i] = crc & 0xffffff
	}
	return t
}()

func crc24(crc uint32, p []byte) uint32 {
	for _, b := range p {
		crc = (crc<<8 ^ crc24Table[byte(crc>>16)^b]) & 0xffffff
	}
	return crc
}

func newArmorWriter(out io.Writer) (*armorWriter, error) {
	if _, err := io.WriteString(out, "-----BEGIN PGP MESSAGE-----\n\n"); err != nil {
		return nil, err
	}
	return &armorWriter{out: out, crc: crc24Init}, nil
}

func (a *armorWriter) Write(p []byte) (int, error) {
	a.crc = crc24(a.crc, p)
	total := len(p)
	for len(p) > 0 {
		if a.n == 0 && len(p) >= len(a.raw) {
			if err := a.writeLine(p[:len(a.raw)]); err != nil {
				return total - len(p), err
			}
			p = p[len(a.raw):]
			continue
		}
		k := copy(a.raw[a.n:], p)
		a.n += k
		p = p[k:]
		if a.n == len(a.raw) {
			a.n = 0
			if err := a.writeLine(a.raw[:]); err != nil {
				return total - len(p), err
			}
		}
	}
	return total, nil
}

// writeLine encodes raw (48 bytes, or fewer for the last line) as one
// line, preceded by the line end of the line before it.
func (a *armorWriter) writeLine(raw []byte) error {
	start := 1
	if a.lines > 0 {
		start = 0
		a.line[0] = '\n'
	}
	a.lines++
	end := 1 + base64.StdEncoding.EncodedLen(len(raw))
	base64.StdEncoding.Encode(a.line[1:end], raw)
	_, err := a.out.Write(a.line[start:end])
	return err
}

// Close writes the last line, the CRC24 footer and the end line (without
// a line end after it, as go-crypto writes it).
func (a *armorWriter) Close() error {
	if a.n > 0 {
		if err := a.writeLine(a.raw[:a.n]); err != nil {
			return err
		}
		a.n = 0
	}
	sum := [3]byte{byte(a.crc >> 16), byte(a.crc >> 8), byte(a.crc)}
	_, err := io.WriteString(a.out, "\n="+base64.StdEncoding.EncodeToString(sum[:])+"\n-----END PGP MESSAGE-----")
	return err
}
