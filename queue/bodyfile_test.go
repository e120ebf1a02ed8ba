package queue

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func bigBody(marker string, size int) string {
	var b strings.Builder
	b.WriteString("Subject: big\r\n\r\n")
	line := marker + strings.Repeat("x", 70) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.String()
}

// TestLargeBodyLivesInASealedFile: a body over the inline limit is kept
// in its own sealed file, not in the database; it reads back byte for
// byte, no plaintext is on disk, and the database stays small.
func TestLargeBodyLivesInASealedFile(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")})
	const marker = "MARKER-big-7c2e"
	body := bigBody(marker, 3<<20)
	id := enqueue(t, s, "a@org.test", body, "b@dest.test")
	got, err := s.Body(id)
	if err != nil || !bytes.Equal(got, []byte(body)) {
		t.Fatalf("Body: %d bytes, %v; want the %d bytes spooled", len(got), err, len(body))
	}
	files, _ := os.ReadDir(filepath.Join(dir, "bodies"))
	if len(files) != 1 || files[0].Name() != id {
		t.Fatalf("bodies dir holds %v, want one file named %s", files, id)
	}
	for _, p := range []string{filepath.Join(dir, "spool.db"), filepath.Join(dir, "bodies", id)} {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(marker)) {
			t.Errorf("%s holds the body in clear", p)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, "spool.db")); st.Size() > 1<<20 {
		t.Errorf("spool.db is %d bytes for a 3 MB message: the body went into the database", st.Size())
	}
}

// TestBodyFilesAreSweptOnceUnused: the file of a finished or deleted
// message, and a half-written one, go at the next collection once they
// are older than orphanAge; a live one stays.
func TestBodyFilesAreSweptOnceUnused(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")})
	live := enqueue(t, s, "a@org.test", bigBody("live", 600<<10), "b@dest.test")
	gone := enqueue(t, s, "a@org.test", bigBody("gone", 600<<10), "b@dest.test")
	if err := s.Delete(gone); err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(dir, "bodies", "tmp-0123")
	os.WriteFile(crashed, []byte("half"), 0o600)
	old := time.Now().Add(-2 * orphanAge)
	for _, name := range []string{live, gone, "tmp-0123"} {
		os.Chtimes(filepath.Join(dir, "bodies", name), old, old)
	}
	if _, err := s.GC(); err != nil {
		t.Fatal(err)
	}
	files, _ := os.ReadDir(filepath.Join(dir, "bodies"))
	if len(files) != 1 || files[0].Name() != live {
		t.Errorf("after GC the bodies dir holds %v, want only %s", files, live)
	}
	if _, err := s.Body(live); err != nil {
		t.Errorf("the live body: %v", err)
	}
}

// TestDamagedBodyFileIsNotDelivered: a body file changed by a single
// byte, cut short or swapped for another message's does not open: the
// message is quarantined, never delivered with a damaged body.
var bodyFileDamages = map[string]func(path, other string){
	"flipped byte": func(path, _ string) {
		raw, _ := os.ReadFile(path)
		raw[len(raw)/2] ^= 1
		os.WriteFile(path, raw, 0o600)
	},
	"cut short": func(path, _ string) {
		raw, _ := os.ReadFile(path)
		os.WriteFile(path, raw[:len(raw)-300<<10], 0o600)
	},
	"last chunk dropped": func(path, _ string) {
		raw, _ := os.ReadFile(path)
		os.WriteFile(path, raw[:24+4+bodyChunk+16], 0o600)
	},
	"another message's file": func(path, other string) {
		raw, _ := os.ReadFile(other)
		os.WriteFile(path, raw, 0o600)
	},
	"missing": func(path, _ string) { os.Remove(path) },
}

func TestDamagedBodyFileIsNotDelivered(t *testing.T) {
	for name, damage := range bodyFileDamages {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")})
			id := enqueue(t, s, "a@org.test", bigBody("one", 700<<10), "b@dest.test")
			other := enqueue(t, s, "a@org.test", bigBody("two", 700<<10), "c@dest.test")
			damage(filepath.Join(dir, "bodies", id), filepath.Join(dir, "bodies", other))
			if _, err := s.Body(id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Body of a damaged file: %v, want ErrNotFound", err)
			}
			if q, _ := s.Quarantined(); len(q) != 1 || q[0].ID != id {
				t.Errorf("quarantine holds %+v, want %s", q, id)
			}
			if got, err := s.Body(other); err != nil || !strings.Contains(string(got), "two") {
				t.Errorf("the other message: %v", err)
			}
		})
	}
}

// TestLargeBodyStreams: a body in a file reads back as a stream, byte
// for byte, however the reader is called, and more than once.
func TestLargeBodyStreams(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")})
	body := bigBody("stream", 700<<10)
	id := enqueue(t, s, "a@org.test", body, "b@dest.test")
	c, err := s.OpenBody(id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Inline() || c.Size() != int64(len(body)) {
		t.Fatalf("inline %v, size %d; want a file of %d bytes", c.Inline(), c.Size(), len(body))
	}
	for i := 0; i < 2; i++ {
		r, err := c.Open()
		if err != nil {
			t.Fatal(err)
		}
		if err := iotest.TestReader(r, []byte(body)); err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	small := enqueue(t, s, "a@org.test", "Subject: s\r\n\r\nsmall\r\n", "b@dest.test")
	if c, err := s.OpenBody(small); err != nil || !c.Inline() {
		t.Fatalf("a small body: %v, want inline", err)
	}
}

// TestDamagedBodyFileFailsTheStream: reading a damaged body file as a
// stream ends in an error, never in an early EOF (which delivery would
// take for the end of the message), and quarantines the message.
func TestDamagedBodyFileFailsTheStream(t *testing.T) {
	for name, damage := range bodyFileDamages {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")})
			id := enqueue(t, s, "a@org.test", bigBody("one", 700<<10), "b@dest.test")
			other := enqueue(t, s, "a@org.test", bigBody("two", 700<<10), "c@dest.test")
			c, err := s.OpenBody(id)
			if err != nil {
				t.Fatal(err)
			}
			damage(filepath.Join(dir, "bodies", id), filepath.Join(dir, "bodies", other))
			r, err := c.Open()
			if err == nil {
				_, err = io.ReadAll(r)
				r.Close()
			}
			if err == nil {
				t.Fatal("a damaged body file read to its end without an error")
			}
			if q, _ := s.Quarantined(); len(q) != 1 || q[0].ID != id {
				t.Errorf("quarantine holds %+v, want %s", q, id)
			}
		})
	}
}
