package queue

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Large bodies live in files, not in the database.
//
// A body over inlineBodyMax is written, sealed in chunks, to a file in
// the bodies directory next to the spool, fsynced before the record
// that names it is committed; the body record then holds a sealed
// reference (the file's ID and its own random key) instead of the body.
// So the database (and its memory map) stays small however large the
// mail, a finished message's space returns to the file system at once,
// and a body is read back one chunk at a time. Small bodies, the common
// case, stay inline: one fsync for a whole batch of them.
//
// File format: the magic, the 16-byte file ID, then chunks of at most
// bodyChunk plaintext bytes, each a 4-byte length and AES-256-GCM
// sealed data under the file key (nonce: the chunk index; additional
// data: file ID, index, whether it is the last chunk), so chunks cannot
// be reordered, dropped, cut off or moved to another file unnoticed.

const (
	inlineBodyMax = 256 << 10
	bodyChunk     = 256 << 10
	bodyMagic     = "SGBODY1\n"
	// bodyRefMagic starts a body record that is a reference; no inline
	// body can start with NUL (intake refuses NUL, and our own DSNs and
	// reports start with a header).
	bodyRefMagic = "\x00SGREF1\x00"
	// orphanAge: a body file no record names is removed once it is this
	// old (younger ones may belong to a commit in progress).
	orphanAge = 10 * time.Minute
)

// errBodyDamaged marks a body file that is not what its record says
// (missing, cut short, a chunk that does not open, another file): the
// message is quarantined. Other errors reading it (too many open files,
// an I/O error) are passing, and only defer the delivery.
var errBodyDamaged = errors.New("body file damaged")

func damaged(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBodyDamaged}, args...)...)
}

// isBodyDamage reports whether err says the body file is damaged.
func isBodyDamage(err error) bool { return errors.Is(err, errBodyDamaged) }

// cutShort is the error of a read that met the file's end too early:
// damage; any other read error is passing.
func cutShort(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return damaged("body file cut short")
	}
	return fmt.Errorf("reading the body file: %w", err)
}

// bodyRef is the sealed payload of a body record for a body in a file.
type bodyRef struct {
	FileID string `json:"file_id"` // hex, 16 bytes
	Key    []byte `json:"key"`     // AES-256 key of this file only
	Size   int64  `json:"size"`
}

func (s *Store) bodiesDir() string { return filepath.Join(filepath.Dir(s.opts.Path), "bodies") }

// writeBodyFile seals body into a new file in the bodies directory and
// fsyncs it. It returns the reference and the file's temporary path;
// linkBody gives it its final name inside the commit.
func (s *Store) writeBodyFile(body []byte) (bodyRef, string, error) {
	ref := bodyRef{Key: make([]byte, 32), Size: int64(len(body))}
	fileID := make([]byte, 16)
	if _, err := rand.Read(fileID); err != nil {
		return ref, "", err
	}
	if _, err := rand.Read(ref.Key); err != nil {
		return ref, "", err
	}
	ref.FileID = hex.EncodeToString(fileID)
	aead, err := fileAEAD(ref.Key)
	if err != nil {
		return ref, "", err
	}
	tmp := filepath.Join(s.bodiesDir(), "tmp-"+ref.FileID)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return ref, "", err
	}
	w := bufio.NewWriterSize(f, bodyChunk+64)
	err = writeChunks(w, aead, fileID, body)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return ref, "", fmt.Errorf("body file: %w", err)
	}
	return ref, tmp, nil
}

func writeChunks(w io.Writer, aead cipher.AEAD, fileID, body []byte) error {
	if _, err := w.Write(append([]byte(bodyMagic), fileID...)); err != nil {
		return err
	}
	var buf []byte
	for i := uint64(0); ; i++ {
		n := min(len(body), bodyChunk)
		last := n == len(body)
		buf = aead.Seal(buf[:0], chunkNonce(i), body[:n], chunkAD(fileID, i, last))
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(buf)))
		if _, err := w.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
		body = body[n:]
		if last {
			return nil
		}
	}
}

// readBodyFile reads and opens the whole body a reference names.
func (s *Store) readBodyFile(id string, ref bodyRef) ([]byte, error) {
	r, err := s.openBodyFile(id, ref)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	out := make([]byte, ref.Size)
	if _, err := io.ReadFull(r, out); err != nil {
		return nil, err
	}
	// The reader has checked the last chunk's size against the record.
	if _, err := r.Read(make([]byte, 1)); err != io.EOF {
		return nil, damaged("body file larger than its record")
	}
	return out, nil
}

// bodyFileReader reads a sealed body file one chunk at a time: it holds
// one chunk, never the body, and fails (instead of ending early) on a
// chunk that does not open, a file cut short, or a size that differs
// from the record's.
type bodyFileReader struct {
	f      *os.File
	r      *bufio.Reader
	aead   cipher.AEAD
	fileID []byte
	size   int64  // the record's size
	read   int64  // plaintext bytes opened so far
	next   uint64 // index of the next chunk
	sealed []byte
	buf    []byte // the opened chunk
	plain  []byte // what of buf is not handed out yet
	done   bool   // the last chunk is open
	err    error  // sticky
}

