package queue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// Checking the spool file before bbolt maps it.
//
// bbolt asserts, rather than checks, the shape of what it reads: a page
// that is not where its parent says, an element that points past its
// page, a child beyond the end of the file — each is a panic in a
// goroutine of its own or a fault on the mapped memory, and either ends
// the process. precheckSpoolFile reads the file with ordinary reads and
// follows the same tree bbolt will follow at open (it walks every page
// to rebuild its free list), so that a damaged file is refused with
// ErrSpoolCorrupt and its name instead. What it reads is the documented
// on-disk format of bbolt 1.x (internal/common in bbolt: page.go,
// meta.go, bucket.go); all integers are little-endian.
//
// It checks structure, not content: the key order inside pages is
// bbolt's own check (reported as an error at open), and a record whose
// bytes are damaged fails to decrypt and is quarantined.

// Page layout.
const (
	boltPageHeader   = 16 // id u64, flags u16, count u16, overflow u32
	boltElementSize  = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags u32, pos u32, ksize u32, vsize u32
	boltBranchPage   = 0x01
	boltLeafPage     = 0x02
	boltFreelistPage = 0x10
	boltBucketLeaf   = 0x01 // leaf element flag: the value is a bucket
	boltInBucketSize = 16   // root page id u64, sequence u64; an inline page follows when root is 0
	boltNoFreelist   = ^uint64(0)
)

// Meta page: after the page header, magic, version, page size, flags
// (u32 each), the root bucket (root u64, sequence u64), the free-list
// page, the high-water mark, the transaction id and an FNV-64a checksum
// of the 56 bytes before it.
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	boltMetaChecksum = 56
	boltMetaSize     = 64
	// bbolt looks for the second meta page at page sizes from 1 KiB to
	// 16 MiB when the first one is unreadable.
	boltMaxPageShift = 14
)

type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // high-water mark: pages [0, pgid) are in use
	txid     uint64
}

func parseBoltMeta(page []byte) (boltMeta, bool) {
	if len(page) < boltPageHeader+boltMetaSize {
		return boltMeta{}, false
	}
	m := page[boltPageHeader : boltPageHeader+boltMetaSize]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:boltMetaChecksum])
	if h.Sum64() != le.Uint64(m[boltMetaChecksum:]) {
		return boltMeta{}, false
	}
	meta := boltMeta{pageSize: le.Uint32(m[8:]), root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]),
		pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}
	if meta.pageSize < 1024 || meta.pageSize > 1024<<boltMaxPageShift {
		return boltMeta{}, false
	}
	return meta, true
}

// precheckSpoolFile refuses a spool file whose header is unreadable,
// that is shorter than its header says, or whose page tree is broken.
// A missing or empty file is fine: bbolt creates it.
func precheckSpoolFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open spool %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open spool %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", ErrSpoolCorrupt, path)
	}
	if fi.Size() == 0 {
		return nil
	}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s %s; restore it from a backup or move it aside", ErrSpoolCorrupt, path, fmt.Sprintf(format, args...))
	}
	readAt := func(off int64, n int) []byte {
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return nil
		}
		return buf
	}
	var metas []boltMeta
	if m0, ok := parseBoltMeta(readAt(0, boltPageHeader+boltMetaSize)); ok {
		metas = append(metas, m0)
		if m1, ok := parseBoltMeta(readAt(int64(m0.pageSize), boltPageHeader+boltMetaSize)); ok {
			metas = append(metas, m1)
		}
	} else {
		for i := 0; i <= boltMaxPageShift; i++ {
			if m1, ok := parseBoltMeta(readAt(1024<<i, boltPageHeader+boltMetaSize)); ok {
				metas = append(metas, m1)
				break
			}
		}
	}
	if len(metas) == 0 {
		return corrupt("has no valid header (not a sealgate spool, or overwritten)")
	}
	meta := metas[0]
	for _, m := range metas[1:] {
		if m.txid > meta.txid {
			meta = m
		}
	}
	if want := int64(meta.pgid) * int64(meta.pageSize); fi.Size() < want {
		return corrupt("is truncated: %d bytes, its header says %d", fi.Size(), want)
	}
	w := &pageWalker{f: f, meta: meta, seen: map[uint64]bool{}}
	if meta.freelist != boltNoFreelist {
		if _, err := w.read(meta.freelist, boltFreelistPage); err != nil {
			return corrupt("has a broken free list: %v", err)
		}
	}
	if err := w.walk(meta.root); err != nil {
		return corrupt("is damaged: %v", err)
	}
	return nil
}

// pageWalker follows the page tree of a spool file.
type pageWalker struct {
	f    *os.File
	meta boltMeta
	seen map[uint64]bool
}

