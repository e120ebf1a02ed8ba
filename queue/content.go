package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// Content is a spooled body to be read as a stream: delivery sends it
// without ever holding a large body whole. A small body is inline in its
// record and comes from memory; a large one is read from its sealed file
// one chunk at a time, from the start at each Open. A chunk that does
// not open fails the read (and quarantines the message) instead of
// ending it early, so a damaged body is never sent cut short.
type Content struct {
	s      *Store
	id     string
	inline []byte // the body, when it is inline
	ref    *bodyRef
	bad    atomic.Pointer[error] // set once the file was found damaged: no more reads
}

// Spooled is a spooled body as its readers see it; *Content is the
// spool's.
type Spooled interface {
	Size() int64
	Open() (io.ReadCloser, error)
	Bytes() ([]byte, error)
	Inline() bool
}

// OpenBody returns the body of message id as Content. Its errors are
// Body's: ErrNotFound, ErrBodyGone; a record that does not open is
// quarantined.
func (s *Store) OpenBody(id string) (Spooled, error) {
	c := &Content{s: s, id: id}
	err := s.view(func(tx *bolt.Tx) error {
		sealed := tx.Bucket(bucketBodies).Get([]byte(id))
		if sealed == nil {
			if tx.Bucket(bucketMessages).Get([]byte(id)) != nil {
				return ErrBodyGone
			}
			return ErrNotFound
		}
		plain, err := s.seal.open(kindBody, id, sealed)
		if err != nil {
			return fmt.Errorf("%w: body %s: %v", errCorrupt, id, err)
		}
		rest, isRef := bytes.CutPrefix(plain, []byte(bodyRefMagic))
		if !isRef {
			c.inline = plain
			return nil
		}
		c.ref = new(bodyRef)
		if err := json.Unmarshal(rest, c.ref); err != nil {
			return fmt.Errorf("%w: body %s: bad body reference: %v", errCorrupt, id, err)
		}
		return nil
	})
	if errors.Is(err, errCorrupt) {
		s.quarantine(id, err)
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Size is the body's length in octets.
func (c *Content) Size() int64 {
	if c.ref != nil {
		return c.ref.Size
	}
	return int64(len(c.inline))
}

// Inline says the body is in memory already (Bytes costs nothing).
func (c *Content) Inline() bool { return c.ref == nil }

// Open returns a reader of the body from its start.
func (c *Content) Open() (io.ReadCloser, error) {
	if c.ref == nil {
		return io.NopCloser(bytes.NewReader(c.inline)), nil
	}
	if bad := c.bad.Load(); bad != nil {
		return nil, *bad
	}
	r, err := c.s.openBodyFile(c.id, *c.ref)
	if err != nil {
		c.damaged(err)
		return nil, err
	}
	return &contentReader{c: c, r: r}, nil
}

// Bytes returns the whole body.
func (c *Content) Bytes() ([]byte, error) {
	if c.ref == nil {
		return c.inline, nil
	}
	if bad := c.bad.Load(); bad != nil {
		return nil, *bad
	}
	b, err := c.s.readBodyFile(c.id, *c.ref)
	if err != nil {
		c.damaged(err)
		return nil, err
	}
	return b, nil
}

// damaged quarantines the message when its body file is missing or
// damaged (quarantine checks again, so a message deleted meanwhile is
// left alone), and refuses any later read of this content: a message
// found damaged is not sent from a read that happens to succeed later.
// A passing error (too many open files, an I/O error) only fails the
// read. It must not be called inside a spool commit.
func (c *Content) damaged(cause error) {
	if !isBodyDamage(cause) {
		return
	}
	err := fmt.Errorf("spooled body of %s: %w", c.id, cause)
	c.bad.Store(&err)
	c.s.quarantine(c.id, fmt.Errorf("%w: body %s: %v", errCorrupt, c.id, cause))
}

// contentReader is a body file's reader that quarantines the message on
// a read error.
type contentReader struct {
	c *Content
	r *bodyFileReader
}

func (r *contentReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.c.damaged(err)
		err = fmt.Errorf("spooled body of %s: %w", r.c.id, err)
	}
	return n, err
}

func (r *contentReader) Close() error { return r.r.Close() }