// openBodyFile opens the body file a reference names and checks its
// header.
func (s *Store) openBodyFile(id string, ref bodyRef) (*bodyFileReader, error) {
	fileID, err := hex.DecodeString(ref.FileID)
	if err != nil || len(fileID) != 16 {
		return nil, damaged("bad file ID in body reference")
	}
	aead, err := fileAEAD(ref.Key)
	if err != nil {
		return nil, damaged("bad key in body reference: %v", err)
	}
	f, err := os.Open(filepath.Join(s.bodiesDir(), id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, damaged("body file missing")
	}
	if err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(f, 64<<10)
	head := make([]byte, len(bodyMagic)+16)
	if _, err := io.ReadFull(r, head); err != nil {
		f.Close()
		return nil, cutShort(err)
	}
	if string(head[:len(bodyMagic)]) != bodyMagic || !bytes.Equal(head[len(bodyMagic):], fileID) {
		f.Close()
		return nil, damaged("body file is not the one its record names")
	}
	return &bodyFileReader{f: f, r: r, aead: aead, fileID: fileID, size: ref.Size}, nil
}

func (b *bodyFileReader) Read(p []byte) (int, error) {
	for len(b.plain) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		if b.done {
			return 0, io.EOF
		}
		b.err = b.openChunk()
	}
	n := copy(p, b.plain)
	b.plain = b.plain[n:]
	return n, nil
}

// openChunk reads and opens the next chunk.
func (b *bodyFileReader) openChunk() error {
	var hdr [4]byte
	if _, err := io.ReadFull(b.r, hdr[:]); err != nil {
		return cutShort(err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > bodyChunk+uint32(b.aead.Overhead()) || n < uint32(b.aead.Overhead()) {
		return damaged("body file chunk has a bad length")
	}
	if b.read+int64(n)-int64(b.aead.Overhead()) > b.size {
		return damaged("body file larger than its record")
	}
	if b.sealed == nil {
		b.sealed = make([]byte, bodyChunk+b.aead.Overhead())
		b.buf = make([]byte, 0, bodyChunk)
	}
	sealed := b.sealed[:n]
	if _, err := io.ReadFull(b.r, sealed); err != nil {
		return cutShort(err)
	}
	// The last chunk is the one that opens with the "last" flag.
	i := b.next
	plain, err := b.aead.Open(b.buf[:0], chunkNonce(i), sealed, chunkAD(b.fileID, i, false))
	if err != nil {
		if plain, err = b.aead.Open(b.buf[:0], chunkNonce(i), sealed, chunkAD(b.fileID, i, true)); err != nil {
			return damaged("body file chunk does not open")
		}
		b.done = true
	}
	b.next++
	b.read += int64(len(plain))
	if b.done && b.read != b.size {
		return damaged("body file size differs from its record")
	}
	b.plain = plain
	return nil
}

func (b *bodyFileReader) Close() error { return b.f.Close() }

func fileAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func chunkNonce(i uint64) []byte {
	n := make([]byte, 12)
	binary.BigEndian.PutUint64(n[4:], i)
	return n
}

func chunkAD(fileID []byte, i uint64, last bool) []byte {
	ad := make([]byte, 0, len(fileID)+9)
	ad = append(ad, fileID...)
	ad = binary.BigEndian.AppendUint64(ad, i)
	if last {
		return append(ad, 1)
	}
	return append(ad, 0)
}

// encodeBodyRef is the plaintext of a body record that names a file.
func encodeBodyRef(ref bodyRef) []byte {
	data, _ := json.Marshal(ref) // a struct of strings and bytes always encodes
	return append([]byte(bodyRefMagic), data...)
}

// resolveBody turns an opened body record into the body: itself when
// inline, the file's content when it is a reference.
func (s *Store) resolveBody(id string, plain []byte) ([]byte, error) {
	rest, isRef := bytes.CutPrefix(plain, []byte(bodyRefMagic))
	if !isRef {
		return plain, nil
	}
	var ref bodyRef
	if err := json.Unmarshal(rest, &ref); err != nil {
		return nil, damaged("bad body reference: %v", err)
	}
	return s.readBodyFile(id, ref)
}

// linkBody gives a body file its final name, inside the commit that
// records it (a link, not a rename: the commit may run its function more
// than once).
func (s *Store) linkBody(tmp, id string) error {
	final := filepath.Join(s.bodiesDir(), id)
	os.Remove(final)
	return os.Link(tmp, final)
}

// syncBodiesDir makes the names of new body files durable.
func (s *Store) syncBodiesDir() error {
	d, err := os.Open(s.bodiesDir())
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// sweepBodyFiles removes body files no record names: bodies of finished,
// deleted or collected messages, and what a crash left half-written. A
// file is kept while its message's body record or its quarantined body
// record exists, and while it is younger than orphanAge.
func (s *Store) sweepBodyFiles() (int, error) {
	entries, err := os.ReadDir(s.bodiesDir())
	if err != nil {
		return 0, err
	}
	cutoff := time.Now().Add(-orphanAge)
	removed := 0
	err = s.view(func(tx *bolt.Tx) error {
		bodies, q := tx.Bucket(bucketBodies), tx.Bucket(bucketQuarantine)
		for _, e := range entries {
			name := e.Name()
			id := strings.TrimPrefix(name, "tmp-")
			if name == id && (bodies.Get([]byte(id)) != nil || q.Get([]byte(id+"/"+kindBody)) != nil) {
				continue
			}
			if info, err := e.Info(); err != nil || info.ModTime().After(cutoff) {
				continue
			}
			if os.Remove(filepath.Join(s.bodiesDir(), name)) == nil {
				removed++
			}
		}
		return nil
	})
	return removed, err
}
