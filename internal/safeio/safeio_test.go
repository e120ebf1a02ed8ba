package safeio

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileReplacesWholeFileWithMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "key")
	for _, content := range []string{"first", "second, longer"} {
		if err := WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o", fi.Mode().Perm())
	}
	assertNoTemp(t, path)
}

// A writer that fails half-way must leave the old file as it was: the
// truncated temporary file is never renamed over it.
func TestFailingWriterLeavesTargetAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := WriteFile(path, []byte("the old, whole key"), 0o600); err != nil {
		t.Fatal(err)
	}
	diskFull := errors.New("no space left on device")
	err := WriteFunc(path, 0o600, func(w io.Writer) error {
		if _, err := w.Write([]byte("the n")); err != nil {
			return err
		}
		return diskFull
	})
	if !errors.Is(err, diskFull) {
		t.Fatalf("WriteFunc with a failing writer = %v, want the writer's error", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "the old, whole key" {
		t.Errorf("target now holds %q", got)
	}
	assertNoTemp(t, path)
}

func TestCreateFileNeverReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := CreateFile(path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CreateFile(path, []byte("second"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second CreateFile = %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "first" {
		t.Errorf("file holds %q, want the first content", got)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o", fi.Mode().Perm())
	}
	assertNoTemp(t, path)
}

func TestRenameOntoDirectoryFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dir")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "inside"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("x"), 0o600); err == nil {
		t.Error("WriteFile over a non-empty directory reported success")
	}
	assertNoTemp(t, path)
}

func assertNoTemp(t *testing.T, path string) {
	t.Helper()
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}
