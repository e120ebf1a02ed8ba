package pgstore

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// TestKVBucketsAndChunks: values of any size read back byte for byte
// (a large one from its chunks, replaced by a small one without
// leftovers); keys come back in bytewise order through ForEach and a
// cursor; a deleted key is gone.
func TestKVBucketsAndChunks(t *testing.T) {
	s := open(t, testutil.PostgreSQL(t), nil)
	big := bytes.Repeat([]byte("0123456789abcdef"), (3*chunkSize+12345)/16)
	err := s.KVUpdate(func(tx queue.KVTx) error {
		b := tx.Bucket([]byte("b"))
		for _, kv := range [][2][]byte{{{0x02}, []byte("two")}, {{0x01, 0x00}, big}, {{0x01}, []byte("one")}, {{0xff}, {}}} {
			if err := b.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("other")).Put([]byte{0x01}, []byte("elsewhere"))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.KVView(func(tx queue.KVTx) error {
		b := tx.Bucket([]byte("b"))
		if got := b.Get([]byte{0x01, 0x00}); !bytes.Equal(got, big) {
			t.Errorf("the chunked value reads back as %d bytes, want %d", len(got), len(big))
		}
		if got := b.Get([]byte{0xff}); got == nil || len(got) != 0 {
			t.Errorf("an empty value reads back as %v", got)
		}
		if b.Get([]byte{0x03}) != nil {
			t.Error("a missing key has a value")
		}
		var keys [][]byte
		b.ForEach(func(k, _ []byte) error { keys = append(keys, k); return nil })
		if want := [][]byte{{0x01}, {0x01, 0x00}, {0x02}, {0xff}}; !equalKeys(keys, want) {
			t.Errorf("ForEach order %x, want %x", keys, want)
		}
		c := b.Cursor()
		keys = nil
		for k, _ := c.Seek([]byte{0x01, 0x00}); k != nil; k, _ = c.Next() {
			keys = append(keys, k)
		}
		if want := [][]byte{{0x01, 0x00}, {0x02}, {0xff}}; !equalKeys(keys, want) {
			t.Errorf("cursor from 01 00: %x, want %x", keys, want)
		}
		return nil
	})
	s.KVUpdate(func(tx queue.KVTx) error {
		b := tx.Bucket([]byte("b"))
		b.Put([]byte{0x01, 0x00}, []byte("small now"))
		return b.Delete([]byte{0x02})
	})
	var chunks int
	s.pool.QueryRow(t.Context(), "SELECT count(*) FROM escrow_chunks").Scan(&chunks)
	s.KVView(func(tx queue.KVTx) error {
		b := tx.Bucket([]byte("b"))
		if got := string(b.Get([]byte{0x01, 0x00})); got != "small now" || chunks != 0 {
			t.Errorf("replaced value %q, %d chunks left", got, chunks)
		}
		if b.Get([]byte{0x02}) != nil {
			t.Error("a deleted key is still there")
		}
		return nil
	})
}

// TestKVNoLostUpdates: nodes that read and change the same record at
// once (two checks of one one-time code) are serialised: every change
// counts, none is lost.
func TestKVNoLostUpdates(t *testing.T) {
	dsn := testutil.PostgreSQL(t)
	nodes := []*Store{open(t, dsn, nil), open(t, dsn, nil)}
	const each = 40
	var wg sync.WaitGroup
	for _, s := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				err := s.KVUpdate(func(tx queue.KVTx) error {
					b := tx.Bucket([]byte("counter"))
					n := uint64(0)
					if v := b.Get([]byte("n")); v != nil {
						n = binary.BigEndian.Uint64(v)
					}
					return b.Put([]byte("n"), binary.BigEndian.AppendUint64(nil, n+1))
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	nodes[0].KVView(func(tx queue.KVTx) error {
		if n := binary.BigEndian.Uint64(tx.Bucket([]byte("counter")).Get([]byte("n"))); n != 2*each {
			t.Errorf("counter %d after %d increments: updates were lost", n, 2*each)
		}
		return nil
	})
}

func equalKeys(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
