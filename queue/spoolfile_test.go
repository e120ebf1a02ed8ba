package queue

import (
	"bytes"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/safeio"
)

// spoolWithMessages leaves a closed spool of n messages and returns its
// options.
func spoolWithMessages(t *testing.T, n int) Options {
	t.Helper()
	dir := t.TempDir()
	opts := Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		enqueue(t, s, "a@o.test", strings.Repeat("body ", 2000), "x@d.test")
	}
	s.Close()
	return opts
}

// A damaged spool file is refused with a clear error naming it: never a
// SIGBUS, a panic, or a spool silently started empty.
func TestDamagedSpoolFileIsRefused(t *testing.T) {
	for name, damage := range map[string]func(t *testing.T, path string){
		"truncated to half": func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		},
		"truncated inside the header": func(t *testing.T, path string) {
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
		},
		"not a spool": func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte("this is not bbolt\n"), 1000), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"data pages zeroed": func(t *testing.T, path string) {
			data, _ := os.ReadFile(path)
			page := os.Getpagesize()
			clear(data[2*page:])
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			opts := spoolWithMessages(t, 20)
			damage(t, opts.Path)
			s, err := Open(opts)
			if err == nil {
				s.Close()
				t.Fatal("a damaged spool was opened")
			}
			if !errors.Is(err, ErrSpoolCorrupt) || !strings.Contains(err.Error(), opts.Path) {
				t.Errorf("Open = %v, want ErrSpoolCorrupt naming %s", err, opts.Path)
			}
		})
	}
}

// A directory or spool file that others may write is refused: whoever
// can write there can replace the spool or its key. One that others may
// only read is opened with a warning; its records are sealed.
func TestLoosePermissionsOnSpool(t *testing.T) {
	opts := spoolWithMessages(t, 1)
	dir := filepath.Dir(opts.Path)
	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o777}, {dir, 0o770}, {opts.Path, 0o666}, {opts.Path, 0o620}} {
		restore, _ := os.Stat(tc.path)
		os.Chmod(tc.path, tc.mode)
		if _, err := Open(opts); !errors.Is(err, safeio.ErrTooOpen) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("Open with %s mode %o = %v, want ErrTooOpen naming it", tc.path, tc.mode, err)
		}
		os.Chmod(tc.path, restore.Mode().Perm())
	}

	os.Chmod(dir, 0o755)
	os.Chmod(opts.Path, 0o644)
	var logs bytes.Buffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open of a readable spool: %v", err)
	}
	s.Close()
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), opts.Path) {
		t.Errorf("no warning about a world-readable spool:\n%s", logs.String())
	}

	os.Chmod(opts.KeyFile, 0o640)
	if _, err := Open(opts); !errors.Is(err, safeio.ErrTooOpen) || !strings.Contains(err.Error(), opts.KeyFile) {
		t.Errorf("Open with a group-readable key = %v, want ErrTooOpen naming it", err)
	}
}

// Every page in turn overwritten with random bytes: Open reports an
// error or opens a spool that answers; it never panics or faults.
func TestRandomPageDamageNeverCrashes(t *testing.T) {
	opts := spoolWithMessages(t, 20)
	orig, err := os.ReadFile(opts.Path)
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	rng := rand.New(rand.NewPCG(3, 4))
	refused := 0
	for p := 2; p < len(orig)/page; p++ {
		data := bytes.Clone(orig)
		for i := p * page; i < (p+1)*page; i++ {
			data[i] = byte(rng.Uint32())
		}
		if err := os.WriteFile(opts.Path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(opts)
		if err != nil {
			if !errors.Is(err, ErrSpoolCorrupt) {
				t.Errorf("page %d damaged: %v, want ErrSpoolCorrupt", p, err)
			}
			refused++
			continue
		}
		// A damaged value is not the file's structure: it fails to
		// decrypt when read, and is quarantined.
		msgs, _ := s.List()
		for _, m := range msgs {
			s.Body(m.ID)
		}
		s.Close()
	}
	t.Logf("%d of %d damaged files refused", refused, len(orig)/page-2)
}