// read returns page id (with its overflow pages) after checking that it
// lies inside the file, is referenced once, says it is id, and is of
// kind (a bitmask of page flags).
func (w *pageWalker) read(id uint64, kind uint16) ([]byte, error) {
	if id < 2 || id >= w.meta.pgid {
		return nil, fmt.Errorf("page %d is outside the file (high-water mark %d)", id, w.meta.pgid)
	}
	if w.seen[id] {
		return nil, fmt.Errorf("page %d is referenced twice", id)
	}
	w.seen[id] = true
	ps := int64(w.meta.pageSize)
	hdr := make([]byte, boltPageHeader)
	if _, err := w.f.ReadAt(hdr, int64(id)*ps); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	le := binary.LittleEndian
	if self := le.Uint64(hdr); self != id {
		return nil, fmt.Errorf("page %d says it is page %d", id, self)
	}
	if flags := le.Uint16(hdr[8:]); flags&kind == 0 || flags&(flags-1) != 0 {
		return nil, fmt.Errorf("page %d has unexpected type %#x", id, flags)
	}
	overflow := uint64(le.Uint32(hdr[12:]))
	if id+overflow >= w.meta.pgid {
		return nil, fmt.Errorf("page %d runs past the high-water mark", id)
	}
	page := make([]byte, (int64(overflow)+1)*ps)
	if _, err := w.f.ReadAt(page, int64(id)*ps); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return page, nil
}

// walk checks the b-tree of a bucket rooted at page id.
func (w *pageWalker) walk(id uint64) error {
	return w.walkRange(id, nil, nil)
}

// walkRange checks the subtree at page id, whose keys must lie in
// [lo, hi) (nil: unbounded), as bbolt's own key-order check demands.
func (w *pageWalker) walkRange(id uint64, lo, hi []byte) error {
	page, err := w.read(id, boltBranchPage|boltLeafPage)
	if err != nil {
		return err
	}
	return w.walkPage(page, id, true, lo, hi)
}

// walkPage checks one branch or leaf page held in page (a page read from
// the file, or an inline bucket's page inside a value) and follows it.
func (w *pageWalker) walkPage(page []byte, id uint64, inFile bool, lo, hi []byte) error {
	le := binary.LittleEndian
	if len(page) < boltPageHeader {
		return fmt.Errorf("inline page under page %d is too short", id)
	}
	flags, count := le.Uint16(page[8:]), int(le.Uint16(page[10:]))
	if boltPageHeader+count*boltElementSize > len(page) {
		return fmt.Errorf("page %d: %d elements do not fit", id, count)
	}
	if flags != boltLeafPage && (flags != boltBranchPage || !inFile) {
		return fmt.Errorf("page %d has unexpected type %#x", id, flags)
	}
	// Elements point at their key (and value) relative to themselves.
	type elem struct {
		key, value []byte
		flags      uint32
		child      uint64
	}
	elems := make([]elem, count)
	for i := range count {
		at := boltPageHeader + i*boltElementSize
		e := page[at : at+boltElementSize]
		var pos, ksize, vsize int
		if flags == boltBranchPage {
			pos, ksize = int(le.Uint32(e)), int(le.Uint32(e[4:]))
			elems[i].child = le.Uint64(e[8:])
		} else {
			elems[i].flags = le.Uint32(e)
			pos, ksize, vsize = int(le.Uint32(e[4:])), int(le.Uint32(e[8:])), int(le.Uint32(e[12:]))
		}
		start, end := at+pos, at+pos+ksize+vsize
		if end > len(page) || start < at || end < start {
			return fmt.Errorf("page %d: element %d points outside the page", id, i)
		}
		elems[i].key, elems[i].value = page[start:start+ksize], page[start+ksize:end]
		if lo != nil && bytes.Compare(elems[i].key, lo) < 0 || hi != nil && bytes.Compare(elems[i].key, hi) >= 0 {
			return fmt.Errorf("page %d: key %d is out of its parent's range", id, i)
		}
		if i > 0 && bytes.Compare(elems[i-1].key, elems[i].key) >= 0 {
			return fmt.Errorf("page %d: keys %d and %d are out of order", id, i-1, i)
		}
	}
	for i, e := range elems {
		if flags == boltBranchPage {
			next := hi
			if i+1 < count {
				next = elems[i+1].key
			}
			if err := w.walkRange(e.child, e.key, next); err != nil {
				return err
			}
			continue
		}
		if e.flags&boltBucketLeaf == 0 {
			continue
		}
		if len(e.value) < boltInBucketSize {
			return fmt.Errorf("page %d: bucket %d has a short header", id, i)
		}
		if root := le.Uint64(e.value); root != 0 {
			if err := w.walk(root); err != nil {
				return err
			}
		} else if err := w.walkPage(e.value[boltInBucketSize:], id, false, nil, nil); err != nil {
			return err
		}
	}
	return nil
}
